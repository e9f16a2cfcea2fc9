"""Build a Call from an HTTP request; the only way a route reaches the pipeline."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from sluicegate.pipeline.call import Call, Reply
from sluicegate.server.body import api_key
from sluicegate.server.gateway import gateway
from sluicegate.server.sse import render
from sluicegate.types import Endpoint, JSONObject

__all__ = ["new_call", "run", "run_and_render"]


def new_call(
    request: Request,
    endpoint: Endpoint,
    body: JSONObject,
    raw: bytes | None,
    model: str | None,
    stream: bool = False,
) -> Call:
    client = request.client
    return Call(
        request_id=request.scope["state"]["request_id"],
        endpoint=endpoint,
        body=body,
        raw=raw,
        model=model,
        stream=stream,
        api_key=api_key(request),
        client=client.host if client else None,
    )


async def run(request: Request, call: Call) -> Reply:
    return await gateway(request).pipeline.run(call)


async def run_and_render(request: Request, call: Call) -> Response:
    return render(await run(request, call), call)
