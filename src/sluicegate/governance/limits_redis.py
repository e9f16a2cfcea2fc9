"""The limit store shared by gateway replicas: one Redis Lua script per step.

Each script runs atomically on the Redis server, so ``reserve`` (check every
bucket, then count in all of them or none) and ``settle`` (adjust, floored at 0)
are exact however many replicas call them at once. Scripts are loaded once and
called by SHA (redis-py's ``register_script`` reloads them after a
``SCRIPT FLUSH`` or a failover).

Bucket keys of one reservation usually differ in scope (key, org), so they hash to
different slots: this store needs a single Redis primary (with replicas or
Sentinel), not Redis Cluster.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from sluicegate.errors import ServiceUnavailable
from sluicegate.governance.limits import (
    BucketKeys,
    Held,
    Limit,
    Reservation,
    WindowCache,
    exceeded,
)

__all__ = ["RESERVE", "SETTLE", "RedisLimitStore"]

#: KEYS: buckets. ARGV: n limits, n amounts, n TTLs (seconds).
#: Returns {1, count after, ...} when admitted, or {0, index, current, ...} for
#: every exceeded limit (1-based index), having counted nothing.
RESERVE = """
local n = #KEYS
local counts = {}
local after = {}
local over = {}
for i = 1, n do
  local key = KEYS[i]
  local current = counts[key]
  if current == nil then
    current = tonumber(redis.call('GET', key) or '0')
  end
  local amount = tonumber(ARGV[n + i])
  if current + amount > tonumber(ARGV[i]) then
    over[#over + 1] = i
    over[#over + 1] = current
  end
  counts[key] = current + amount
  after[i] = current + amount
end
if #over > 0 then
  return {0, unpack(over)}
end
for i = 1, n do
  local amount = tonumber(ARGV[n + i])
  if amount > 0 then
    redis.call('INCRBY', KEYS[i], amount)
    redis.call('EXPIRE', KEYS[i], ARGV[2 * n + i])
  end
end
return {1, unpack(after)}
"""

#: KEYS: buckets. ARGV: one delta per bucket. Missing (expired) buckets are left
#: alone; INCRBY keeps the TTL; a bucket never goes below zero.
SETTLE = """
for i = 1, #KEYS do
  local delta = tonumber(ARGV[i])
  local current = redis.call('GET', KEYS[i])
  if current then
    current = tonumber(current)
    if current + delta < 0 then
      delta = -current
    end
    if delta ~= 0 then
      redis.call('INCRBY', KEYS[i], delta)
    end
  end
end
return 0
"""


class RedisLimitStore:
    """Buckets in Redis under ``prefix``; TTLs end each bucket with its window.

    ``grace`` seconds are added to every TTL so that a replica whose clock runs
    a little behind still counts into the live bucket instead of a fresh one.
    Redis being unreachable surfaces as ``ServiceUnavailable`` (503).
    """

    def __init__(self, url: str, *, prefix: str = "sg:lim:", grace: float = 5.0) -> None:
        # A blocking pool: under a burst, callers wait for a connection rather than fail
        # (redis-py's default pool raises once its connections are all in use).
        self._redis: Redis = Redis.from_pool(
            BlockingConnectionPool.from_url(url, max_connections=64, timeout=5.0)
        )
        self._grace = grace
        self._keys = BucketKeys(prefix)
        self._windows = WindowCache()
        self._reserve = self._redis.register_script(RESERVE)
        self._settle = self._redis.register_script(SETTLE)

    async def reserve(
        self, asks: Sequence[tuple[Limit, int]], now: float | None = None
    ) -> Reservation:
        if not asks:
            return Reservation(())
        now = time.time() if now is None else now
        keys: list[str] = []
        limits: list[int] = []
        amounts: list[int] = []
        ttls: list[int] = []
        ends: list[float] = []
        for limit, amount in asks:
            if amount < 0:
                raise ValueError(f"negative amount {amount} for limit {limit.name!r}")
            label, end = self._windows.span(limit.window, now)
            keys.append(self._keys.key(limit, label))
            limits.append(limit.limit)
            amounts.append(amount)
            ttls.append(max(1, math.ceil(end - now + self._grace)))
            ends.append(end)
        try:
            reply = await self._reserve(keys=keys, args=[*limits, *amounts, *ttls])
        except RedisError as exc:
            raise ServiceUnavailable(f"Rate-limit state is unreachable: {exc}") from exc
        values = [int(v) for v in reply]
        if values[0] == 0:
            pairs = values[1:]
            over = [
                (asks[pairs[j] - 1][0], pairs[j + 1], ends[pairs[j] - 1])
                for j in range(0, len(pairs), 2)
            ]
            raise exceeded(over, now)
        return Reservation(
            tuple(
                Held(limit, key, amount, max(0, limit.limit - count), end)
                for (limit, amount), key, count, end in zip(
                    asks, keys, values[1:], ends, strict=True
                )
            )
        )

    async def settle(self, reservation: Reservation, actual: Mapping[Limit, int]) -> None:
        keys: list[str] = []
        deltas: list[int] = []
        for held in reservation.held:
            used = actual.get(held.limit)
            if used is None or used == held.amount:
                continue
            if used < 0:
                raise ValueError(f"negative usage {used} for limit {held.limit.name!r}")
            keys.append(held.bucket)
            deltas.append(used - held.amount)
        if not keys:
            return
        try:
            await self._settle(keys=keys, args=deltas)
        except RedisError as exc:
            raise ServiceUnavailable(f"Rate-limit state is unreachable: {exc}") from exc

    async def close(self) -> None:
        await self._redis.aclose()
