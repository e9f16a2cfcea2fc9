"""The Redis limit store against the real Redis on 127.0.0.1:6379, beside the in-process one.

The shared semantics run over both stores; the concurrency tests run 4 OS
processes, each with its own event loop and ``RedisLimitStore``, on one bucket.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from sluicegate.governance.limits import (
    InProcessLimitStore,
    Limit,
    LimitExceeded,
    LimitStore,
    Reservation,
    build_limit_store,
)
from sluicegate.governance.limits_redis import RedisLimitStore

URL = "redis://127.0.0.1:6379/0"
NOW = datetime(2026, 3, 5, 10, 7, 37, tzinfo=UTC).timestamp()

RPM = Limit("key:app", "rpm", "requests", "minute", 3)
TPM = Limit("key:app", "tpm", "tokens", "minute", 1000)
DAY = Limit("org:acme", "requests_per_day", "requests", "day", 10)
BUDGET = Limit("org:acme", "budget_month", "usd_micros", "month", 50_000_000)


async def _ping() -> bool:
    client = Redis.from_url(URL)
    try:
        return bool(await client.ping())
    except (OSError, RedisError):
        return False
    finally:
        await client.aclose()


@pytest.fixture(scope="module", autouse=True)
def redis_up() -> None:
    if not asyncio.run(_ping()):
        if os.environ.get("CI"):
            pytest.fail("Redis on 127.0.0.1:6379 is unreachable (CI is set: `make services`)")
        pytest.skip("Redis on 127.0.0.1:6379 is unreachable")


async def _drop(prefix: str) -> int:
    client = Redis.from_url(URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        return len(keys)
    finally:
        await client.aclose()


async def _get(key: str) -> int | None:
    client = Redis.from_url(URL)
    try:
        value = await client.get(key)
        return None if value is None else int(value)
    finally:
        await client.aclose()


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = f"sg:test:{uuid.uuid4().hex}:"
    yield prefix
    asyncio.run(_drop(prefix))


Body = Callable[[LimitStore], Awaitable[None]]


@pytest.fixture(params=["memory", "redis"])
def run_with(request: pytest.FixtureRequest, prefix: str) -> Callable[[Body], None]:
    """Run a test body against a fresh store of the parametrized kind, its clock at NOW."""

    def run(body: Body) -> None:
        async def main() -> None:
            store: LimitStore
            if request.param == "memory":
                store = InProcessLimitStore(clock=lambda: NOW)
            else:
                store = RedisLimitStore(URL, prefix=prefix)
            try:
                await body(store)
            finally:
                await store.close()

        asyncio.run(main())

    return run


async def used(store: LimitStore, limit: Limit) -> int:
    held = (await store.reserve([(limit, 0)], now=NOW)).held[0]
    return limit.limit - held.remaining


async def refused(store: LimitStore, *asks: tuple[Limit, int]) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as caught:
        await store.reserve(asks, now=NOW)
    return caught.value


def test_boundary_and_all_or_nothing(run_with: Callable[[Body], None]) -> None:
    async def body(store: LimitStore) -> None:
        for expected in (2, 1, 0):
            held = await store.reserve([(RPM, 1), (DAY, 1)], now=NOW)
            assert [h.remaining for h in held.held] == [expected, 10 - 3 + expected]
        error = await refused(store, (DAY, 1), (RPM, 1))
        assert (error.limit, error.remaining, error.retry_after) == (RPM, 0, 23)
        assert await used(store, DAY) == 3
        error = await refused(store, (RPM, 5), (DAY, 50))
        assert error.limit == DAY  # the later reset is the honest Retry-After
        assert await used(store, DAY) == 3

    run_with(body)


def test_settle_up_down_and_floor(run_with: Callable[[Body], None]) -> None:
    async def body(store: LimitStore) -> None:
        first = await store.reserve([(RPM, 1), (TPM, 500)], now=NOW)
        await store.settle(first, {TPM: 120})
        assert (await used(store, TPM), await used(store, RPM)) == (120, 1)
        second = await store.reserve([(TPM, 300)], now=NOW)
        await store.settle(second, {TPM: 700})
        assert await used(store, TPM) == 820
        await refused(store, (TPM, 181))
        await store.settle(first, {TPM: 0})
        await store.settle(second, {TPM: 0})
        await store.settle(second, {TPM: 0})
        assert await used(store, TPM) == 0

    run_with(body)


def test_zero_amounts_and_zero_limits(run_with: Callable[[Body], None]) -> None:
    async def body(store: LimitStore) -> None:
        closed = Limit("key:app", "rpm", "requests", "minute", 0)
        await refused(store, (closed, 1))
        assert (await store.reserve([(closed, 0)], now=NOW)).held[0].remaining == 0
        assert await used(store, BUDGET) == 0
        await store.reserve([(BUDGET, 49_990_000)], now=NOW)
        error = await refused(store, (BUDGET, 20_000))
        assert error.code == "budget_exceeded"
        assert error.message == (
            "Budget 'budget_month' of org:acme ($50.00 per month) is spent; resets 2026-04-01."
        )

    run_with(body)


def test_redis_keys_expire_with_their_window(prefix: str) -> None:
    async def main() -> None:
        store = RedisLimitStore(URL, prefix=prefix)
        client = Redis.from_url(URL)
        try:
            held = (await store.reserve([(RPM, 1), (BUDGET, 5)], now=NOW)).held
            assert held[0].bucket.startswith(prefix)
            assert 23 <= await client.ttl(held[0].bucket) <= 23 + 5
            month_left = datetime(2026, 4, 1, tzinfo=UTC).timestamp() - NOW
            assert abs(await client.ttl(held[1].bucket) - month_left) <= 6
            # A zero-amount check creates nothing.
            check = await store.reserve([(TPM, 0)], now=NOW)
            assert await client.exists(check.held[0].bucket) == 0
            # An expired (here: deleted) bucket is left alone by settle.
            await client.delete(held[0].bucket)
            await store.settle(Reservation(held), {RPM: 9, BUDGET: 2})
            assert await client.exists(held[0].bucket) == 0
            assert await _get(held[1].bucket) == 2
        finally:
            await client.aclose()
            await store.close()

    asyncio.run(main())


def test_build_limit_store_picks_redis(prefix: str) -> None:
    async def main() -> None:
        store = build_limit_store(URL)
        assert isinstance(store, RedisLimitStore)
        await store.close()

    asyncio.run(main())


@asynccontextmanager
async def _store(prefix: str) -> AsyncIterator[RedisLimitStore]:
    store = RedisLimitStore(URL, prefix=prefix)
    try:
        yield store
    finally:
        await store.close()


async def _admit_requests(prefix: str, limit: Limit) -> int:
    async with _store(prefix) as store:

        async def one() -> bool:
            try:
                await store.reserve([(limit, 1)], now=NOW)
            except LimitExceeded:
                return False
            return True

        results = await asyncio.gather(*(one() for _ in range(50)))
        return sum(results)


def _requests_worker(prefix: str, limit: Limit) -> int:
    return asyncio.run(_admit_requests(prefix, limit))


async def _spend_tokens(prefix: str, limit: Limit, seed: int) -> tuple[int, int, int]:
    """(admitted calls, sum of their actual usage, highest count seen after a reserve)."""
    rng = random.Random(seed)
    async with _store(prefix) as store:

        async def one() -> tuple[int, int, int]:
            admitted = total = peak = 0
            for _ in range(5):
                try:
                    reservation = await store.reserve([(limit, 500)], now=NOW)
                except LimitExceeded:
                    continue
                peak = max(peak, limit.limit - reservation.held[0].remaining)
                await asyncio.sleep(rng.random() / 1000)
                actual = rng.randint(0, 500)
                await store.settle(reservation, {limit: actual})
                admitted += 1
                total += actual
            return admitted, total, peak

        results = await asyncio.gather(*(one() for _ in range(50)))
        return (
            sum(r[0] for r in results),
            sum(r[1] for r in results),
            max(r[2] for r in results),
        )


def _tokens_worker(prefix: str, limit: Limit, seed: int) -> tuple[int, int, int]:
    return asyncio.run(_spend_tokens(prefix, limit, seed))


def test_four_processes_admit_exactly_the_limit(prefix: str) -> None:
    limit = Limit("key:shared", "rpm", "requests", "minute", 100)
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        admitted = pool.starmap(_requests_worker, [(prefix, limit)] * 4)
    assert len(admitted) == 4
    assert sum(admitted) == 100
    bucket = asyncio.run(_one_bucket(prefix))
    assert asyncio.run(_get(bucket)) == 100


def test_four_processes_settle_tokens_exactly(prefix: str) -> None:
    limit = Limit("key:shared", "tpm", "tokens", "minute", 20_000)
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.starmap(_tokens_worker, [(prefix, limit, seed) for seed in range(4)])
    admitted = sum(r[0] for r in results)
    actual = sum(r[1] for r in results)
    peak = max(r[2] for r in results)
    assert 40 <= admitted < 1000  # 1,000 asks of 500 against 20,000: some were refused
    assert peak <= limit.limit
    assert actual <= limit.limit + 500
    bucket = asyncio.run(_one_bucket(prefix))
    assert asyncio.run(_get(bucket)) == actual


async def _one_bucket(prefix: str) -> str:
    client = Redis.from_url(URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    finally:
        await client.aclose()
    assert len(keys) == 1
    return bytes(keys[0]).decode()
