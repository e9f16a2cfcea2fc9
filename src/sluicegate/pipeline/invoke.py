"""The terminal handler: the model catalogue, or the executor that routes and calls."""

from __future__ import annotations

import time

import orjson

from sluicegate.pipeline.call import Call, Reply
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
        if call.endpoint is Endpoint.MODELS:
            return self._catalogue()
        return await self.executor.run(call)

    def _catalogue(self) -> Reply:
        data = [
            {"id": name, "object": "model", "created": self.created, "owned_by": "sluicegate"}
            for name in self.router.model_names
        ]
        return Reply(body=orjson.dumps({"object": "list", "data": data}))
