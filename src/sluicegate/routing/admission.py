"""The fair queue of one model group: who gets the next free deployment slot.

A call that finds every deployment of its group at ``max_concurrency`` waits here;
``notify()`` (a slot freed) wakes exactly one waiter. The order is:

1. **Priority class first.** Every waiter of a lower ``priority`` value (0 interactive)
   goes before any of a higher one (1 batch).
2. **Weighted fair sharing between tenants** within a class, by start-time fair
   queueing (SFQ, Goyal et al. 1996) with every grant costing one unit. Each tenant
   has a finish tag; a waiter of tenant *t* gets the start tag ``S = max(V, F_t)`` and
   moves ``F_t`` to ``S + 1/weight_t``; the waiter with the lowest
   ``(start tag, arrival)`` is woken, and the class's virtual time ``V`` becomes its
   start tag. So a tenant's own waiters stay in arrival order.

Guarantee (SFQ's, for unit costs): over any stretch in which tenants *a* and *b* both
have waiters, ``|grants_a / w_a - grants_b / w_b| <= 1/w_a + 1/w_b``: with equal weights
their grant counts differ by at most 2, however many waiters either has queued. A
tenant that arrives behind a flood starts at the current virtual time, not behind the
flood: with equal weights its k-th waiter is woken within about k grants per tenant
that has waiters (the test holds 5 arrivals behind 100 to 10 grants).

State is bounded by the waiters: a tenant is forgotten once nobody of it waits (when
it returns it starts at ``V``, which SFQ would give it anyway, give or take one grant)
and a class once it is empty. A waiter that gives up leaves a tombstone in the heap,
skipped when reached and swept when tombstones outnumber the living.

No lost wake-ups: ``wait()`` joins the queue before its first ``await``, so a caller
that saw no free slot and calls ``wait()`` without awaiting in between cannot miss a
``notify()``; a waiter that is cancelled or times out just after being picked hands
its wake-up to the next waiter. ``notify()`` on an empty queue is one comparison.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections.abc import Mapping
from types import MappingProxyType

from sluicegate.config.routing import QueueConfig
from sluicegate.errors import RateLimited

__all__ = ["FairQueue"]

#: Weight of the newest gap between grants in the running average behind Retry-After.
_ALPHA = 0.2
#: Gap between grants assumed before one is measured (seconds).
_DEFAULT_GAP = 1.0
#: Sweep a class's tombstones once there are more than this many and more than the living.
_SWEEP_AFTER = 32

_NO_WEIGHTS: Mapping[str, float] = MappingProxyType({})


class _Tenant:
    __slots__ = ("finish", "waiting")

    def __init__(self, finish: float) -> None:
        self.finish = finish
        self.waiting = 0


class _Class:
    """The waiters of one priority value."""

    __slots__ = ("heap", "live", "tenants", "tombstones", "vtime")

    def __init__(self) -> None:
        self.vtime = 0.0
        self.heap: list[tuple[float, int, _Waiter]] = []
        self.tenants: dict[str, _Tenant] = {}
        self.live = 0
        self.tombstones = 0


class _Waiter:
    __slots__ = ("cls", "finish", "future", "priority", "queued", "start", "tenant")

    def __init__(
        self,
        cls: _Class,
        priority: int,
        tenant: str,
        start: float,
        finish: float,
        future: asyncio.Future[None],
    ) -> None:
        self.cls = cls
        self.priority = priority
        self.tenant = tenant
        self.start = start
        self.finish = finish
        self.future = future
        self.queued = True


class FairQueue:
    """Waiting room for a free slot in one model group; see the module docstring."""

    def __init__(
        self,
        config: QueueConfig,
        *,
        model: str = "",
        weights: Mapping[str, float] = _NO_WEIGHTS,
    ) -> None:
        for tenant, weight in weights.items():
            if not (weight > 0 and math.isfinite(weight)):
                raise ValueError(f"weight of tenant '{tenant}' must be positive, not {weight}")
        self.size = config.size
        self.timeout = config.timeout
        self.weights = weights
        self._what = f"model '{model}'" if model else "this model"
        self._classes: dict[int, _Class] = {}
        self._live = 0
        self._seq = 0
        #: Running average of the gap between grants while someone waits: the service rate.
        self._gap: float | None = None
        self._last_grant = 0.0

    def __len__(self) -> int:
        return self._live

    def retry_after(self) -> float:
        """Seconds until the waiters queued now have likely been served, at most ``timeout``."""
        gap = _DEFAULT_GAP if self._gap is None else self._gap
        return min(self.timeout, max(1, self._live) * gap)

    async def wait(self, tenant: str, priority: int, deadline: float) -> None:
        """Return once ``notify()`` picks this waiter.

        ``deadline`` is the call's own, in loop time; the wait ends at it or after
        ``timeout`` seconds, whichever is first, with RateLimited (429, Retry-After),
        as it does at once when ``size`` callers already wait.
        """
        if self._live >= self.size:
            raise RateLimited(
                f"The queue for {self._what} is full ({self._live} waiting); retry later.",
                retry_after=self.retry_after(),
                code="queue_full",
            )
        loop = asyncio.get_running_loop()
        started = loop.time()
        until = min(deadline, started + self.timeout)
        if until <= started:
            raise RateLimited(
                f"No time left to wait for a free slot of {self._what}; retry later.",
                retry_after=self.retry_after(),
                code="queue_timeout",
            )
        waiter = self._join(tenant, priority, loop.create_future())
        try:
            async with asyncio.timeout_at(until):
                await waiter.future
        except BaseException as exc:
            future = waiter.future
            if future.done() and not future.cancelled():
                # Picked just as the wait ended: the wake-up is someone else's now.
                self.notify()
            elif waiter.queued:
                future.cancel()
                self._withdraw(waiter)
            if isinstance(exc, TimeoutError):
                waited = loop.time() - started
                raise RateLimited(
                    f"Waited {waited:.3g} s for a free slot of {self._what}; "
                    f"{self._live} still waiting. Retry later.",
                    retry_after=self.retry_after(),
                    code="queue_timeout",
                ) from None
            raise

    def notify(self) -> None:
        """A slot freed: wake the next waiter by priority, then fair share, if any waits."""
        while self._live:
            cls = self._classes[min(self._classes)]
            _, _, waiter = heapq.heappop(cls.heap)
            if not waiter.queued:
                cls.tombstones -= 1
                continue
            if waiter.future.done():
                # Cancelled, and its task has not run yet to withdraw it: never served.
                self._leave(waiter, served=False)
                continue
            self._leave(waiter, served=True)
            cls.vtime = waiter.start
            waiter.future.set_result(None)
            now = time.monotonic()
            sample = now - self._last_grant
            gap = self._gap
            self._gap = sample if gap is None else gap + _ALPHA * (sample - gap)
            self._last_grant = now
            return

    def _join(self, tenant: str, priority: int, future: asyncio.Future[None]) -> _Waiter:
        if not self._live:
            # A backlog begins: the gap to the first grant is one sample of the service rate.
            self._last_grant = time.monotonic()
        cls = self._classes.get(priority)
        if cls is None:
            cls = self._classes[priority] = _Class()
        flow = cls.tenants.get(tenant)
        if flow is None:
            flow = cls.tenants[tenant] = _Tenant(cls.vtime)
        start = max(cls.vtime, flow.finish)
        flow.finish = start + 1.0 / self.weights.get(tenant, 1.0)
        flow.waiting += 1
        waiter = _Waiter(cls, priority, tenant, start, flow.finish, future)
        self._seq += 1
        heapq.heappush(cls.heap, (start, self._seq, waiter))
        cls.live += 1
        self._live += 1
        return waiter

    def _leave(self, waiter: _Waiter, *, served: bool) -> None:
        """Take a waiter off the books; its heap entry is the caller's business."""
        waiter.queued = False
        cls = waiter.cls
        flow = cls.tenants[waiter.tenant]
        flow.waiting -= 1
        if not served and flow.finish == waiter.finish:
            # It was the tenant's last waiter: give back the share it never used.
            flow.finish = waiter.start
        if not flow.waiting:
            del cls.tenants[waiter.tenant]
        cls.live -= 1
        self._live -= 1
        if not cls.live:
            del self._classes[waiter.priority]

    def _withdraw(self, waiter: _Waiter) -> None:
        self._leave(waiter, served=False)
        cls = waiter.cls
        if not cls.live:
            return  # the class, heap and tombstones included, is gone
        cls.tombstones += 1
        if cls.tombstones > _SWEEP_AFTER and cls.tombstones > cls.live:
            cls.heap = [entry for entry in cls.heap if entry[2].queued]
            heapq.heapify(cls.heap)
            cls.tombstones = 0
