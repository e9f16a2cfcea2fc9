"""An upstream whose health can be switched between passing and failing while it runs.

Every GET answers ``status`` (200 or 503, set by the test) and is recorded with
its path and, when the test gives an ``observe`` callback, what the callback saw
as the request arrived (for instance whether the gateway still had the deployment
in rotation), so a test can count exactly how many probes a transition took.
Paths under ``/slow`` answer only after ``slow_seconds``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass(frozen=True)
class Hit:
    path: str
    status: int
    observed: object


class HealthUpstream:
    def __init__(self) -> None:
        self.status = 200
        self.slow_seconds = 1.0
        self.hits: list[Hit] = []
        self.observe: Callable[[], object] = lambda: None
        self.app = Starlette(routes=[Route("/{path:path}", self._answer)])

    def paths(self) -> set[str]:
        return {hit.path for hit in self.hits}

    async def _answer(self, request: Request) -> JSONResponse:
        status = self.status
        path = request.url.path
        self.hits.append(Hit(path, status, self.observe()))
        if path.startswith("/slow"):
            await asyncio.sleep(self.slow_seconds)
        body = {"status": "ok"} if status < 500 else {"status": "unavailable"}
        return JSONResponse(body, status_code=status)
