"""Requests per second per client IP: GCRA, the generic cell rate algorithm.

A client may send ``burst`` requests at once, then one every ``1 / rps`` seconds.
GCRA keeps one number per IP, its *theoretical arrival time* (TAT): the moment
the client's allowance would be whole again if it sent nothing more. A request
at ``now`` moves the TAT to ``max(TAT, now) + interval`` and is admitted when
that lies at most ``burst * interval`` ahead of ``now``; a refusal changes
nothing and says exactly when the next request would pass.

Times are integer microseconds in both stores, so the in-process store and the
Redis one (``RedisIpRate``) admit exactly the same sequences. The Redis store
reads the clock inside its script (``TIME``), so replicas with skewed clocks
agree. Seed 004: ``MAX_RPS_PER_IP`` is ``rps``, ``RPS_BURST`` is ``burst``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from sluicegate.errors import RateLimited, ServiceUnavailable

__all__ = [
    "GCRA",
    "InProcessIpRate",
    "IpRateExceeded",
    "IpRateStore",
    "RedisIpRate",
    "build_ip_rate",
]

_US = 1_000_000


class IpRateStore(Protocol):
    async def allow(self, ip: str, now: float | None = None) -> None:
        """Count one request from ``ip``, or raise ``IpRateExceeded`` counting nothing."""
        ...

    async def close(self) -> None: ...


class IpRateExceeded(RateLimited):
    """429 ``ip_rate_limit_exceeded``; ``retry_after`` is exact (seconds, not rounded)."""

    def __init__(self, ip: str, rps: float, burst: int, *, wait_us: int, full_us: int) -> None:
        wait = wait_us / _US
        super().__init__(
            f"Too many requests from {ip}: at most {rps:g} per second, in bursts of up to "
            f"{burst}. Retry in {wait:.3g} s.",
            retry_after=wait,
            code="ip_rate_limit_exceeded",
        )
        self.headers.update(
            {
                "x-ratelimit-limit": str(burst),
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(max(1, math.ceil(full_us / _US))),
                "x-ratelimit-name": "ip_rps",
            }
        )


class GCRA:
    """The rate and burst as integer microseconds (at least one per request)."""

    __slots__ = ("burst", "capacity", "interval", "rps")

    def __init__(self, rps: float, burst: int | None = None) -> None:
        if rps <= 0:
            raise ValueError(f"rps must be positive, got {rps}")
        self.rps = rps
        self.burst = max(1, math.ceil(rps)) if burst is None else burst
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.interval = max(1, round(_US / rps))
        self.capacity = self.burst * self.interval

    def refusal(self, ip: str, *, wait_us: int, full_us: int) -> IpRateExceeded:
        return IpRateExceeded(ip, self.rps, self.burst, wait_us=wait_us, full_us=full_us)


class InProcessIpRate:
    """TATs in a dict, for one process with one event loop; never awaits, so atomic.

    An IP whose TAT has passed has its whole allowance back, so its entry carries
    no information: a sweep drops such entries every ``sweep_every`` seconds, and
    earlier whenever the dict has doubled since the last sweep, so memory follows
    the IPs seen in the last few seconds at amortised O(1) per request.
    """

    _MIN_SWEEP_SIZE = 4096

    def __init__(
        self,
        rps: float,
        burst: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sweep_every: float = 10.0,
    ) -> None:
        self.gcra = GCRA(rps, burst)
        self._clock = clock
        self._sweep_every_us = round(sweep_every * _US)
        self._next_sweep = 0
        self._sweep_size = self._MIN_SWEEP_SIZE
        self._tats: dict[str, int] = {}

    def __len__(self) -> int:
        """IPs held in memory, those not yet swept included."""
        return len(self._tats)

    async def allow(self, ip: str, now: float | None = None) -> None:
        self.allow_now(ip, now)

    def allow_now(self, ip: str, now: float | None = None) -> None:
        """``allow`` without the coroutine, for the hot path."""
        now_us = round((self._clock() if now is None else now) * _US)
        if now_us >= self._next_sweep or len(self._tats) >= self._sweep_size:
            self._sweep(now_us)
        tats = self._tats
        tat = tats.get(ip, now_us)
        if tat < now_us:
            tat = now_us
        gcra = self.gcra
        after = tat + gcra.interval
        wait = after - gcra.capacity - now_us
        if wait > 0:
            raise gcra.refusal(ip, wait_us=wait, full_us=tat - now_us)
        tats[ip] = after

    async def close(self) -> None:
        self._tats.clear()

    def _sweep(self, now_us: int) -> None:
        self._tats = {ip: tat for ip, tat in self._tats.items() if tat > now_us}
        self._next_sweep = now_us + self._sweep_every_us
        self._sweep_size = max(self._MIN_SWEEP_SIZE, 2 * len(self._tats))


#: KEYS: the IP's TAT. ARGV: interval, capacity (µs).
#: Returns {1, 0, µs until whole} when admitted, {0, µs to wait, µs until whole} if not.
#: Numbers are written with %.0f: Lua's default formatting of a 16-digit number loses digits.
ALLOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
local after = tat + interval
local wait = after - tonumber(ARGV[2]) - now
if wait > 0 then
  return {0, wait, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', after),
  'PX', string.format('%.0f', math.ceil((after - now) / 1000)))
return {1, 0, after - now}
"""


class RedisIpRate:
    """TATs in Redis under ``prefix``, each expiring when it passes.

    ``allow``'s ``now`` is ignored: the clock is Redis's own, the same for every
    replica. Redis being unreachable surfaces as ``ServiceUnavailable`` (503).
    Keys of different IPs are independent, so Redis Cluster would do here.
    """

    def __init__(
        self,
        url: str,
        rps: float,
        burst: int | None = None,
        *,
        prefix: str = "sg:iprate:",
        max_connections: int = 64,
        pool_timeout: float = 5.0,
    ) -> None:
        self.gcra = GCRA(rps, burst)
        # Calls beyond the pool wait for a connection (up to ``pool_timeout``) instead of
        # failing at once, as redis-py's default pool does past 100.
        self._redis: Redis = Redis.from_pool(
            BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=pool_timeout
            )
        )
        self._prefix = prefix
        self._allow = self._redis.register_script(ALLOW)
        self._args = (self.gcra.interval, self.gcra.capacity)
        self._closed = False

    async def allow(self, ip: str, now: float | None = None) -> None:
        try:
            allowed, wait, full = await self._allow(keys=[self._prefix + ip], args=self._args)
        except RedisError as exc:
            raise ServiceUnavailable(f"Per-IP rate-limit state is unreachable: {exc}") from exc
        if not int(allowed):
            raise self.gcra.refusal(ip, wait_us=int(wait), full_us=int(full))

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._redis.aclose()


def build_ip_rate(
    state: str, rps: float, burst: int | None = None, prefix: str = "sg:"
) -> IpRateStore:
    """``"memory"``: in-process; a ``redis://`` URL: shared by every replica."""
    if state == "memory":
        return InProcessIpRate(rps, burst)
    if state.startswith(("redis://", "rediss://", "unix://")):
        return RedisIpRate(state, rps, burst, prefix=prefix + "iprate:")
    raise ValueError(f"unsupported limit state {state!r}: use 'memory' or a redis:// URL")
