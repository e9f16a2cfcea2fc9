"""Build a Call from an HTTP request; the only way a route reaches the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from starlette.requests import Request
from starlette.responses import Response

from sluicegate.pipeline.call import Call, Parsed, Reply
from sluicegate.server.body import api_key, read_limited
from sluicegate.server.gateway import gateway
from sluicegate.server.sse import render
from sluicegate.types import Endpoint, JSONObject

__all__ = ["new_call", "run", "run_and_render"]


def new_call(
    request: Request,
    endpoint: Endpoint,
    parser: Callable[[JSONObject], Parsed] | None = None,
) -> Call:
    """A call whose body (if ``parser`` is given) is read and checked inside the pipeline."""
    gw = gateway(request)
    client = request.client
    host = client.host if client else None
    if gw.trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            # The proxy we trust appends the address it saw: the last entry is the client.
            host = forwarded.rsplit(",", 1)[-1].strip() or host
    reader = partial(read_limited, request, gw.max_body_bytes) if parser is not None else None
    call = Call(
        request_id=request.scope["state"]["request_id"],
        endpoint=endpoint,
        read_body=reader,
        parser=parser,
        api_key=api_key(request),
        client=host,
        priority=1 if request.headers.get("x-sluicegate-priority") == "batch" else 0,
        declared_level=request.headers.get(gw.level_header),
    )
    if gw.tracing is not None:
        call.traceparent = request.headers.get("traceparent")
    return call


async def run(request: Request, call: Call) -> Reply:
    return await gateway(request).pipeline.run(call)


async def run_and_render(request: Request, call: Call) -> Response:
    return render(await run(request, call), call)
