"""providers/local/threads: model work on a thread, results and streams back on the loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from sluicegate.errors import InvalidRequest, SluicegateError, UpstreamError
from sluicegate.providers.local import threads


def to_error(exc: BaseException) -> SluicegateError:
    return UpstreamError(f"mapped {type(exc).__name__}")


class Done:
    """Records when the slot would be released, and on which thread."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.thread: str | None = None

    def __call__(self) -> None:
        self.thread = threading.current_thread().name
        self.event.set()


def test_call_returns_the_result_and_releases_on_the_loop_thread() -> None:
    async def main() -> None:
        done = Done()
        with ThreadPoolExecutor(1, thread_name_prefix="model") as pool:
            result = await threads.call(
                pool,
                threading.current_thread,
                done=done,
                cancel=threading.Event(),
                errors=to_error,
            )
            assert result.name.startswith("model")
            await asyncio.wait_for(done.event.wait(), 1)
        assert done.thread == threading.current_thread().name

    asyncio.run(main())


def test_call_maps_foreign_errors_and_passes_ours() -> None:
    def boom() -> None:
        raise KeyError("x")

    def ours() -> None:
        raise InvalidRequest("bad", param="p")

    async def main() -> None:
        with ThreadPoolExecutor(1) as pool:
            cancel = threading.Event()
            with pytest.raises(UpstreamError, match="mapped KeyError"):
                await threads.call(pool, boom, done=lambda: None, cancel=cancel, errors=to_error)
            with pytest.raises(InvalidRequest):
                await threads.call(pool, ours, done=lambda: None, cancel=cancel, errors=to_error)

    asyncio.run(main())


def test_a_cancelled_caller_signals_the_thread_and_release_waits_for_it() -> None:
    async def main() -> None:
        cancel = threading.Event()
        done = Done()
        finished = threading.Event()

        def work() -> None:
            cancel.wait(5)
            time.sleep(0.05)  # still busy after the caller left
            finished.set()

        with ThreadPoolExecutor(1) as pool:
            task = asyncio.create_task(
                threads.call(pool, work, done=done, cancel=cancel, errors=to_error)
            )
            await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert cancel.is_set()
            assert not done.event.is_set()  # the thread is still running: the slot stays held
            await asyncio.wait_for(done.event.wait(), 2)
            assert finished.is_set()

    asyncio.run(main())


def test_stream_delivers_items_in_order_as_they_are_made() -> None:
    def produce() -> Iterator[bytes]:
        for i in range(5):
            time.sleep(0.01)
            yield b"%d" % i

    async def main() -> list[bytes]:
        done = Done()
        with ThreadPoolExecutor(1) as pool:
            items = await threads.stream(
                pool, produce, done=done, cancel=threading.Event(), errors=to_error
            )
            got = [item async for item in items]
            await asyncio.wait_for(done.event.wait(), 1)
            return got

    assert asyncio.run(main()) == [b"0", b"1", b"2", b"3", b"4"]


def test_an_error_before_the_first_item_is_raised_by_stream_itself() -> None:
    def produce() -> Iterator[bytes]:
        raise ValueError("prompt too long")
        yield b"never"

    async def main() -> None:
        with ThreadPoolExecutor(1) as pool:
            cancel = threading.Event()
            with pytest.raises(UpstreamError, match="mapped ValueError"):
                await threads.stream(
                    pool, produce, done=lambda: None, cancel=cancel, errors=to_error
                )
            assert cancel.is_set()

    asyncio.run(main())


def test_an_error_mid_stream_arrives_after_the_items_before_it() -> None:
    def produce() -> Iterator[bytes]:
        yield b"a"
        raise InvalidRequest("late")

    async def main() -> list[bytes]:
        got: list[bytes] = []
        with ThreadPoolExecutor(1) as pool:
            items = await threads.stream(
                pool, produce, done=lambda: None, cancel=threading.Event(), errors=to_error
            )
            with pytest.raises(InvalidRequest):
                async for item in items:
                    got.append(item)
        return got

    assert asyncio.run(main()) == [b"a"]


def test_closing_the_stream_stops_the_producer_promptly() -> None:
    produced: list[int] = []
    closed = threading.Event()

    def produce() -> Iterator[bytes]:
        try:
            for i in range(10_000):
                produced.append(i)
                time.sleep(0.001)
                yield b"x"
        finally:
            closed.set()

    async def main() -> None:
        cancel = threading.Event()
        done = Done()
        with ThreadPoolExecutor(1) as pool:
            items = await threads.stream(pool, produce, done=done, cancel=cancel, errors=to_error)
            async for _ in items:
                break
            await items.aclose()  # type: ignore[attr-defined]
            assert cancel.is_set()
            await asyncio.wait_for(done.event.wait(), 2)
        assert closed.is_set()
        assert len(produced) < 1000

    asyncio.run(main())


def test_a_stream_dropped_unread_still_stops_its_thread() -> None:
    async def main() -> None:
        cancel = threading.Event()

        def produce() -> Iterator[bytes]:
            while not cancel.is_set():
                time.sleep(0.001)
                yield b"x"

        done = Done()
        with ThreadPoolExecutor(1) as pool:
            items = await threads.stream(pool, produce, done=done, cancel=cancel, errors=to_error)
            del items
            await asyncio.wait_for(done.event.wait(), 2)
        assert cancel.is_set()

    asyncio.run(main())
