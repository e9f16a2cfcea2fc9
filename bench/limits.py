"""Cost of one reserve + settle over 3 limits (rpm, tpm, monthly budget), per store.

In-process: wall and CPU µs per pair, from a tight loop. Redis: µs per pair
awaited one after the other (two round trips, so mostly network latency), and
pairs per second with 64 concurrent tasks. A micro-benchmark, not a test.

    .venv/bin/python -m bench.limits [--redis redis://127.0.0.1:6379/0] [-n 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from sluicegate.governance.limits import InProcessLimitStore, Limit, LimitStore
from sluicegate.governance.limits_redis import RedisLimitStore

LIMITS = (
    Limit("key:bench", "rpm", "requests", "minute", 10**12),
    Limit("key:bench", "tpm", "tokens", "minute", 10**15),
    Limit("org:bench", "budget_month", "usd_micros", "month", 10**15),
)
ASKS = [(LIMITS[0], 1), (LIMITS[1], 800), (LIMITS[2], 1200)]
ACTUAL = {LIMITS[1]: 420, LIMITS[2]: 610}


async def _pairs(store: LimitStore, n: int) -> None:
    for _ in range(n):
        reservation = await store.reserve(ASKS)
        await store.settle(reservation, ACTUAL)


async def _timed(store: LimitStore, n: int) -> tuple[float, float]:
    await _pairs(store, min(n, 1000))  # warm-up: script load, connections, caches
    wall, cpu = time.perf_counter(), time.process_time()
    await _pairs(store, n)
    return (time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6


async def main(url: str | None, n: int) -> None:
    memory = InProcessLimitStore()
    wall, cpu = await _timed(memory, n)
    print(f"in-process, 3 limits: {wall:.2f} µs wall, {cpu:.2f} µs CPU per reserve+settle")
    if url is None:
        return
    prefix = f"sg:bench:{uuid.uuid4().hex}:"
    redis = RedisLimitStore(url, prefix=prefix)
    try:
        rn = max(1, n // 10)
        wall, cpu = await _timed(redis, rn)
        print(f"redis, 3 limits, sequential: {wall:.1f} µs wall, {cpu:.1f} µs CPU per pair")
        tasks = 64
        start = time.perf_counter()
        await asyncio.gather(*(_pairs(redis, rn // tasks + 1) for _ in range(tasks)))
        pairs = tasks * (rn // tasks + 1)
        rate = pairs / (time.perf_counter() - start)
        print(f"redis, 3 limits, {tasks} tasks: {rate:,.0f} reserve+settle pairs/s")
    finally:
        client = redis._redis  # the bench cleans up its own keys
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await redis.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="'' to skip")
    parser.add_argument("-n", type=int, default=20000, help="in-process pairs (Redis: n/10)")
    args = parser.parse_args()
    asyncio.run(main(args.redis or None, args.n))
