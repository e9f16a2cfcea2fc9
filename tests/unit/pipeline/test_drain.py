"""pipeline/drain: new calls are refused once draining; admitted ones are counted to their end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sluicegate.errors import ServiceUnavailable, UpstreamError
from sluicegate.pipeline.call import Call, Reply
from sluicegate.pipeline.drain import Drain, DrainGate
from sluicegate.types import Endpoint


def call() -> Call:
    return Call(request_id="r", endpoint=Endpoint.CHAT, model="m")


async def chunks() -> AsyncIterator[bytes]:
    yield b"data: [DONE]\n\n"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_calls_are_counted_until_they_end_streams_included() -> None:
    drain = Drain(30.0)
    gate = DrainGate(drain)

    async def body(c: Call) -> Reply:
        assert drain.in_flight == 1
        return Reply(body=b"{}")

    async def stream(c: Call) -> Reply:
        return Reply(stream=chunks())

    async def failing(c: Call) -> Reply:
        raise UpstreamError("down")

    asyncio.run(gate(call(), body))
    assert drain.in_flight == 0
    with pytest.raises(UpstreamError):
        asyncio.run(gate(call(), failing))
    assert drain.in_flight == 0
    reply = asyncio.run(gate(call(), stream))
    assert drain.in_flight == 1
    reply.end(None)
    reply.end("again")  # ends once
    assert drain.in_flight == 0


def test_draining_refuses_new_calls_with_503_shutting_down() -> None:
    drain = Drain(30.0)
    drain.begin()
    reached = False

    async def terminal(c: Call) -> Reply:
        nonlocal reached
        reached = True
        return Reply(body=b"{}")

    with pytest.raises(ServiceUnavailable) as caught:
        asyncio.run(DrainGate(drain)(call(), terminal))
    assert not reached
    assert caught.value.status == 503 and caught.value.code == "shutting_down"
    assert caught.value.headers == {"connection": "close"}
    assert drain.in_flight == 0


def test_drain_finishes_when_idle_or_when_time_is_up() -> None:
    clock = Clock()
    drain = Drain(10.0, clock=clock)
    assert not drain.finished() and drain.remaining() == 10.0  # not draining yet
    drain.in_flight = 2
    drain.begin()
    clock.now += 4
    assert drain.remaining() == 6.0 and not drain.finished()
    drain.begin()  # a second signal does not restart the clock
    assert drain.remaining() == 6.0
    drain.in_flight = 0
    assert drain.finished()
    drain.in_flight = 1
    clock.now += 6
    assert drain.remaining() == 0.0 and drain.finished()
