"""The Redis per-IP rate and in-flight stores against the real Redis on 127.0.0.1:6379 (DB 9).

Several store instances stand in for several replicas; many asyncio clients hit
them at once, and the counts must come out exact.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest
from redis.asyncio import Redis

from sluicegate.errors import ServiceUnavailable
from sluicegate.governance.concurrency import InflightExceeded, RedisInflight
from sluicegate.governance.ip_limits import IpRateExceeded, RedisIpRate
from sluicegate.pipeline.call import Call, Reply
from sluicegate.pipeline.guard import ClientGuard
from sluicegate.types import Endpoint
from tests.fakes.redis_db import flush

URL = "redis://127.0.0.1:6379/9"
T = TypeVar("T")


async def _flush() -> bool:
    return await flush(URL)


@pytest.fixture(autouse=True)
def clean_db() -> None:
    if not asyncio.run(_flush()):
        if os.environ.get("CI"):
            pytest.fail("Redis on 127.0.0.1:6379 is unreachable (CI is set: `make services`)")
        pytest.skip("Redis on 127.0.0.1:6379 is unreachable")


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await scenario()

    return asyncio.run(main())


async def _outcomes(attempts: list[Awaitable[None]]) -> tuple[list[int], list[BaseException]]:
    """Indices of the attempts that passed, and the refusals."""
    results = await asyncio.gather(*attempts, return_exceptions=True)
    refused = [r for r in results if isinstance(r, BaseException)]
    return [i for i, r in enumerate(results) if r is None], refused


# --- per-IP rate -------------------------------------------------------------------------


def test_gcra_burst_is_exact_under_concurrency() -> None:
    async def scenario() -> None:
        # Four replicas; one request comes back every 5 s, far longer than the test runs.
        stores = [RedisIpRate(URL, 0.2, 20) for _ in range(4)]
        try:
            admitted, refused = await _outcomes(
                [stores[i % 4].allow("198.51.100.7") for i in range(200)]
            )
            assert len(admitted) == 20
            assert len(refused) == 180
            assert all(isinstance(exc, IpRateExceeded) for exc in refused)
            exc = refused[0]
            assert isinstance(exc, IpRateExceeded)
            assert exc.code == "ip_rate_limit_exceeded"
            assert 4 < exc.retry_after <= 5.0
            assert exc.headers["retry-after"] == "5"
            assert exc.headers["x-ratelimit-limit"] == "20"
            assert exc.headers["x-ratelimit-name"] == "ip_rps"
            assert 96 <= int(exc.headers["x-ratelimit-reset"]) <= 100
            # Another IP has its own allowance.
            await stores[0].allow("198.51.100.8")
        finally:
            for store in stores:
                await store.close()

    run(scenario)


def test_gcra_steady_rate_and_key_expiry() -> None:
    async def scenario() -> None:
        store = RedisIpRate(URL, 20, 2)  # one per 50 ms
        client = Redis.from_url(URL)
        try:
            admitted, _ = await _outcomes([store.allow("a") for _ in range(10)])
            assert len(admitted) == 2
            with pytest.raises(IpRateExceeded) as refused:
                await store.allow("a")
            assert 0 < refused.value.retry_after <= 0.05
            await asyncio.sleep(refused.value.retry_after + 0.005)
            await store.allow("a")
            ttl = await client.pttl("sg:iprate:a")
            assert 0 < ttl <= 101
            await asyncio.sleep(0.15)
            assert await client.exists("sg:iprate:a") == 0  # nothing left once whole again
            admitted, _ = await _outcomes([store.allow("a") for _ in range(10)])
            assert len(admitted) == 2
        finally:
            await client.aclose()
            await store.close()

    run(scenario)


# --- in-flight leases --------------------------------------------------------------------


def test_two_replicas_share_caps_exactly() -> None:
    async def scenario() -> None:
        one, two = RedisInflight(URL), RedisInflight(URL)
        caps = [("key:abc", 7), ("org:acme", 10)]
        try:
            admitted, refused = await _outcomes(
                [(one if i % 2 else two).acquire(caps, f"lease-{i}") for i in range(100)]
            )
            assert len(admitted) == 7
            assert all(isinstance(exc, InflightExceeded) for exc in refused)
            assert {exc.scope for exc in refused if isinstance(exc, InflightExceeded)} == {
                "key:abc"
            }
            # Another key of the org: only the org's three remaining slots.
            other = [("key:xyz", 50), ("org:acme", 10)]
            admitted, refused = await _outcomes(
                [(one if i % 2 else two).acquire(other, f"other-{i}") for i in range(100)]
            )
            assert len(admitted) == 3
            exc = refused[0]
            assert isinstance(exc, InflightExceeded) and exc.scope == "org:acme"
            assert exc.headers["x-ratelimit-limit"] == "10"
            assert exc.headers["x-ratelimit-remaining"] == "0"
            # The refused calls took nothing anywhere.
            client = Redis.from_url(URL)
            try:
                assert await client.zcard("sg:inflight:key:abc") == 7
                assert await client.zcard("sg:inflight:key:xyz") == 3
                assert await client.zcard("sg:inflight:org:acme") == 10
            finally:
                await client.aclose()
            # Released on one replica, taken on the other.
            lease = f"lease-{admitted[0]}"
            one.release(caps, lease)
            one.release(caps, lease)  # idempotent
            await one.close()  # waits for the release under way
            await two.acquire(caps, "late")
            with pytest.raises(InflightExceeded):
                await two.acquire(caps, "later")
        finally:
            await one.close()
            await two.close()

    run(scenario)


def test_release_everything_under_concurrency() -> None:
    async def scenario() -> None:
        stores = [RedisInflight(URL) for _ in range(3)]
        caps = [("ip:203.0.113.9", 120)]
        try:

            async def cycle(i: int) -> None:
                store = stores[i % 3]
                for n in range(5):
                    lease = f"{i}-{n}"
                    try:
                        await store.acquire(caps, lease)
                    except InflightExceeded:
                        continue
                    await asyncio.sleep(0)
                    store.release(caps, lease)

            await asyncio.gather(*(cycle(i) for i in range(300)))
        finally:
            for store in stores:
                await store.close()
        client = Redis.from_url(URL)
        try:
            assert await client.exists("sg:inflight:ip:203.0.113.9") == 0
        finally:
            await client.aclose()

    run(scenario)


def test_expired_leases_are_reclaimed() -> None:
    async def scenario() -> None:
        crashed = RedisInflight(URL, lease_ttl=0.2)
        alive = RedisInflight(URL, lease_ttl=60)
        caps = [("key:abc", 2)]
        try:
            await crashed.acquire(caps, "c1")
            await crashed.acquire(caps, "c2")
            with pytest.raises(InflightExceeded):
                await alive.acquire(caps, "a1")
            await asyncio.sleep(0.3)  # the crashed replica never releases
            await alive.acquire(caps, "a1")
            await alive.acquire(caps, "a2")
            with pytest.raises(InflightExceeded):
                await alive.acquire(caps, "a3")
        finally:
            await crashed.close()
            await alive.close()

    run(scenario)


def test_unreachable_redis_is_a_503() -> None:
    async def scenario() -> None:
        inflight = RedisInflight("redis://127.0.0.1:1/0")
        rate = RedisIpRate("redis://127.0.0.1:1/0", 1)
        try:
            with pytest.raises(ServiceUnavailable):
                await inflight.acquire([("key:abc", 1)], "l")
            with pytest.raises(ServiceUnavailable):
                await rate.allow("a")
            inflight.release([("key:abc", 1)], "l")  # logged, never raised
        finally:
            await inflight.close()
            await rate.close()

    run(scenario)


# --- the guard stage over Redis ----------------------------------------------------------


async def _chunks() -> AsyncIterator[bytes]:
    yield b"data: [DONE]\n\n"


def test_client_guard_over_redis() -> None:
    async def scenario() -> None:
        inflight = RedisInflight(URL)
        guard = ClientGuard(RedisIpRate(URL, 1000, 1000), inflight, 2)

        def call() -> Call:
            return Call(request_id="r", endpoint=Endpoint.CHAT, client="192.0.2.1")

        async def streaming(c: Call) -> Reply:
            return Reply(stream=_chunks())

        client = Redis.from_url(URL)
        try:
            first = await guard(call(), streaming)
            second = await guard(call(), streaming)
            with pytest.raises(InflightExceeded):
                await guard(call(), streaming)
            first.end(None)
            second.end("client_disconnected")
            for reply in (first, second):
                assert reply.stream is not None
                await reply.stream.aclose()  # type: ignore[attr-defined]
            await asyncio.sleep(0.05)
            assert await client.exists("sg:inflight:ip:192.0.2.1") == 0
            third = await guard(call(), streaming)
            third.end(None)
            assert third.stream is not None
            await third.stream.aclose()  # type: ignore[attr-defined]
        finally:
            await client.aclose()
            await guard.close()

    run(scenario)
