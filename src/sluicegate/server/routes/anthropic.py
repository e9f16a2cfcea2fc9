"""The Anthropic Messages route: Claude clients over any backend, through the same pipeline.

The request is checked and told as an OpenAI chat call; the reply is told back
as an Anthropic message or event stream. Every failure, in the body or in-band,
is in Anthropic's error shape, which is what Claude SDKs parse.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response

from sluicegate.errors import SluicegateError, UpstreamError
from sluicegate.pipeline.call import Parsed, Reply
from sluicegate.protocol.anthropic import error_body, to_anthropic_message
from sluicegate.protocol.anthropic_request import to_openai_request, validate_messages
from sluicegate.protocol.anthropic_stream import ToAnthropicStream, anthropic_event
from sluicegate.server.routes.calls import new_call, run
from sluicegate.server.sse import render
from sluicegate.types import Endpoint, JSONObject

__all__ = ["messages"]

log = logging.getLogger("sluicegate")


async def messages(request: Request) -> Response:
    request_id: str = request.scope["state"]["request_id"]
    try:
        call = new_call(request, Endpoint.CHAT, _parse)
        reply = await run(request, call)
        model = call.model or ""
        if reply.stream is not None:
            reply.stream = _translate(reply.stream, reply, ToAnthropicStream(model), request_id)
            return render(reply, call)
        content = orjson.dumps(to_anthropic_message(_completion(reply), model))
        headers = call.reply_headers | reply.headers
        return Response(content, reply.status, headers, media_type="application/json")
    except SluicegateError as exc:
        return _error(exc, request_id)


def _parse(body: JSONObject) -> Parsed:
    model, stream = validate_messages(body)
    return Parsed(model, stream, to_openai_request(body))


def _completion(reply: Reply) -> JSONObject:
    try:
        answer = orjson.loads(reply.body or b"null")
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("The backend answered with invalid JSON.") from exc
    if not isinstance(answer, dict):
        raise UpstreamError("The backend answered with something not a chat completion.")
    return answer


def _error(exc: SluicegateError, request_id: str) -> Response:
    headers = {**exc.headers, "x-request-id": request_id}
    content = orjson.dumps(error_body(exc, request_id))
    return Response(content, exc.status, headers, media_type="application/json")


async def _translate(
    source: AsyncIterator[bytes], reply: Reply, translator: ToAnthropicStream, request_id: str
) -> AsyncIterator[bytes]:
    """OpenAI SSE in, Anthropic SSE out; a failure ends the stream with an Anthropic error event.

    ``server.sse.render`` would send an OpenAI-shaped error event, which Claude SDKs
    ignore, so errors are turned into Anthropic's ``event: error`` here and the reply
    is marked failed before ``render`` sees the (then clean) end.
    """
    error: SluicegateError | None = None
    try:
        async for events in source:
            for out in translator.feed_events(events):
                yield out
        if not translator.done:
            raise UpstreamError("The backend ended the stream before it was complete.")
    except SluicegateError as exc:
        error = exc
    except Exception as exc:
        log.error("stream failed", exc_info=exc, extra={"request_id": request_id})
        error = SluicegateError(
            f"Internal error; quote request id {request_id}.", code="internal_error"
        )
    finally:
        close = getattr(source, "aclose", None)
        if close is not None:
            await close()
    if error is not None:
        reply.end(error.code or error.type)
        yield anthropic_event(error_body(error, request_id))
