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

    def __init__(
        self,
        stages: Sequence[Stage],
        terminal: Next,
        wrap: Callable[[Stage], Stage] | None = None,
    ) -> None:
        """``wrap`` (tracing, when on) dresses every stage, the terminal one included."""
        handler: Next = terminal
        if wrap is not None:
            stages = [wrap(stage) for stage in stages]
            handler = partial(wrap(_Terminal(terminal)), call_next=_no_next)
        self.stages = tuple(stages)
        # Bind the chain once; a request pays one call per stage and nothing more.
        for stage in reversed(self.stages):
            handler = partial(stage, call_next=handler)
        self._handler = handler

    def run(self, call: Call) -> Awaitable[Reply]:
        return self._handler(call)


class _Terminal:
    name = "invoke"

    def __init__(self, terminal: Next) -> None:
        self.terminal = terminal

    async def __call__(self, call: Call, call_next: Next) -> Reply:
        return await self.terminal(call)


async def _no_next(call: Call) -> Reply:
    raise RuntimeError("the terminal handler has no next stage")
