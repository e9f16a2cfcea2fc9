"""Liveness and readiness: the only routes without auth."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from sluicegate.server.gateway import gateway

__all__ = ["health", "ready"]


async def health(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def ready(request: Request) -> Response:
    """200 when every model has at least one healthy deployment, else 503 naming the gaps;
    503 ``draining`` from the moment a shutdown begins."""
    gw = gateway(request)
    if gw.drain.draining:
        return Response(b'{"status":"draining"}', status_code=503, media_type="application/json")
    report = await gw.readiness()
    unready = sorted(name for name, deps in report.items() if not any(deps.values()))
    body = {
        "status": "not_ready" if unready else "ready",
        "unready_models": unready,
        "breakers": gw.breakers(),
        "models": {
            name: {"healthy": sum(deps.values()), "deployments": deps}
            for name, deps in report.items()
        },
    }
    return Response(
        orjson.dumps(body), status_code=503 if unready else 200, media_type="application/json"
    )
