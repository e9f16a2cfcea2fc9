"""The API's own description, for any valid key."""

from __future__ import annotations

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from sluicegate.pipeline.call import Call, Reply
from sluicegate.server.gateway import gateway
from sluicegate.server.routes.calls import new_call, run_and_render
from sluicegate.types import Endpoint

__all__ = ["metrics", "openapi"]

_document: bytes | None = None


async def _serve(call: Call) -> Reply:
    global _document
    if _document is None:
        from sluicegate.server.openapi import openapi_document

        _document = orjson.dumps(openapi_document())
    return Reply(body=_document)


async def metrics(request: Request) -> Response:
    """Prometheus exposition, for admin keys (give the scraper one as its bearer token)."""
    gw = gateway(request)

    async def serve(call: Call) -> Reply:
        return Reply(body=gw.metrics.exposition(), headers={"content-type": CONTENT_TYPE_LATEST})

    call = new_call(request, Endpoint.METRICS)
    call.handler = serve
    return await run_and_render(request, call)


async def openapi(request: Request) -> Response:
    call = new_call(request, Endpoint.OPENAPI)
    call.handler = _serve
    return await run_and_render(request, call)
