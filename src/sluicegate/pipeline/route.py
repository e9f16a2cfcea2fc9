"""Stage: pick the deployment that serves this call."""

from __future__ import annotations

from sluicegate.pipeline.call import Call, Reply
from sluicegate.pipeline.stage import Next
from sluicegate.routing.router import Router

__all__ = ["Route"]


class Route:
    """Checks that the model exists and serves this endpoint; the executor picks deployments."""

    name = "route"

    def __init__(self, router: Router) -> None:
        self.router = router

    async def __call__(self, call: Call, call_next: Next) -> Reply:
        if call.model is not None:
            self.router.resolve(call.model, call.endpoint)
        return await call_next(call)
