"""Blocking model work on worker threads, awaited from the event loop without blocking it.

Two shapes: ``call`` (one result) and ``stream`` (items handed over one by one with
``loop.call_soon_threadsafe`` into an ``asyncio.Queue``). Both tie the slot's release
to the *thread* finishing, not to the awaiting task: a client that goes away stops
waiting at once, but the model is only free again when its thread has stopped, so
two calls never share one model instance.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

from sluicegate.errors import SluicegateError

__all__ = ["ErrorMapper", "call", "stream"]

T = TypeVar("T")

#: Turns what a model thread raised into the error the client sees.
ErrorMapper = Callable[[BaseException], SluicegateError]


async def call(
    executor: Executor,
    work: Callable[[], T],
    *,
    done: Callable[[], None],
    cancel: threading.Event,
    errors: ErrorMapper,
) -> T:
    """Run ``work`` on ``executor``; ``done`` runs on the loop once the thread is finished."""
    future = asyncio.wrap_future(executor.submit(work))
    future.add_done_callback(lambda _: done())
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        cancel.set()
        raise
    except SluicegateError:
        raise
    except Exception as exc:
        raise errors(exc) from exc


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


_END = object()


class _Handover(Generic[T]):
    """The thread side puts, the loop side gets; nothing else crosses over."""

    def __init__(self, loop: asyncio.AbstractEventLoop, cancel: threading.Event) -> None:
        self.loop = loop
        self.cancel = cancel
        self.queue: asyncio.Queue[T | _Failed | object] = asyncio.Queue()

    def put(self, item: T | _Failed | object) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancel.set()

    def pump(self, produce: Callable[[], Iterator[T]]) -> None:
        items: Iterator[T] | None = None
        try:
            items = produce()
            for item in items:
                if self.cancel.is_set():
                    break
                self.put(item)
            self.put(_END)
        except BaseException as exc:
            self.put(_Failed(exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    async def get(self, errors: ErrorMapper) -> T | object:
        item = await self.queue.get()
        if isinstance(item, _Failed):
            if isinstance(item.error, SluicegateError):
                raise item.error
            raise errors(item.error) from item.error
        return item


async def stream(
    executor: Executor,
    produce: Callable[[], Iterator[T]],
    *,
    done: Callable[[], None],
    cancel: threading.Event,
    errors: ErrorMapper,
) -> AsyncIterator[T]:
    """Iterate ``produce()`` on ``executor``; items arrive here as the thread makes them.

    The first item is awaited before this returns, so an error before any output
    (a prompt too long, say) is raised here and becomes a normal error response.
    Closing the returned iterator, or dropping it unstarted, sets ``cancel``.
    """
    handover: _Handover[T] = _Handover(asyncio.get_running_loop(), cancel)
    future = asyncio.wrap_future(executor.submit(handover.pump, produce))
    future.add_done_callback(lambda _: done())
    try:
        first = await handover.get(errors)
    except BaseException:
        cancel.set()
        raise
    iterator = _relay(first, handover, errors)
    # A reply that is never iterated is never closed either; stop the thread when it is dropped.
    weakref.finalize(iterator, cancel.set)
    return iterator


async def _relay(first: object, handover: _Handover[T], errors: ErrorMapper) -> AsyncIterator[T]:
    try:
        item = first
        while item is not _END:
            yield item  # type: ignore[misc]
            item = await handover.get(errors)
    finally:
        handover.cancel.set()
