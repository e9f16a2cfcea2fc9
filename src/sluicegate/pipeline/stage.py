"""The stage contract and the pipeline that chains stages.

A stage is a small object built once from config, with one async method::

    async def __call__(self, call: Call, call_next: Next) -> Reply

It may act before ``call_next`` (authenticate, admit, inspect input), after it
(inspect output, settle, record), or both. Stages are listed outermost first,
so the last stage's ``call_next`` is the terminal handler that calls a provider.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Protocol

from sluicegate.pipeline.call import Call, Reply

__all__ = ["Next", "Pipeline", "Stage"]

Next = Callable[[Call], Awaitable[Reply]]


class Stage(Protocol):
    name: str

    async def __call__(self, call: Call, call_next: Next) -> Reply: ...


class Pipeline:
    """The one way a request reaches a provider. Routes hold nothing else."""

    def __init__(self, stages: Sequence[Stage], terminal: Next) -> None:
        self.stages = tuple(stages)
        handler: Next = terminal
        # Bind the chain once; a request pays one call per stage and nothing more.
        for stage in reversed(self.stages):
            handler = partial(stage, call_next=handler)
        self._handler = handler

    def run(self, call: Call) -> Awaitable[Reply]:
        return self._handler(call)
