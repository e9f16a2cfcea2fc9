"""Stage: pick the deployment that serves this call."""

from __future__ import annotations

from sluicegate.errors import SluicegateError
from sluicegate.pipeline.call import Call, Reply
from sluicegate.pipeline.stage import Next
from sluicegate.routing.router import Router

__all__ = ["Route"]


class Route:
    name = "route"

    def __init__(self, router: Router) -> None:
        self.router = router

    async def __call__(self, call: Call, call_next: Next) -> Reply:
        if call.model is None:
            return await call_next(call)
        target = self.router.resolve(call.model, call.endpoint)
        call.target = target
        call.reply_headers["x-sluicegate-deployment"] = target.deployment_id
        try:
            return await call_next(call)
        except SluicegateError as exc:
            # An upstream failure should still say which deployment failed.
            exc.headers.setdefault("x-sluicegate-deployment", target.deployment_id)
            raise
