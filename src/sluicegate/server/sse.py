"""Write a reply as an HTTP response; a stream that fails after its first byte ends in-band."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from sluicegate.errors import SluicegateError
from sluicegate.pipeline.call import Call, Reply
from sluicegate.protocol.sse import DONE, aclose, error_event

__all__ = ["render"]

log = logging.getLogger("sluicegate")

_STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def render(reply: Reply, call: Call) -> Response:
    headers = call.reply_headers | reply.headers if reply.headers else call.reply_headers
    if reply.stream is None:
        return Response(
            reply.body, status_code=reply.status, headers=headers, media_type="application/json"
        )
    return _Relayed(
        reply,
        relay(reply, call.request_id),
        status_code=reply.status,
        headers=_STREAM_HEADERS | headers,
        media_type="text/event-stream",
    )


class _Relayed(StreamingResponse):
    """Ends the reply even when the body is never iterated: a client that left before the
    response started would otherwise leave its stream open and its accounting unsettled."""

    def __init__(self, reply: Reply, content: AsyncIterator[bytes], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.reply = reply

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if not self.reply.finished:
                assert self.reply.stream is not None
                await aclose(self.reply.stream)
                self.reply.end("client_disconnected")


async def relay(reply: Reply, request_id: str) -> AsyncIterator[bytes]:
    """Pass the stream on; on failure send one error event and no [DONE]."""
    assert reply.stream is not None
    error: str | None = "client_disconnected"
    try:
        async for chunk in reply.stream:
            if chunk.endswith(DONE):
                # Complete once [DONE] is out, even if the client hangs up right after.
                error = None
            yield chunk
        error = None
    except SluicegateError as exc:
        error = exc.code or exc.type
        body = exc.body()
        body["error"]["request_id"] = request_id  # type: ignore[index]
        yield error_event(body)
    except Exception as exc:
        error = "internal_error"
        log.error("stream failed", exc_info=exc, extra={"request_id": request_id})
        yield error_event(
            {
                "error": {
                    "message": f"Internal error; quote request id {request_id}.",
                    "type": "api_error",
                    "param": None,
                    "code": "internal_error",
                    "request_id": request_id,
                }
            }
        )
    finally:
        # Close the provider's stream now, so a client that left frees the upstream at once.
        await aclose(reply.stream)
        reply.end(error)
