"""pipeline/stage: stages run outermost first, around the terminal, and errors pass through."""

from __future__ import annotations

import asyncio

import pytest

from sluicegate.errors import InvalidRequest
from sluicegate.pipeline.call import Call, Reply
from sluicegate.pipeline.stage import Next, Pipeline, Stage
from sluicegate.types import Endpoint


class Recorder:
    """A stage that notes when it is entered and left, in a shared log."""

    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.name = name
        self.log = log
        self.fail = fail

    async def __call__(self, call: Call, call_next: Next) -> Reply:
        self.log.append(f"{self.name}>")
        if self.fail:
            raise InvalidRequest(f"{self.name} refused", param="x")
        try:
            reply = await call_next(call)
        finally:
            self.log.append(f"<{self.name}")
        reply.headers[self.name] = "seen"
        return reply


def run(pipeline: Pipeline, c: Call) -> Reply:
    async def main() -> Reply:
        return await pipeline.run(c)

    return asyncio.run(main())


def call() -> Call:
    return Call(request_id="r", endpoint=Endpoint.CHAT, body={}, raw=b"{}", model="m")


def terminal_for(log: list[str], fail: bool = False) -> Next:
    async def terminal(c: Call) -> Reply:
        log.append("terminal")
        if fail:
            raise RuntimeError("provider broke")
        return Reply(body=b'{"ok":true}')

    return terminal


def test_stages_wrap_the_terminal_in_order() -> None:
    log: list[str] = []
    stages = [Recorder(n, log) for n in ("first", "second", "third")]
    pipeline = Pipeline(stages, terminal_for(log))
    reply = run(pipeline, call())
    assert log == ["first>", "second>", "third>", "terminal", "<third", "<second", "<first"]
    assert reply.body == b'{"ok":true}'
    assert list(reply.headers) == ["third", "second", "first"]
    assert [s.name for s in pipeline.stages] == ["first", "second", "third"]


def test_no_stages_calls_the_terminal() -> None:
    log: list[str] = []
    reply = run(Pipeline([], terminal_for(log)), call())
    assert log == ["terminal"]
    assert reply.body == b'{"ok":true}'


def test_a_refusing_stage_stops_the_call() -> None:
    log: list[str] = []
    stages = [Recorder("outer", log), Recorder("guard", log, fail=True), Recorder("inner", log)]
    with pytest.raises(InvalidRequest, match="guard refused"):
        run(Pipeline(stages, terminal_for(log)), call())
    assert log == ["outer>", "guard>", "<outer"]


def test_terminal_errors_propagate_through_every_stage() -> None:
    log: list[str] = []
    stages = [Recorder("outer", log), Recorder("inner", log)]
    with pytest.raises(RuntimeError, match="provider broke"):
        run(Pipeline(stages, terminal_for(log, fail=True)), call())
    assert log == ["outer>", "inner>", "terminal", "<inner", "<outer"]


def test_pipeline_is_reusable() -> None:
    log: list[str] = []
    pipeline = Pipeline([Recorder("only", log)], terminal_for(log))

    async def twice() -> None:
        await pipeline.run(call())
        await pipeline.run(call())

    asyncio.run(twice())
    assert log == ["only>", "terminal", "<only"] * 2


def test_stages_list_is_frozen_at_build_time() -> None:
    log: list[str] = []
    stages = [Recorder("a", log)]
    pipeline = Pipeline(stages, terminal_for(log))
    stages.append(Recorder("late", log))
    run(pipeline, call())
    assert "late>" not in log
    assert isinstance(pipeline.stages, tuple)


def test_wrap_dresses_every_stage_and_the_terminal() -> None:
    log: list[str] = []

    class Dressed:
        def __init__(self, stage: Stage) -> None:
            self.stage = stage
            self.name = stage.name

        async def __call__(self, call: Call, call_next: Next) -> Reply:
            log.append(f"[{self.name}")
            try:
                return await self.stage(call, call_next)
            finally:
                log.append(f"{self.name}]")

    def dress(stage: Stage) -> Stage:
        return Dressed(stage)

    stages = [Recorder(n, log) for n in ("first", "second")]
    run(Pipeline(stages, terminal_for(log), wrap=dress), call())
    assert log == [
        "[first",
        "first>",
        "[second",
        "second>",
        "[invoke",
        "terminal",
        "invoke]",
        "<second",
        "second]",
        "<first",
        "first]",
    ]
