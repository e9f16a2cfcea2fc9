"""OpenAI chat requests told as Messages requests for Anthropic deployments."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from sluicegate.errors import InvalidRequest
from sluicegate.protocol.anthropic_upstream import to_anthropic_request
from sluicegate.protocol.openai import validate_chat

TRANSCRIPTS = Path(__file__).parent / "transcripts"


def transcript(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((TRANSCRIPTS / name).read_text(encoding="utf-8"))
    return loaded


def translate(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "claude", "messages": [{"role": "user", "content": "hi"}]}
    body.update(fields)
    validate_chat(body)
    return to_anthropic_request(body, "claude-sonnet-4-5", 4096)


@pytest.mark.parametrize(
    "name", ["claude_backend_text_stream.json", "claude_backend_tool_stream.json"]
)
def test_transcript_request(name: str) -> None:
    t = transcript(name)
    body = t["openai_request"]
    validate_chat(body)
    translated = to_anthropic_request(
        copy.deepcopy(body), t["upstream_model"], t["default_max_tokens"]
    )
    assert translated == t["anthropic_request"]


def test_minimal_request_gets_the_default_max_tokens() -> None:
    assert translate() == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    assert translate(max_tokens=100)["max_tokens"] == 100
    assert translate(max_tokens=100, max_completion_tokens=50)["max_tokens"] == 50


@pytest.mark.parametrize(("given", "sent"), [(0, 0.0), (0.7, 0.7), (1, 1.0), (2, 1.0)])
def test_temperature_is_clamped_to_anthropic_range(given: float, sent: float) -> None:
    assert translate(temperature=given)["temperature"] == sent


def test_base64_data_url_becomes_a_base64_image() -> None:
    part = {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSk"}}
    blocks = translate(messages=[{"role": "user", "content": [part]}])["messages"][0]["content"]
    assert blocks == [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSk"},
        }
    ]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"response_format": {"type": "json_object"}}, "response_format"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {}},
                }
            },
            "response_format",
        ),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "messages"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "input_audio",
                                "input_audio": {"data": "UklG", "format": "wav"},
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}
                        ],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "ftp://example.com/x.png"}}
                        ],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "q"},
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{not json"},
                            }
                        ],
                    },
                ]
            },
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            {"messages": [{"role": "function", "name": "f", "content": "legacy"}]},
            "messages[0].role",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
            "messages[0].content[0].text",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": None, "tool_calls": {"id": "c1"}},
                ]
            },
            "messages[1].tool_calls",
        ),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"nam": "f"}},
            },
            "tool_choice.function.name",
        ),
    ],
)
def test_what_anthropic_cannot_do_is_refused_by_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        translate(**fields)
    assert caught.value.param == param


def test_text_response_format_is_fine() -> None:
    assert "response_format" not in translate(response_format={"type": "text"})


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        ({"type": "function", "function": {"name": "f"}}, None, {"type": "tool", "name": "f"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        (None, None, None),
    ],
)
def test_tool_choice(choice: Any, parallel: Any, expected: Any) -> None:
    fields: dict[str, Any] = {"tools": [{"type": "function", "function": {"name": "f"}}]}
    if choice is not None:
        fields["tool_choice"] = choice
    if parallel is not None:
        fields["parallel_tool_calls"] = parallel
    out = translate(**fields)
    assert out.get("tool_choice") == expected
    assert out["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}}}]


def test_turns_alternate_and_empty_turns_vanish() -> None:
    out = translate(
        messages=[
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": "c"},
            {"role": "assistant", "content": [{"type": "text", "text": "d"}]},
        ]
    )
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}],
        },
    ]
