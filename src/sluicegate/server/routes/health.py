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
    """200 when every model has at least one healthy deployment, else 503 naming the gaps."""
    report = await gateway(request).readiness()
    unready = sorted(name for name, deps in report.items() if not any(deps.values()))
    body = {
        "status": "not_ready" if unready else "ready",
        "unready_models": unready,
        "models": {
            name: {"healthy": sum(deps.values()), "deployments": deps}
            for name, deps in report.items()
        },
    }
    return Response(
        orjson.dumps(body), status_code=503 if unready else 200, media_type="application/json"
    )
