"""Caps on calls in progress at once: a lease per call and scope, taken before, released after.

``acquire`` is all-or-nothing over several scopes (``[("ip:1.2.3.4", 120)]``, or
``[("key:abc", 5), ("team:acme/ml", 20), ("org:acme", 50)]``): when any scope
already holds its cap, nothing is taken and ``InflightExceeded`` (429) names that
scope. ``release`` never raises and may be called twice; a stream releases when it
ends. Scopes of one call must be distinct.

A lease is a member named by the caller's ``lease_id`` with an expiry ``lease_ttl``
seconds ahead, so leases of a replica that crashed (or a call whose end was never
seen) are reclaimed instead of holding their slot forever. A call that runs longer
than ``lease_ttl`` loses its lease early: the cap is then briefly loose, never stuck.

Two stores implement ``InflightStore``: ``InProcessInflight`` (one process) and
``RedisInflight`` (exact across replicas: one Lua script per acquire).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from sluicegate.errors import RateLimited, ServiceUnavailable

__all__ = [
    "ACQUIRE",
    "RELEASE",
    "Caps",
    "InProcessInflight",
    "InflightExceeded",
    "InflightStore",
    "RedisInflight",
    "build_inflight_store",
]

log = logging.getLogger("sluicegate.governance")

Caps = Sequence[tuple[str, int]]


class InflightStore(Protocol):
    async def acquire(self, caps: Caps, lease_id: str) -> None:
        """Take a lease in every scope, or raise ``InflightExceeded`` taking none."""
        ...

    def release(self, caps: Caps, lease_id: str) -> None:
        """Give the leases back (at once, or soon after for a remote store); never raises."""
        ...

    async def close(self) -> None: ...


class InflightExceeded(RateLimited):
    """429 ``inflight_limit_exceeded``: ``scope`` already has ``cap`` calls in progress."""

    def __init__(self, scope: str, cap: int, current: int) -> None:
        super().__init__(
            f"Too many calls in progress for {scope}: at most {cap} at once. "
            "Retry when one has finished.",
            retry_after=1,
            code="inflight_limit_exceeded",
        )
        self.scope = scope
        self.cap = cap
        self.headers.update(
            {
                "x-ratelimit-limit": str(cap),
                "x-ratelimit-remaining": str(max(0, cap - current)),
                "x-ratelimit-name": "max_inflight",
            }
        )


class InProcessInflight:
    """Leases per scope in insertion-ordered dicts, for one process with one event loop.

    Atomic because ``acquire_now`` never awaits. Every lease lives ``lease_ttl``
    on a monotonic clock, so a scope's dict is ordered by expiry as well: expired
    leases are popped from its front, only when the scope is at its cap, and by a
    sweep of every scope once per ``sweep_every`` seconds. Empty scopes are dropped,
    so memory follows the calls in progress (IP scopes are unbounded in number).
    """

    def __init__(
        self,
        *,
        lease_ttl: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        sweep_every: float = 60.0,
    ) -> None:
        self.lease_ttl = lease_ttl
        self._clock = clock
        self._sweep_every = sweep_every
        self._next_sweep = clock() + sweep_every
        self._leases: dict[str, dict[str, float]] = {}

    def count(self, scope: str) -> int:
        """Leases held in ``scope``, expired ones not yet reclaimed included."""
        held = self._leases.get(scope)
        return 0 if held is None else len(held)

    def __len__(self) -> int:
        """Scopes held in memory."""
        return len(self._leases)

    async def acquire(self, caps: Caps, lease_id: str) -> None:
        self.acquire_now(caps, lease_id)

    def acquire_now(self, caps: Caps, lease_id: str) -> None:
        """``acquire`` without the coroutine, for the hot path."""
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        leases = self._leases
        for scope, cap in caps:
            held = leases.get(scope)
            if held is not None and len(held) >= cap and lease_id not in held:
                _expire(held, now)
                if len(held) >= cap:
                    raise InflightExceeded(scope, cap, len(held))
        expires = now + self.lease_ttl
        for scope, _ in caps:
            held = leases.get(scope)
            if held is None:
                leases[scope] = {lease_id: expires}
            else:
                # Re-insert so the dict stays ordered by expiry.
                held.pop(lease_id, None)
                held[lease_id] = expires

    def release(self, caps: Caps, lease_id: str) -> None:
        leases = self._leases
        for scope, _ in caps:
            held = leases.get(scope)
            if held is not None:
                held.pop(lease_id, None)
                if not held:
                    del leases[scope]

    async def close(self) -> None:
        self._leases.clear()

    def _sweep(self, now: float) -> None:
        for scope, held in list(self._leases.items()):
            _expire(held, now)
            if not held:
                del self._leases[scope]
        self._next_sweep = now + self._sweep_every


def _expire(held: dict[str, float], now: float) -> None:
    while held:
        oldest = next(iter(held))
        if held[oldest] > now:
            return
        del held[oldest]


#: KEYS: one sorted set per scope (member: lease id, score: expiry in ms).
#: ARGV: lease TTL (ms), lease id, one cap per key. The clock is Redis's own.
#: Returns {1} when every lease was taken, or {0, index, count} for the first scope
#: at its cap (1-based index), having taken none. A set expires with its last lease.
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = ARGV[2]
local cutoff = string.format('%.0f', now)
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', cutoff)
  local count = redis.call('ZCARD', KEYS[i])
  if count >= tonumber(ARGV[2 + i]) and not redis.call('ZSCORE', KEYS[i], lease) then
    return {0, i, count}
  end
end
local expires = string.format('%.0f', now + tonumber(ARGV[1]))
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], expires, lease)
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
return {1}
"""

#: KEYS: the scopes' sorted sets. ARGV: the lease id.
RELEASE = """
for i = 1, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[1])
end
return 0
"""


class RedisInflight:
    """Leases in Redis sorted sets under ``prefix``, shared exactly by every replica.

    Redis being unreachable surfaces from ``acquire`` as ``ServiceUnavailable``
    (503); a release that fails is logged, and its lease expires after
    ``lease_ttl``. The scopes of one acquire hash to different slots: this needs a
    single Redis primary (with replicas or Sentinel), not Redis Cluster.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "sg:inflight:",
        lease_ttl: float = 900.0,
        max_connections: int = 64,
        pool_timeout: float = 5.0,
    ) -> None:
        self.lease_ttl = lease_ttl
        # Calls beyond the pool wait for a connection (up to ``pool_timeout``) instead of
        # failing at once, as redis-py's default pool does past 100.
        self._redis: Redis = Redis.from_pool(
            BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=pool_timeout
            )
        )
        self._prefix = prefix
        self._ttl_ms = max(1, math.ceil(lease_ttl * 1000))
        self._acquire = self._redis.register_script(ACQUIRE)
        self._release = self._redis.register_script(RELEASE)
        self._releasing: set[asyncio.Task[None]] = set()
        self._closed = False

    async def acquire(self, caps: Caps, lease_id: str) -> None:
        if not caps:
            return
        prefix = self._prefix
        keys = [prefix + scope for scope, _ in caps]
        try:
            reply = await self._acquire(
                keys=keys, args=[self._ttl_ms, lease_id, *(cap for _, cap in caps)]
            )
        except RedisError as exc:
            raise ServiceUnavailable(f"In-flight limit state is unreachable: {exc}") from exc
        if int(reply[0]) == 0:
            scope, cap = caps[int(reply[1]) - 1]
            raise InflightExceeded(scope, cap, int(reply[2]))

    def release(self, caps: Caps, lease_id: str) -> None:
        if not caps:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            log.warning(
                "in-flight lease %s released outside an event loop; it will expire", lease_id
            )
            return
        keys = [self._prefix + scope for scope, _ in caps]
        task = loop.create_task(self._give_back(keys, lease_id))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _give_back(self, keys: list[str], lease_id: str) -> None:
        try:
            await self._release(keys=keys, args=[lease_id])
        except Exception:
            # The call is over; the lease stays counted until it expires (lease_ttl).
            log.exception("releasing an in-flight lease failed")

    async def close(self) -> None:
        """Wait for releases under way, then close the connections. Idempotent."""
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)
        if not self._closed:
            self._closed = True
            await self._redis.aclose()


def build_inflight_store(
    state: str, *, lease_ttl: float = 900.0, prefix: str = "sg:"
) -> InflightStore:
    """``"memory"``: in-process; a ``redis://`` URL: shared by every replica."""
    if state == "memory":
        return InProcessInflight(lease_ttl=lease_ttl)
    if state.startswith(("redis://", "rediss://", "unix://")):
        return RedisInflight(state, lease_ttl=lease_ttl, prefix=prefix + "inflight:")
    raise ValueError(f"unsupported limit state {state!r}: use 'memory' or a redis:// URL")
