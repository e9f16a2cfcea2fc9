"""A bounded admission queue: N slots, at most M waiters, each waiting at most T seconds.

An in-process model can serve only a few calls at once; everything else waits here
in arrival order or is refused at once with 429 and an honest Retry-After. A freed
slot goes straight to the longest waiter, so a newcomer never overtakes the queue.

    slots = Slots(capacity=1, queue_size=8, timeout=30.0, name="smollm2-135m")
    lease = await slots.acquire()        # RateLimited when full or after 30 s
    try: ... finally: lease.release()    # or release from a callback when work ends
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from sluicegate.errors import RateLimited

__all__ = ["Lease", "Slots"]

#: Weight of the newest hold time in the running average behind Retry-After.
_ALPHA = 0.3


class Lease:
    """One held slot. ``release`` is idempotent, so every exit path may call it."""

    __slots__ = ("_slots", "_started", "released")

    def __init__(self, slots: Slots) -> None:
        self._slots = slots
        self._started = time.monotonic()
        self.released = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self._slots._record(time.monotonic() - self._started)
        self._slots._hand_on()


class Slots:
    def __init__(
        self,
        capacity: int,
        queue_size: int,
        timeout: float,
        *,
        name: str,
        typical_hold: float = 1.0,
    ) -> None:
        if capacity < 1 or queue_size < 0 or timeout <= 0:
            raise ValueError("capacity >= 1, queue_size >= 0 and timeout > 0 are required")
        self.capacity = capacity
        self.queue_size = queue_size
        self.timeout = timeout
        self.name = name
        #: Running average of how long a call holds a slot; seeds Retry-After.
        self.typical_hold = typical_hold
        self._free = capacity
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def in_use(self) -> int:
        return self.capacity - self._free

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def retry_after(self) -> float:
        """Seconds until a newcomer would likely get a slot: the queue ahead, drained."""
        rounds = self.waiting // self.capacity + 1
        return rounds * self.typical_hold

    async def acquire(self) -> Lease:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return Lease(self)
        if len(self._waiters) >= self.queue_size:
            raise RateLimited(
                f"'{self.name}' is busy: all {self.capacity} slots are in use and "
                f"{self.waiting} requests are already waiting. Retry later.",
                retry_after=self.retry_after(),
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.timeout):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                # The slot arrived just as the wait ended: it is ours to pass on.
                self._hand_on()
            else:
                waiter.cancel()
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise RateLimited(
                    f"'{self.name}' is busy: no slot became free within {self.timeout:g}s.",
                    retry_after=self.retry_after(),
                ) from None
            raise
        return Lease(self)

    def _hand_on(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def _record(self, seconds: float) -> None:
        self.typical_hold += _ALPHA * (seconds - self.typical_hold)
