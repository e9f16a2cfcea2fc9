"""governance/concurrency (in-process) and pipeline/guard: in-flight leases and the stages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sluicegate.config.governance import GovernanceConfig
from sluicegate.errors import RateLimited, UpstreamError
from sluicegate.governance.concurrency import (
    InflightExceeded,
    InProcessInflight,
    RedisInflight,
    build_inflight_store,
)
from sluicegate.governance.ip_limits import InProcessIpRate, IpRateExceeded
from sluicegate.pipeline.call import Call, Principal, Reply
from sluicegate.pipeline.guard import ClientGuard, Concurrency, build_client_guard
from sluicegate.types import Endpoint


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


KEY = ("key:abc", 2)
ORG = ("org:acme", 3)


def test_all_or_nothing() -> None:
    store = InProcessInflight()
    store.acquire_now([KEY, ORG], "l1")
    store.acquire_now([KEY, ORG], "l2")
    with pytest.raises(InflightExceeded) as refused:
        store.acquire_now([KEY, ORG], "l3")
    assert store.count("org:acme") == 2  # the org took nothing for the refused call
    exc = refused.value
    assert isinstance(exc, RateLimited)
    assert (exc.status, exc.code, exc.retry_after) == (429, "inflight_limit_exceeded", 1)
    assert "key:abc" in exc.message and "at most 2" in exc.message
    assert exc.headers == {
        "retry-after": "1",
        "x-ratelimit-limit": "2",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-name": "max_inflight",
    }
    # Another key of the same org fills the org's last slot, then the org is full.
    store.acquire_now([("key:other", 2), ORG], "l4")
    with pytest.raises(InflightExceeded) as refused:
        store.acquire_now([("key:other", 2), ORG], "l5")
    assert refused.value.scope == "org:acme"
    assert store.count("key:other") == 1


def test_release_frees_a_slot_and_is_idempotent() -> None:
    store = InProcessInflight()
    store.acquire_now([KEY], "l1")
    store.acquire_now([KEY], "l2")
    store.release([KEY], "l1")
    store.release([KEY], "l1")  # twice: still one slot freed, not two
    store.acquire_now([KEY], "l3")
    with pytest.raises(InflightExceeded):
        store.acquire_now([KEY], "l4")
    store.release([KEY], "l2")
    store.release([KEY], "l3")
    assert len(store) == 0  # empty scopes are dropped
    store.release([KEY], "unknown")  # never raises


def test_same_lease_counts_once() -> None:
    store = InProcessInflight()
    store.acquire_now([KEY], "l1")
    store.acquire_now([KEY], "l2")
    store.acquire_now([KEY], "l2")  # at the cap, but this lease is already held
    assert store.count("key:abc") == 2


def test_expired_leases_are_reclaimed() -> None:
    clock = Clock(0.0)
    store = InProcessInflight(lease_ttl=10, clock=clock, sweep_every=1000)
    store.acquire_now([KEY], "crashed-1")
    clock.now = 5
    store.acquire_now([KEY], "crashed-2")
    clock.now = 9.9
    with pytest.raises(InflightExceeded):
        store.acquire_now([KEY], "new-1")
    clock.now = 10.0  # the first lease is over, the second is not
    store.acquire_now([KEY], "new-1")
    with pytest.raises(InflightExceeded):
        store.acquire_now([KEY], "new-2")


def test_sweep_drops_expired_scopes() -> None:
    clock = Clock(0.0)
    store = InProcessInflight(lease_ttl=10, clock=clock, sweep_every=60)
    for i in range(100):
        store.acquire_now([(f"ip:10.0.0.{i}", 5)], f"l{i}")
    assert len(store) == 100
    clock.now = 61
    store.acquire_now([("ip:10.0.1.1", 5)], "fresh")
    assert len(store) == 1


def test_coroutine_acquire() -> None:
    store = InProcessInflight()
    asyncio.run(store.acquire([KEY], "l1"))
    assert store.count("key:abc") == 1
    asyncio.run(store.close())
    assert len(store) == 0


def test_build_inflight_store() -> None:
    assert isinstance(build_inflight_store("memory"), InProcessInflight)
    shared = build_inflight_store("redis://127.0.0.1:6379/9")
    assert isinstance(shared, RedisInflight)
    asyncio.run(shared.close())
    with pytest.raises(ValueError):
        build_inflight_store("sqlite://")


# --- the stages --------------------------------------------------------------------------


def call(client: str | None = "1.2.3.4", principal: Principal | None = None) -> Call:
    return Call(request_id="same-id", endpoint=Endpoint.CHAT, client=client, principal=principal)


async def chunks() -> AsyncIterator[bytes]:
    yield b"data: [DONE]\n\n"


def test_client_guard_limits_inflight_per_ip_and_releases() -> None:
    store = InProcessInflight()
    guard = ClientGuard(None, store, 2)

    async def scenario() -> None:
        gate = asyncio.Event()
        seen: list[int] = []

        async def slow(c: Call) -> Reply:
            seen.append(store.count("ip:1.2.3.4"))
            await gate.wait()
            return Reply(body=b"{}")

        # The same client-chosen request id on every call: still three separate leases.
        first = asyncio.create_task(guard(call(), slow))
        second = asyncio.create_task(guard(call(), slow))
        await asyncio.sleep(0)
        with pytest.raises(InflightExceeded) as refused:
            await guard(call(), slow)
        assert refused.value.scope == "ip:1.2.3.4"
        assert "120" not in refused.value.message and "at most 2" in refused.value.message
        await guard(call("5.6.7.8"), _ok)  # another IP is not affected
        gate.set()
        await asyncio.gather(first, second)
        assert seen == [1, 2]
        assert store.count("ip:1.2.3.4") == 0

    asyncio.run(scenario())
    assert len(store) == 0


async def _ok(c: Call) -> Reply:
    return Reply(body=b"{}")


def test_client_guard_releases_on_error_and_cancellation() -> None:
    store = InProcessInflight()
    guard = ClientGuard(None, store, 1)

    async def failing(c: Call) -> Reply:
        raise UpstreamError("boom")

    async def scenario() -> None:
        for _ in range(3):
            with pytest.raises(UpstreamError):
                await guard(call(), failing)
        assert store.count("ip:1.2.3.4") == 0

        async def forever(c: Call) -> Reply:
            await asyncio.Event().wait()
            raise AssertionError

        task = asyncio.create_task(guard(call(), forever))
        await asyncio.sleep(0)
        assert store.count("ip:1.2.3.4") == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert store.count("ip:1.2.3.4") == 0
        await guard(call(), _ok)

    asyncio.run(scenario())


def test_stream_holds_its_lease_until_it_ends() -> None:
    store = InProcessInflight()
    guard = ClientGuard(None, store, 1)

    async def streaming(c: Call) -> Reply:
        return Reply(stream=chunks())

    async def scenario() -> None:
        reply = await guard(call(), streaming)
        assert store.count("ip:1.2.3.4") == 1
        with pytest.raises(InflightExceeded):
            await guard(call(), streaming)
        reply.end("client_disconnected")
        assert store.count("ip:1.2.3.4") == 0
        await guard(call(), _ok)
        assert reply.stream is not None
        await reply.stream.aclose()  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_client_guard_rate_runs_first_and_no_ip_is_not_limited() -> None:
    clock = Clock(100.0)
    guard = ClientGuard(InProcessIpRate(1, 2, clock=clock), InProcessInflight(), 5)
    calls: list[str] = []

    async def terminal(c: Call) -> Reply:
        calls.append(c.client or "-")
        return Reply(body=b"{}")

    async def scenario() -> None:
        await guard(call(), terminal)
        await guard(call(), terminal)
        with pytest.raises(IpRateExceeded):
            await guard(call(), terminal)
        for _ in range(10):
            await guard(call(None), terminal)
        clock.now += 1
        await guard(call(), terminal)

    asyncio.run(scenario())
    assert calls == ["1.2.3.4"] * 2 + ["-"] * 10 + ["1.2.3.4"]


def test_client_guard_with_rate_only() -> None:
    guard = ClientGuard(InProcessIpRate(1000, 1000), None, None)
    asyncio.run(guard(call(), _ok))


def test_concurrency_uses_the_principals_scopes() -> None:
    store = InProcessInflight()
    stage = Concurrency(store)
    principal = Principal(name="app", org="acme", inflight=(KEY, ORG))

    async def scenario() -> None:
        gate = asyncio.Event()

        async def slow(c: Call) -> Reply:
            await gate.wait()
            return Reply(body=b"{}")

        running = [asyncio.create_task(stage(call(principal=principal), slow)) for _ in range(2)]
        await asyncio.sleep(0)
        assert (store.count("key:abc"), store.count("org:acme")) == (2, 2)
        with pytest.raises(InflightExceeded):
            await stage(call(principal=principal), slow)
        gate.set()
        await asyncio.gather(*running)
        assert len(store) == 0
        # No scopes (or no principal): straight through, nothing stored.
        await stage(call(principal=Principal(name="free")), _ok)
        await stage(call(principal=None), _ok)
        assert len(store) == 0

    asyncio.run(scenario())


def test_build_client_guard() -> None:
    store = InProcessInflight()
    assert build_client_guard(GovernanceConfig(), store) is None
    config = GovernanceConfig.model_validate(
        {"ip_limits": {"rps": 50, "burst": 100, "max_inflight": 120}}
    )
    guard = build_client_guard(config, store)
    assert guard is not None
    assert isinstance(guard.ip_rate, InProcessIpRate)
    assert (guard.ip_rate.gcra.rps, guard.ip_rate.gcra.burst) == (50, 100)
    assert guard.max_inflight_per_ip == 120
    only_inflight = build_client_guard(
        GovernanceConfig.model_validate({"ip_limits": {"max_inflight": 3}}), store
    )
    assert only_inflight is not None and only_inflight.ip_rate is None
    asyncio.run(guard.close())
