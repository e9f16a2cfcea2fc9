"""Counters behind rate limits, quotas and budgets: reserve before a call, settle after it.

A ``Limit`` binds a scope (``key:app``, ``org:acme``, ``ip:10.0.0.1``) to at most
``limit`` units (requests, tokens or integer micro-dollars) per fixed UTC window
(minute, day or month). Each window is one bucket with its own storage key, so a
bucket needs no clean-up beyond expiring when its window ends.

``reserve`` is all-or-nothing over several limits in one atomic step: when any
bucket would pass its limit (``current + amount > limit``) nothing is counted and
``LimitExceeded`` names the exceeded limit whose window resets *last*, because
that is the only honest Retry-After (waiting for an earlier reset would still be
refused by the later one). ``settle`` moves each held bucket by
``actual - amount``, never below zero, in the bucket the reservation was counted
in, and is a no-op once that bucket has expired.

Two stores implement the ``LimitStore`` protocol: ``InProcessLimitStore`` here and
``RedisLimitStore`` (``limits_redis``) for state shared by several replicas.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from sluicegate.errors import RateLimited

__all__ = [
    "BucketKeys",
    "Held",
    "InProcessLimitStore",
    "Limit",
    "LimitExceeded",
    "LimitStore",
    "Reservation",
    "Unit",
    "Window",
    "WindowCache",
    "build_limit_store",
    "exceeded",
    "rate_limit_headers",
    "window_span",
]

Unit = Literal["requests", "tokens", "usd_micros"]
Window = Literal["minute", "day", "month"]


@dataclass(frozen=True, slots=True)
class Limit:
    scope: str
    name: str
    unit: Unit
    window: Window
    limit: int


@dataclass(frozen=True, slots=True)
class Held:
    """One limit's part of a reservation."""

    limit: Limit
    bucket: str
    amount: int
    remaining: int
    reset: float


@dataclass(frozen=True, slots=True)
class Reservation:
    held: tuple[Held, ...]


class LimitStore(Protocol):
    async def reserve(
        self, asks: Sequence[tuple[Limit, int]], now: float | None = None
    ) -> Reservation: ...

    async def settle(self, reservation: Reservation, actual: Mapping[Limit, int]) -> None: ...

    async def close(self) -> None: ...


def window_span(window: Window, now: float) -> tuple[float, float, str]:
    """Start, end (epoch seconds) and a label unique among windows of that kind."""
    if window == "minute":
        index = math.floor(now / 60)
        return index * 60.0, index * 60.0 + 60.0, str(index)
    moment = datetime.fromtimestamp(now, UTC)
    if window == "day":
        start = datetime(moment.year, moment.month, moment.day, tzinfo=UTC).timestamp()
        # UTC has no daylight saving, and POSIX time has no leap seconds.
        return start, start + 86400.0, f"{moment:%Y-%m-%d}"
    first = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    after = datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=UTC)
    return first.timestamp(), after.timestamp(), f"{moment:%Y-%m}"


class WindowCache:
    """The current span per window kind, recomputed only when ``now`` leaves it.

    Saves the datetime arithmetic on every call: almost every request falls in
    the span computed for the previous one.
    """

    __slots__ = ("_spans",)

    def __init__(self) -> None:
        self._spans: dict[str, tuple[float, float, str]] = {}

    def span(self, window: Window, now: float) -> tuple[str, float]:
        """The label and end of the window holding ``now``."""
        span = self._spans.get(window)
        if span is None or not span[0] <= now < span[1]:
            span = window_span(window, now)
            self._spans[window] = span
        return span[2], span[1]


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace("|", "%7C")


class BucketKeys:
    """Storage keys: prefix, scope, name, unit, window and window label.

    The limit's value is left out on purpose: changing a key's rpm mid-minute
    keeps counting in the same bucket instead of starting afresh.
    """

    __slots__ = ("_prefix", "_stems")
    _MAX_STEMS = 65536

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._stems: dict[tuple[str, str, str, str], str] = {}

    def key(self, limit: Limit, label: str) -> str:
        ident = (limit.scope, limit.name, limit.unit, limit.window)
        stem = self._stems.get(ident)
        if stem is None:
            if len(self._stems) >= self._MAX_STEMS:  # scopes such as ip:… are unbounded
                self._stems.clear()
            stem = "|".join((self._prefix + _escape(limit.scope), _escape(limit.name), *ident[2:]))
            self._stems[ident] = stem
        return f"{stem}|{label}"


def _money(micros: int) -> str:
    if micros % 10_000 == 0:
        return f"${micros / 1_000_000:,.2f}"
    return f"${micros / 1_000_000:,.6f}".rstrip("0")


def _duration(seconds: float) -> str:
    whole = max(1, math.ceil(seconds))
    if whole < 120:
        return f"{whole} s"
    if whole < 7200:
        return f"{math.ceil(whole / 60)} min"
    if whole < 172800:
        return f"{math.ceil(whole / 3600)} h"
    return f"{math.ceil(whole / 86400)} days"


def rate_limit_headers(limit: Limit, remaining: int, reset: float, now: float) -> dict[str, str]:
    """``x-ratelimit-*`` headers for a limit (on refusals and on successful responses)."""
    return {
        "x-ratelimit-limit": str(limit.limit),
        "x-ratelimit-remaining": str(max(0, remaining)),
        "x-ratelimit-reset": str(max(0, math.ceil(reset - now))),
        "x-ratelimit-name": limit.name,
    }


class LimitExceeded(RateLimited):
    """429: a reservation would pass ``limit``; nothing was counted."""

    def __init__(self, limit: Limit, *, remaining: int, reset: float, now: float) -> None:
        self.limit = limit
        self.remaining = remaining
        self.reset = reset
        wait = max(0.0, reset - now)
        if limit.unit == "usd_micros":
            when = (
                f"resets {datetime.fromtimestamp(reset, UTC):%Y-%m-%d}"
                if limit.window != "minute"
                else f"resets in {_duration(wait)}"
            )
            message = (
                f"Budget '{limit.name}' of {limit.scope} "
                f"({_money(limit.limit)} per {limit.window}) is spent; {when}."
            )
            code = "budget_exceeded"
        else:
            message = (
                f"Rate limit '{limit.name}' of {limit.scope} reached "
                f"({limit.limit:,} {limit.unit} per {limit.window}); resets in {_duration(wait)}."
            )
            code = "rate_limit_exceeded"
        super().__init__(message, retry_after=wait, code=code)
        self.headers.update(rate_limit_headers(limit, remaining, reset, now))


def exceeded(over: Sequence[tuple[Limit, int, float]], now: float) -> LimitExceeded:
    """The refusal for (limit, current count, reset) triples: the latest reset wins."""
    limit, current, reset = over[0]
    for candidate in over[1:]:
        if candidate[2] > reset:
            limit, current, reset = candidate
    return LimitExceeded(limit, remaining=max(0, limit.limit - current), reset=reset, now=now)


class _Bucket:
    __slots__ = ("count", "expires")

    def __init__(self, count: int, expires: float) -> None:
        self.count = count
        self.expires = expires


class InProcessLimitStore:
    """Buckets in a dict, for one process with one event loop.

    Atomic because ``reserve`` and ``settle`` never await: check and increment run
    without another task in between. Expired buckets are dropped by a sweep at
    most once per ``sweep_every`` seconds, so memory follows the live windows.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.time, sweep_every: float = 60.0
    ) -> None:
        self._clock = clock
        self._sweep_every = sweep_every
        self._next_sweep = 0.0
        self._buckets: dict[str, _Bucket] = {}
        self._windows = WindowCache()
        self._keys = BucketKeys("")

    def __len__(self) -> int:
        """Buckets held in memory, expired ones not yet swept included."""
        return len(self._buckets)

    async def reserve(
        self, asks: Sequence[tuple[Limit, int]], now: float | None = None
    ) -> Reservation:
        return self.reserve_now(asks, self._clock() if now is None else now)

    def reserve_now(self, asks: Sequence[tuple[Limit, int]], now: float) -> Reservation:
        """``reserve`` without the coroutine: the whole step, atomic by construction."""
        if now >= self._next_sweep:
            self._sweep(now)
        buckets = self._buckets
        # Counts after this reservation, per key: a key asked twice counts both.
        after: dict[str, tuple[int, float]] = {}
        plan: list[tuple[Limit, str, int, int, float]] = []
        over: list[tuple[Limit, int, float]] = []
        for limit, amount in asks:
            if amount < 0:
                raise ValueError(f"negative amount {amount} for limit {limit.name!r}")
            label, end = self._windows.span(limit.window, now)
            key = self._keys.key(limit, label)
            known = after.get(key)
            if known is not None:
                current = known[0]
            else:
                bucket = buckets.get(key)
                current = bucket.count if bucket is not None and bucket.expires > now else 0
            if current + amount > limit.limit:
                over.append((limit, current, end))
            after[key] = (current + amount, end)
            plan.append((limit, key, amount, current + amount, end))
        if over:
            raise exceeded(over, now)
        for key, (count, end) in after.items():
            bucket = buckets.get(key)
            if bucket is not None and bucket.expires > now:
                bucket.count = count
            elif count:
                buckets[key] = _Bucket(count, end)
        return Reservation(
            tuple(
                Held(limit, key, amount, max(0, limit.limit - count), end)
                for limit, key, amount, count, end in plan
            )
        )

    async def settle(self, reservation: Reservation, actual: Mapping[Limit, int]) -> None:
        self.settle_now(reservation, actual)

    def settle_now(self, reservation: Reservation, actual: Mapping[Limit, int]) -> None:
        """``settle`` without a coroutine: the pipeline calls it from a stream's end."""
        now = self._clock()
        for held in reservation.held:
            used = actual.get(held.limit)
            if used is None or used == held.amount:
                continue
            if used < 0:
                raise ValueError(f"negative usage {used} for limit {held.limit.name!r}")
            bucket = self._buckets.get(held.bucket)
            if bucket is None or bucket.expires <= now:
                continue
            bucket.count = max(0, bucket.count + used - held.amount)

    async def close(self) -> None:
        self._buckets.clear()

    def _sweep(self, now: float) -> None:
        self._buckets = {k: b for k, b in self._buckets.items() if b.expires > now}
        self._next_sweep = now + self._sweep_every


def build_limit_store(url: str | None, prefix: str = "sg:") -> LimitStore:
    """``None`` or ``"memory"``: in-process; ``redis://…`` or ``rediss://…``: shared."""
    if url is None or url == "memory":
        return InProcessLimitStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from sluicegate.governance.limits_redis import RedisLimitStore

        return RedisLimitStore(url, prefix=prefix + "lim:")
    raise ValueError(f"unsupported limit state {url!r}: use 'memory' or a redis:// URL")
