"""The terminal handler: the model catalogue, or the executor that routes and calls."""

from __future__ import annotations

import time

import orjson

from sluicegate.pipeline.call import Call, Reply
from sluicegate.pipeline.route import may_use
from sluicegate.routing.executor import Executor
from sluicegate.routing.router import Router
from sluicegate.types import Endpoint

__all__ = ["Invoke"]


class Invoke:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.executor = Executor(router)
        self.created = int(time.time())

    async def __call__(self, call: Call) -> Reply:
        if call.handler is not None:
            return await call.handler(call)
        if call.endpoint is Endpoint.MODELS:
            return self._catalogue(call)
        return await self.executor.run(call)

    def _catalogue(self, call: Call) -> Reply:
        """The models this caller's role may use."""
        principal = call.principal
        data = [
            {"id": name, "object": "model", "created": self.created, "owned_by": "sluicegate"}
            for name, group in self.router.groups.items()
            if principal is None or may_use(principal, group)
        ]
        return Reply(body=orjson.dumps({"object": "list", "data": data}))
