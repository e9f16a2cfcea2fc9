"""The fair queue: priority classes, fair shares between tenants, limits, cancellation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from sluicegate.config.routing import QueueConfig
from sluicegate.errors import RateLimited
from sluicegate.routing.admission import FairQueue

FAR = float("inf")  # no call deadline: the queue's own timeout applies


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


class Room:
    """Waiters on one queue, and the order in which they were let through."""

    def __init__(self, queue: FairQueue) -> None:
        self.queue = queue
        self.granted: list[str] = []
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def join(self, label: str, tenant: str, priority: int = 0) -> None:
        async def wait() -> None:
            await self.queue.wait(tenant, priority, FAR)
            self.granted.append(label)

        self.tasks[label] = asyncio.create_task(wait())
        await settle()

    async def grant(self, times: int = 1) -> None:
        for _ in range(times):
            self.queue.notify()
            await settle()


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def queue(size: int = 256, timeout: float = 30.0, **kwargs: Any) -> FairQueue:
    return FairQueue(QueueConfig(size=size, timeout=timeout), model="m", **kwargs)


def test_one_tenant_is_served_in_arrival_order() -> None:
    async def scenario() -> None:
        room = Room(queue())
        for i in range(6):
            await room.join(f"a{i}", "a")
        assert len(room.queue) == 6
        await room.grant(6)
        assert room.granted == [f"a{i}" for i in range(6)]
        assert len(room.queue) == 0

    run(scenario)


def test_interactive_goes_before_batch_that_came_first() -> None:
    async def scenario() -> None:
        room = Room(queue())
        for i in range(3):
            await room.join(f"batch{i}", "a", priority=1)
        await room.join("int0", "b", priority=0)
        await room.join("int1", "a", priority=0)
        await room.grant(2)
        assert room.granted == ["int0", "int1"]
        await room.join("int2", "c", priority=0)
        await room.grant(4)
        assert room.granted == ["int0", "int1", "int2", "batch0", "batch1", "batch2"]

    run(scenario)


def test_a_flood_does_not_starve_a_tenant_that_comes_later() -> None:
    async def scenario() -> None:
        room = Room(queue())
        for i in range(100):
            await room.join(f"flood{i}", "flood")
        await room.grant(20)
        for i in range(5):
            await room.join(f"calm{i}", "calm")
        grants_until_calm_done = 0
        while any(f"calm{i}" not in room.granted for i in range(5)):
            await room.grant()
            grants_until_calm_done += 1
        # 5 calm waiters behind 80 flood waiters: one flood grant between each, at most.
        assert grants_until_calm_done <= 10
        assert room.granted[20] == "calm0"  # the first one goes at once
        calm = [label for label in room.granted if label.startswith("calm")]
        assert calm == [f"calm{i}" for i in range(5)]
        await room.grant(200)
        assert len(room.granted) == 105 and len(room.queue) == 0

    run(scenario)


def test_weights_two_to_one_share_grants_two_to_one_under_backlog() -> None:
    async def scenario() -> None:
        room = Room(queue(weights={"gold": 2.0}))
        for i in range(60):
            await room.join(f"gold{i}", "gold")
            await room.join(f"std{i}", "std")
        await room.grant(30)
        gold = sum(label.startswith("gold") for label in room.granted)
        assert (gold, 30 - gold) == (20, 10)
        await room.grant(30)
        gold = sum(label.startswith("gold") for label in room.granted)
        assert (gold, 60 - gold) == (40, 20)
        for task in room.tasks.values():
            task.cancel()

    run(scenario)


def test_bad_weight_is_refused() -> None:
    with pytest.raises(ValueError, match="tenant 'x'"):
        queue(weights={"x": 0.0})


def test_full_queue_refuses_at_once_with_retry_after() -> None:
    async def scenario() -> None:
        room = Room(queue(size=3, timeout=20.0))
        for i in range(3):
            await room.join(f"a{i}", "a")
        began = time.monotonic()
        with pytest.raises(RateLimited) as caught:
            await room.queue.wait("b", 0, FAR)
        assert time.monotonic() - began < 0.5  # at once, not after the timeout
        error = caught.value
        assert error.status == 429 and error.code == "queue_full"
        assert "queue for model 'm' is full (3 waiting)" in error.message
        # Nothing served yet: one second a grant is assumed, three waiters ahead.
        assert error.headers["retry-after"] == "3"
        assert len(room.queue) == 3
        for task in room.tasks.values():
            task.cancel()

    run(scenario)


def test_size_zero_never_queues() -> None:
    async def scenario() -> None:
        with pytest.raises(RateLimited, match="full"):
            await queue(size=0).wait("a", 0, FAR)

    run(scenario)


def test_wait_ends_at_the_queue_timeout() -> None:
    async def scenario() -> None:
        q = queue(timeout=0.2)
        began = time.monotonic()
        with pytest.raises(RateLimited) as caught:
            await q.wait("a", 0, FAR)
        waited = time.monotonic() - began
        assert 0.19 < waited < 1.0
        assert caught.value.code == "queue_timeout"
        assert "Waited 0.2" in caught.value.message and "model 'm'" in caught.value.message
        assert int(caught.value.headers["retry-after"]) >= 1
        assert len(q) == 0

    run(scenario)


def test_wait_ends_at_the_calls_own_earlier_deadline() -> None:
    async def scenario() -> None:
        q = queue(timeout=30.0)
        loop = asyncio.get_running_loop()
        began = time.monotonic()
        with pytest.raises(RateLimited, match=r"Waited 0\.1"):
            await q.wait("a", 0, loop.time() + 0.1)
        assert time.monotonic() - began < 1.0  # not the 30 s of the queue
        with pytest.raises(RateLimited, match="No time left"):
            await q.wait("a", 0, loop.time() - 1)
        assert len(q) == 0

    run(scenario)


def test_retry_after_follows_the_measured_rate_of_grants() -> None:
    async def scenario() -> None:
        room = Room(queue(size=4, timeout=30.0))
        for i in range(4):
            await room.join(f"a{i}", "a")
        for _ in range(3):  # slots free up every 20 ms
            await asyncio.sleep(0.02)
            await room.grant()
        await room.join("a4", "a")
        await room.join("a5", "a")
        await room.join("a6", "a")
        assert len(room.queue) == 4
        with pytest.raises(RateLimited) as caught:
            await room.queue.wait("b", 0, FAR)
        # Estimate well under the 1 s assumed before any grant: 4 waiters x ~20 ms.
        assert caught.value.retry_after < 1.0
        for task in room.tasks.values():
            task.cancel()

    run(scenario)


def test_a_cancelled_waiter_leaves_no_trace() -> None:
    async def scenario() -> None:
        room = Room(queue())
        await room.join("a0", "a")
        await room.join("b0", "b")
        await room.join("a1", "a")
        room.tasks["a0"].cancel()
        await settle()
        assert len(room.queue) == 2
        await room.grant(2)
        assert room.granted == ["b0", "a1"]
        assert room.tasks["a0"].cancelled()
        # One wake-up more than waiters: nothing is left to wake, nothing is banked.
        await room.grant()
        await room.join("late", "a")
        assert room.granted == ["b0", "a1"]
        room.tasks["late"].cancel()
        await settle()
        assert len(room.queue) == 0 and not room.queue._classes

    run(scenario)


def test_a_cancelled_waiter_gives_back_its_tenants_unused_share() -> None:
    async def scenario() -> None:
        room = Room(queue())
        for i in range(4):
            await room.join(f"x{i}", "x")
        await room.join("y0", "y")
        await room.join("y1", "y")
        room.tasks["y1"].cancel()
        await settle()
        await room.join("y2", "y")
        await room.grant(4)
        # y2 takes y1's place, right after x1, not behind a phantom y1 (after x2).
        assert room.granted == ["x0", "y0", "x1", "y2"]
        await room.grant(2)

    run(scenario)


def test_a_wake_up_given_to_a_waiter_cancelled_before_it_ran_passes_on() -> None:
    async def scenario() -> None:
        room = Room(queue())
        await room.join("a0", "a")
        await room.join("a1", "a")
        room.queue.notify()  # picks a0 ...
        room.tasks["a0"].cancel()  # ... which is cancelled before it could run
        await settle()
        assert room.tasks["a0"].cancelled()
        assert room.granted == ["a1"]
        assert len(room.queue) == 0

    run(scenario)


def test_a_wake_up_for_a_waiter_already_cancelled_goes_to_the_next() -> None:
    async def scenario() -> None:
        room = Room(queue())
        await room.join("a0", "a")
        await room.join("b0", "b")
        room.tasks["a0"].cancel()  # cancelled, but its task has not run yet ...
        room.queue.notify()  # ... when the slot frees
        await settle()
        assert room.granted == ["b0"]
        assert len(room.queue) == 0 and not room.queue._classes

    run(scenario)


def test_timed_out_waiters_do_not_pile_up() -> None:
    async def scenario() -> None:
        q = queue(timeout=30.0)
        room = Room(q)
        await room.join("keeper", "k")  # holds the class open: no notify for a while
        q.timeout = 0.001
        for i in range(40):
            with pytest.raises(RateLimited):
                await q.wait(f"t{i}", 0, FAR)
        cls = q._classes[0]
        assert len(q) == 1 and set(cls.tenants) == {"k"}
        assert len(cls.heap) <= 34  # tombstones are swept, not kept forever
        q.notify()
        await settle()
        assert room.granted == ["keeper"] and not q._classes

    run(scenario)


def test_notify_on_an_empty_queue_is_a_no_op() -> None:
    async def scenario() -> None:
        q = queue(timeout=0.05)
        began = time.perf_counter()
        for _ in range(100_000):
            q.notify()
        per_call = (time.perf_counter() - began) / 100_000
        assert per_call < 2e-6
        # No wake-up was banked: a later waiter still waits for its own.
        with pytest.raises(RateLimited):
            await q.wait("a", 0, FAR)

    run(scenario)
