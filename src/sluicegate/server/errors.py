"""Render any failure as an OpenAI error body with the request id. The one place that does."""

from __future__ import annotations

import logging

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from sluicegate.errors import MethodNotAllowed, NotFound, SluicegateError

__all__ = ["EXCEPTION_HANDLERS", "error_response"]

log = logging.getLogger("sluicegate")


def error_response(exc: SluicegateError, request_id: str | None) -> Response:
    headers = dict(exc.headers)
    if request_id:
        headers["x-request-id"] = request_id
    return Response(
        orjson.dumps(exc.body()),
        status_code=exc.status,
        headers=headers,
        media_type="application/json",
    )


def _request_id(request: Request) -> str | None:
    rid: str | None = request.scope.get("state", {}).get("request_id")
    return rid


async def _on_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SluicegateError)
    return error_response(exc, _request_id(request))


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    mapped: SluicegateError
    if exc.status_code == 404:
        mapped = NotFound(f"Unknown route: {request.method} {request.url.path}")
    elif exc.status_code == 405:
        mapped = MethodNotAllowed(
            f"Method {request.method} is not allowed on {request.url.path}.",
            headers=dict(exc.headers or {}),
        )
    else:
        mapped = SluicegateError(str(exc.detail))
        mapped.status = exc.status_code
    return error_response(mapped, _request_id(request))


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    rid = _request_id(request)
    log.error("unhandled error", exc_info=exc, extra={"request_id": rid})
    return error_response(
        SluicegateError(f"Internal error; quote request id {rid} when reporting it."), rid
    )


EXCEPTION_HANDLERS = {
    SluicegateError: _on_gateway_error,
    HTTPException: _on_http_error,
    Exception: _on_unexpected,
}
