"""providers/upstream_errors: one test per status rule, so a client sees the right error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import orjson
import pytest

from sluicegate.errors import (
    RateLimited,
    ServiceUnavailable,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)
from sluicegate.providers.upstream_errors import from_status, retry_after_seconds


def openai_error(message: str, code: str | None = None, **extra: object) -> bytes:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    return orjson.dumps({"error": {**error, **extra}})


def test_400_passes_the_upstream_verdict() -> None:
    body = openai_error(
        "This model's maximum context length is 8 tokens.",
        "context_length_exceeded",
        param="messages",
    )
    exc = from_status("dep", 400, body)
    assert isinstance(exc, UpstreamRejected)
    assert exc.status == 400
    assert exc.headers == {}
    assert exc.body() == {
        "error": {
            "message": "This model's maximum context length is 8 tokens.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }


def test_400_without_code_has_null_code() -> None:
    exc = from_status("dep", 400, openai_error("bad 'messages'", None))
    assert exc.body()["error"] == {
        "message": "bad 'messages'",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


def test_413_keeps_its_status() -> None:
    exc = from_status("dep", 413, openai_error("too big", "too_big"))
    assert isinstance(exc, UpstreamRejected)
    assert (exc.status, exc.code, exc.message) == (413, "too_big", "too big")


def test_422_becomes_400() -> None:
    exc = from_status("dep", 422, b'{"detail": "field required: messages"}')
    assert isinstance(exc, UpstreamRejected)
    assert (exc.status, exc.type, exc.message) == (
        400,
        "invalid_request_error",
        "field required: messages",
    )


def test_400_with_empty_body() -> None:
    exc = from_status("dep", 400, b"")
    assert (exc.status, exc.message) == (400, "The upstream rejected the request (HTTP 400).")


def test_400_keeps_an_anthropic_error_type() -> None:
    body = b'{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: >0"}}'
    exc = from_status("dep", 400, body)
    assert (exc.status, exc.type, exc.message) == (400, "invalid_request_error", "max_tokens: >0")


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_are_the_gateways_fault(status: int) -> None:
    exc = from_status("chat/0", status, openai_error("Incorrect API key provided: sk-up***"))
    assert type(exc) is UpstreamError
    assert exc.status == 502
    assert exc.body()["error"] == {
        "message": f"Deployment 'chat/0' refused the gateway's credentials (HTTP {status}). "
        "Check the deployment's api_key.",
        "type": "upstream_error",
        "param": None,
        "code": "upstream_auth_failed",
    }
    # The upstream's message may echo part of the gateway's key; it is not passed on.
    assert "sk-up" not in exc.message


def test_404_is_a_bad_gateway() -> None:
    exc = from_status("chat/0", 404, openai_error("model 'x' not found"))
    assert type(exc) is UpstreamError
    assert (exc.status, exc.code, exc.message) == (
        502,
        "upstream_not_found",
        "Deployment 'chat/0' does not know this model or route (HTTP 404): model 'x' not found",
    )


def test_408_is_a_timeout() -> None:
    exc = from_status("chat/0", 408, b"")
    assert isinstance(exc, UpstreamTimeout)
    assert (exc.status, exc.type, exc.code, exc.message) == (
        504,
        "timeout_error",
        "upstream_timeout",
        "Deployment 'chat/0' timed out (HTTP 408)",
    )


def test_429_carries_retry_after() -> None:
    exc = from_status("chat/0", 429, openai_error("slow down"), "7")
    assert isinstance(exc, RateLimited)
    assert (exc.status, exc.type, exc.code) == (429, "rate_limit_error", "upstream_rate_limited")
    assert exc.headers == {"retry-after": "7"}
    assert exc.retry_after == 7.0
    assert exc.message == "Deployment 'chat/0' is rate limiting requests: slow down"


@pytest.mark.parametrize(
    ("header", "sent"), [(None, "1"), ("0", "1"), ("2.2", "3"), ("soon", "1"), ("-5", "1")]
)
def test_429_retry_after_is_a_whole_positive_number(header: str | None, sent: str) -> None:
    exc = from_status("d", 429, b"", header)
    assert exc.headers == {"retry-after": sent}


def test_503_is_unavailable() -> None:
    exc = from_status("chat/0", 503, openai_error("overloaded"))
    assert isinstance(exc, ServiceUnavailable)
    assert (exc.status, exc.type, exc.code, exc.message) == (
        503,
        "service_unavailable",
        "upstream_unavailable",
        "Deployment 'chat/0' is unavailable (HTTP 503): overloaded",
    )


def test_529_is_overloaded() -> None:
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    exc = from_status("claude/0", 529, body)
    assert isinstance(exc, ServiceUnavailable)
    assert (exc.status, exc.code, exc.message) == (
        503,
        "upstream_overloaded",
        "Deployment 'claude/0' is overloaded (HTTP 529): Overloaded",
    )


def test_504_is_a_timeout() -> None:
    exc = from_status("chat/0", 504, b"gateway timeout")
    assert isinstance(exc, UpstreamTimeout)
    assert (exc.status, exc.message) == (
        504,
        "Deployment 'chat/0' timed out (HTTP 504): gateway timeout",
    )


@pytest.mark.parametrize("status", [500, 501, 502, 418, 409])
def test_other_statuses_are_bad_gateway(status: int) -> None:
    exc = from_status("chat/0", status, openai_error("boom"))
    assert type(exc) is UpstreamError
    assert (exc.status, exc.type, exc.code, exc.message) == (
        502,
        "upstream_error",
        "upstream_error",
        f"Deployment 'chat/0' failed (HTTP {status}): boom",
    )


def test_non_json_body_is_quoted_and_trimmed() -> None:
    exc = from_status("chat/0", 500, b"  <html>" + b"x" * 1000 + b"</html>\n")
    assert exc.message.startswith("Deployment 'chat/0' failed (HTTP 500): <html>xxx")
    assert len(exc.message) == len("Deployment 'chat/0' failed (HTTP 500): ") + 500


def test_undecodable_body_does_not_raise() -> None:
    exc = from_status("chat/0", 500, b"\xff\xfe broken")
    assert exc.status == 502
    assert "broken" in exc.message


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'{"error": "plain string"}', ": plain string"),
        (b'{"detail": "fastapi style"}', ": fastapi style"),
        (b"[1, 2]", ""),
        (b'"just a string"', ""),
        (b'{"error": {"code": 5}}', ""),
    ],
)
def test_error_body_shapes(body: bytes, said: str) -> None:
    assert from_status("d", 500, body).message == f"Deployment 'd' failed (HTTP 500){said}"


def test_retry_after_seconds() -> None:
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds("-3") == 0.0
    # An HTTP date in the past means "now"; one in the future counts down to it.
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    future = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    seconds = retry_after_seconds(future)
    assert seconds is not None and 27 <= seconds <= 30
