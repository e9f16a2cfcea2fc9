"""Whole answers both ways, usage, stop reasons and the Anthropic error shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sluicegate.errors import (
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    ServiceUnavailable,
    SluicegateError,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)
from sluicegate.protocol.anthropic import (
    anthropic_usage,
    error_body,
    error_message,
    openai_usage,
    to_anthropic_message,
    to_openai_completion,
    upstream_error,
)

TRANSCRIPTS = Path(__file__).parent / "transcripts"
MESSAGES: dict[str, Any] = json.loads((TRANSCRIPTS / "messages.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", MESSAGES["openai_to_anthropic"], ids=lambda c: c["name"])
def test_openai_completion_to_anthropic_message(case: dict[str, Any]) -> None:
    assert to_anthropic_message(case["openai"], case["model"]) == case["anthropic"]


@pytest.mark.parametrize("case", MESSAGES["anthropic_to_openai"], ids=lambda c: c["name"])
def test_anthropic_message_to_openai_completion(case: dict[str, Any]) -> None:
    assert to_openai_completion(case["anthropic"], case["model"], case["created"]) == case["openai"]


def test_tool_arguments_that_are_not_an_object_are_an_upstream_error() -> None:
    call: Any = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1, 2"}}
    answer = {
        "id": "x",
        "choices": [
            {"message": {"role": "assistant", "tool_calls": [call]}, "finish_reason": "tool_calls"}
        ],
    }
    with pytest.raises(UpstreamError, match="not valid JSON"):
        to_anthropic_message(answer, "m")
    call["function"]["arguments"] = "[1, 2]"
    with pytest.raises(UpstreamError, match="not a JSON object"):
        to_anthropic_message(answer, "m")


@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": 10, "output_tokens": 3},
        {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 90},
        {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0},
    ],
)
def test_usage_round_trip_is_exact(usage: dict[str, int]) -> None:
    assert anthropic_usage(openai_usage(usage)) == usage


def test_cache_writes_count_as_prompt_tokens() -> None:
    usage = {
        "input_tokens": 5,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 20,
        "output_tokens": 7,
    }
    assert openai_usage(usage) == {
        "prompt_tokens": 125,
        "completion_tokens": 7,
        "total_tokens": 132,
        "prompt_tokens_details": {"cached_tokens": 20},
    }
    assert openai_usage(None) is None
    assert anthropic_usage(None) == {"input_tokens": 0, "output_tokens": 0}


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (InvalidRequest("'max_tokens' is required.", param="max_tokens"), "invalid_request_error"),
        (ModelNotFound("nope", ["a"]), "not_found_error"),
        (RateLimited("slow", retry_after=3), "rate_limit_error"),
        (UpstreamError("bad"), "api_error"),
        (ServiceUnavailable("busy"), "overloaded_error"),
        (UpstreamTimeout("late"), "timeout_error"),
        (UpstreamRejected("too long", status=413), "request_too_large"),
        (SluicegateError("bug"), "api_error"),
    ],
)
def test_error_body_has_anthropic_shape(exc: SluicegateError, kind: str) -> None:
    assert error_body(exc, "req-1") == {
        "type": "error",
        "error": {"type": kind, "message": exc.message},
        "request_id": "req-1",
    }


@pytest.mark.parametrize(
    ("kind", "cls", "status"),
    [
        ("overloaded_error", ServiceUnavailable, 503),
        ("rate_limit_error", RateLimited, 429),
        ("timeout_error", UpstreamTimeout, 504),
        ("invalid_request_error", UpstreamRejected, 400),
        ("request_too_large", UpstreamRejected, 413),
        ("api_error", UpstreamError, 502),
        ("authentication_error", UpstreamError, 502),
    ],
)
def test_upstream_error_by_type(kind: str, cls: type[SluicegateError], status: int) -> None:
    exc = upstream_error("claude/0", {"type": kind, "message": "said so"})
    assert type(exc) is cls
    assert exc.status == status
    assert "said so" in exc.message


def test_error_message_reads_anthropic_bodies() -> None:
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    assert error_message(body) == "Overloaded"
    assert error_message(b"<html>") is None
    assert error_message(b'{"detail": "x"}') is None
