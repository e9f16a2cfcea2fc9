"""providers/local/slots: admission, refusal with Retry-After, timeouts, first-come first-served."""

from __future__ import annotations

import asyncio

import pytest

from sluicegate.errors import RateLimited
from sluicegate.providers.local.slots import Lease, Slots


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_free_slots_are_taken_at_once_and_given_back() -> None:
    async def main() -> None:
        slots = Slots(2, queue_size=0, timeout=1.0, name="m")
        first, second = await slots.acquire(), await slots.acquire()
        assert slots.in_use == 2
        first.release()
        first.release()  # idempotent: a second release frees nothing more
        assert slots.in_use == 1
        second.release()
        assert slots.in_use == 0

    run(main())


def test_a_full_queue_refuses_with_429_and_retry_after() -> None:
    async def main() -> None:
        slots = Slots(1, queue_size=1, timeout=5.0, name="smollm2", typical_hold=4.0)
        held = await slots.acquire()
        waiting = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        assert slots.waiting == 1
        with pytest.raises(RateLimited) as caught:
            await slots.acquire()
        exc = caught.value
        assert exc.status == 429
        assert "smollm2" in exc.message and "1 requests are already waiting" in exc.message
        # One waiter ahead on one slot: two holds of about 4 s each.
        assert exc.retry_after == pytest.approx(8.0)
        assert exc.headers == {"retry-after": "8"}
        held.release()
        (await waiting).release()

    run(main())


def test_queue_size_zero_refuses_as_soon_as_all_slots_are_busy() -> None:
    async def main() -> None:
        slots = Slots(1, queue_size=0, timeout=5.0, name="m", typical_hold=0.2)
        held = await slots.acquire()
        with pytest.raises(RateLimited) as caught:
            await slots.acquire()
        assert caught.value.headers["retry-after"] == "1"  # never less than one second
        held.release()
        (await slots.acquire()).release()

    run(main())


def test_a_wait_past_the_timeout_gets_429_and_leaves_the_queue() -> None:
    async def main() -> None:
        slots = Slots(1, queue_size=4, timeout=0.05, name="m", typical_hold=3.0)
        held = await slots.acquire()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RateLimited) as caught:
            await slots.acquire()
        assert 0.04 <= loop.time() - started < 1.0
        assert "within 0.05s" in caught.value.message
        assert caught.value.headers["retry-after"] == "3"
        assert slots.waiting == 0
        held.release()
        assert slots.in_use == 0

    run(main())


def test_a_freed_slot_goes_to_the_longest_waiter_not_a_newcomer() -> None:
    async def main() -> None:
        slots = Slots(1, queue_size=3, timeout=5.0, name="m")
        order: list[str] = []

        async def worker(name: str) -> None:
            lease = await slots.acquire()
            order.append(name)
            await asyncio.sleep(0.01)
            lease.release()

        held = await slots.acquire()
        tasks = [asyncio.create_task(worker(name)) for name in ("a", "b", "c")]
        await asyncio.sleep(0)
        held.release()
        # A newcomer arriving right after the release must queue behind a, b and c.
        newcomer = asyncio.create_task(worker("late"))
        await asyncio.gather(*tasks, newcomer)
        assert order == ["a", "b", "c", "late"]
        assert slots.in_use == 0 and slots.waiting == 0

    run(main())


def test_a_cancelled_waiter_frees_its_place_and_the_slot_moves_on() -> None:
    async def main() -> None:
        slots = Slots(1, queue_size=2, timeout=5.0, name="m")
        held = await slots.acquire()
        gone = asyncio.create_task(slots.acquire())
        stays = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        assert slots.waiting == 1
        held.release()
        lease = await asyncio.wait_for(stays, 1.0)
        assert isinstance(lease, Lease)
        lease.release()
        assert slots.in_use == 0

    run(main())


def test_a_slot_handed_over_as_the_wait_times_out_is_not_lost() -> None:
    async def main() -> None:
        slots = Slots(1, queue_size=2, timeout=5.0, name="m")
        held = await slots.acquire()
        waiter = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        # Hand the slot over and cancel the waiter before it can resume.
        held.release()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert slots.in_use == 0
        (await slots.acquire()).release()

    run(main())


def test_retry_after_learns_how_long_calls_hold_a_slot() -> None:
    async def main() -> None:
        slots = Slots(1, queue_size=0, timeout=1.0, name="m", typical_hold=10.0)
        for _ in range(20):
            (await slots.acquire()).release()
        assert slots.typical_hold < 0.1

    run(main())


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Slots(0, queue_size=1, timeout=1.0, name="m")
