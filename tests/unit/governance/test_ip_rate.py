"""governance/ip_limits: GCRA per client IP, in-process, on an injected clock."""

from __future__ import annotations

import asyncio

import pytest

from sluicegate.errors import RateLimited
from sluicegate.governance.ip_limits import (
    GCRA,
    InProcessIpRate,
    IpRateExceeded,
    RedisIpRate,
    build_ip_rate,
)

T0 = 1000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def admitted(store: InProcessIpRate, ip: str, attempts: int, now: float) -> int:
    count = 0
    for _ in range(attempts):
        try:
            store.allow_now(ip, now)
        except IpRateExceeded:
            continue
        count += 1
    return count


def test_burst_then_steady_rate() -> None:
    store = InProcessIpRate(10, 20)
    assert admitted(store, "1.2.3.4", 50, T0) == 20
    # One more every 0.1 s, never two.
    for step in range(1, 30):
        now = T0 + step * 0.1
        assert admitted(store, "1.2.3.4", 5, now) == 1, step


def test_retry_after_is_exact() -> None:
    store = InProcessIpRate(10, 20)
    assert admitted(store, "1.2.3.4", 20, T0) == 20
    with pytest.raises(IpRateExceeded) as refused:
        store.allow_now("1.2.3.4", T0 + 0.03)
    exc = refused.value
    assert isinstance(exc, RateLimited)
    assert exc.status == 429
    assert exc.code == "ip_rate_limit_exceeded"
    assert exc.retry_after == pytest.approx(0.07)
    assert exc.headers == {
        "retry-after": "1",
        "x-ratelimit-limit": "20",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": "2",  # the whole burst is back 1.97 s later
        "x-ratelimit-name": "ip_rps",
    }
    assert "1.2.3.4" in exc.message and "10 per second" in exc.message
    # Just before the retry time: still refused; at it: admitted.
    with pytest.raises(IpRateExceeded):
        store.allow_now("1.2.3.4", T0 + 0.099999)
    store.allow_now("1.2.3.4", T0 + 0.1)


def test_refusals_count_nothing() -> None:
    store = InProcessIpRate(1, 2)
    assert admitted(store, "a", 2, T0) == 2
    assert admitted(store, "a", 1000, T0 + 0.5) == 0
    assert admitted(store, "a", 5, T0 + 1.0) == 1


def test_slow_rate_and_long_retry() -> None:
    store = InProcessIpRate(0.5, 1)
    store.allow_now("a", T0)
    with pytest.raises(IpRateExceeded) as refused:
        store.allow_now("a", T0 + 0.5)
    assert refused.value.retry_after == pytest.approx(1.5)
    assert refused.value.headers["retry-after"] == "2"


def test_ips_are_independent() -> None:
    store = InProcessIpRate(1, 3)
    assert admitted(store, "10.0.0.1", 10, T0) == 3
    assert admitted(store, "10.0.0.2", 10, T0) == 3
    assert admitted(store, "2001:db8::1", 10, T0) == 3


def test_idle_client_gets_whole_burst_back_not_more() -> None:
    store = InProcessIpRate(10, 5)
    assert admitted(store, "a", 5, T0) == 5
    assert admitted(store, "a", 50, T0 + 3600) == 5


def test_default_burst_is_rps_rounded_up() -> None:
    assert GCRA(50).burst == 50
    assert GCRA(2.5).burst == 3
    assert GCRA(0.2).burst == 1
    assert GCRA(3).interval == 333_333
    assert GCRA(1e9).interval == 1  # never zero: at most a million a second
    with pytest.raises(ValueError):
        GCRA(0)
    with pytest.raises(ValueError):
        GCRA(1, 0)


def test_seed_004_numbers() -> None:
    store = InProcessIpRate(50, 100)
    assert admitted(store, "a", 150, T0) == 100
    assert admitted(store, "a", 150, T0 + 1.0) == 50


def test_uses_its_clock_and_the_coroutine() -> None:
    clock = Clock(T0)
    store = InProcessIpRate(1, 1, clock=clock)
    asyncio.run(store.allow("a"))
    with pytest.raises(IpRateExceeded):
        asyncio.run(store.allow("a"))
    clock.now += 1
    asyncio.run(store.allow("a"))


def test_sweep_drops_ips_whose_allowance_is_whole() -> None:
    store = InProcessIpRate(10, 10, sweep_every=5)
    for i in range(100):
        store.allow_now(f"10.0.{i // 256}.{i % 256}", T0)
    assert len(store) == 100
    store.allow_now("late", T0 + 1)  # 1 s after: every TAT has passed, but no sweep is due
    assert len(store) == 101
    store.allow_now("later", T0 + 6)
    assert len(store) == 1


def test_sweep_when_memory_doubles_between_sweeps() -> None:
    store = InProcessIpRate(1000, 1, sweep_every=3600)
    for i in range(50_000):
        # Each IP's allowance is whole again 1 ms after its request.
        store.allow_now(f"ip{i}", T0 + i * 0.001)
    assert len(store) <= InProcessIpRate._MIN_SWEEP_SIZE


def test_build_ip_rate() -> None:
    assert isinstance(build_ip_rate("memory", 5), InProcessIpRate)
    shared = build_ip_rate("redis://127.0.0.1:6379/9", 5)
    assert isinstance(shared, RedisIpRate)
    asyncio.run(shared.close())
    with pytest.raises(ValueError):
        build_ip_rate("postgres://x", 5)
