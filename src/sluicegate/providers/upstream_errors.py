"""Map an upstream's HTTP error answer to our exception classes, one rule per status."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import orjson

from sluicegate.errors import (
    RateLimited,
    ServiceUnavailable,
    SluicegateError,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)

__all__ = ["from_status", "retry_after_seconds"]

_MAX_MESSAGE = 500


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date; None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _reason(body: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    """(message, type, code, param) from an OpenAI- or Anthropic-shaped error body."""
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return (text[:_MAX_MESSAGE] or None, None, None, None)
    error = decoded.get("error") if isinstance(decoded, dict) else None
    if isinstance(error, dict):
        message = error.get("message")
        code = error.get("code")
        return (
            str(message)[:_MAX_MESSAGE] if message is not None else None,
            error.get("type") if isinstance(error.get("type"), str) else None,
            str(code) if code is not None else None,
            error.get("param") if isinstance(error.get("param"), str) else None,
        )
    if isinstance(error, str):
        return (error[:_MAX_MESSAGE], None, None, None)
    if isinstance(decoded, dict) and isinstance(decoded.get("detail"), str):
        return (decoded["detail"][:_MAX_MESSAGE], None, None, None)
    return (None, None, None, None)


def from_status(
    deployment: str, status: int, body: bytes, retry_after: str | None = None
) -> SluicegateError:
    """The error a client should see when ``deployment`` answered ``status``."""
    message, kind, code, param = _reason(body)
    said = f": {message}" if message else ""
    if status in (400, 413, 422):
        return UpstreamRejected(
            message or f"The upstream rejected the request (HTTP {status}).",
            status=400 if status == 422 else status,
            type=kind or "invalid_request_error",
            code=code,
            param=param,
        )
    if status in (401, 403):
        return UpstreamError(
            f"Deployment '{deployment}' refused the gateway's credentials (HTTP {status}). "
            "Check the deployment's api_key.",
            code="upstream_auth_failed",
        )
    if status == 404:
        return UpstreamError(
            f"Deployment '{deployment}' does not know this model or route (HTTP 404){said}",
            code="upstream_not_found",
        )
    if status == 408:
        return UpstreamTimeout(f"Deployment '{deployment}' timed out (HTTP 408){said}")
    if status == 429:
        hinted = retry_after_seconds(retry_after)
        return RateLimited(
            f"Deployment '{deployment}' is rate limiting requests{said}",
            retry_after=1.0 if hinted is None else hinted,
            code="upstream_rate_limited",
            hinted=hinted is not None,
        )
    if status == 503:
        return ServiceUnavailable(
            f"Deployment '{deployment}' is unavailable (HTTP 503){said}",
            code="upstream_unavailable",
        )
    if status == 529:
        # Anthropic's "overloaded": the service is up but shedding load.
        return ServiceUnavailable(
            f"Deployment '{deployment}' is overloaded (HTTP 529){said}", code="upstream_overloaded"
        )
    if status == 504:
        return UpstreamTimeout(f"Deployment '{deployment}' timed out (HTTP 504){said}")
    return UpstreamError(
        f"Deployment '{deployment}' failed (HTTP {status}){said}", code="upstream_error"
    )
