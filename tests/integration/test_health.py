"""routing/health: active checks against real upstreams on 127.0.0.1 take a failing
deployment out of rotation and bring it back through its breaker's half-open probes."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from sluicegate.config.schema import Config
from sluicegate.routing.health import HealthMonitor
from sluicegate.routing.router import Router, Target
from tests.fakes.health_upstream import HealthUpstream
from tests.fakes.servers import free_port, running

FAST = {"interval": 0.05, "timeout": 1.0}


@pytest.fixture
def fake() -> Iterator[tuple[HealthUpstream, str]]:
    upstream = HealthUpstream()
    with running(upstream.app) as url:
        yield upstream, url


def targets(*deployments: dict[str, Any]) -> list[Target]:
    models = [{"name": "m", "deployments": [{"provider": "openai", **d} for d in deployments]}]
    return list(Router(Config.model_validate({"models": models})).targets())


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def monitored(found: list[Target], body: Callable[[], Awaitable[None]], **kwargs: Any) -> None:
    """Start the providers and a monitor over ``found``, run ``body``, close everything."""

    async def main() -> None:
        for target in found:
            await target.provider.start()
        monitor = HealthMonitor(found, **kwargs)
        await monitor.start()
        try:
            await body()
        finally:
            await monitor.close()
            for target in found:
                await target.provider.close()
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(main())


def run_length(values: list[int], end: int, value: int) -> int:
    """How many items equal to ``value`` come right before index ``end``."""
    count = 0
    while end - count - 1 >= 0 and values[end - count - 1] == value:
        count += 1
    return count


def test_failing_checks_take_it_out_and_passing_ones_bring_it_back_half_open(
    fake: tuple[HealthUpstream, str], caplog: pytest.LogCaptureFixture
) -> None:
    upstream, url = fake
    caplog.set_level(logging.INFO, logger="sluicegate.health")
    (target,) = targets(
        {
            "id": "vllm-1",
            "base_url": f"{url}/v1",
            "api_key": "sk-upstream-secret-123",
            "health": {**FAST, "path": "/health", "unhealthy_after": 3, "healthy_after": 2},
        }
    )
    upstream.observe = lambda: target.state.healthy
    upstream.status = 503

    async def body() -> None:
        await until(lambda: not target.state.healthy)
        before: str = target.state.breaker.state
        assert before == "closed"  # no traffic failed; the checks did
        assert not target.state.available()
        upstream.status = 200
        await until(lambda: target.state.healthy)
        after: str = target.state.breaker.state
        assert after == "half_open"
        assert target.state.available()
        checks = len(upstream.hits)
        await until(lambda: len(upstream.hits) > checks)  # one more, to see it in rotation

    monitored([target], body)

    statuses = [hit.status for hit in upstream.hits]
    seen = [hit.observed for hit in upstream.hits]
    out = seen.index(False)
    # Out of rotation right after the third failed check, not before.
    assert out == 3 and statuses[:3] == [503, 503, 503]
    back = seen.index(True, out)
    assert all(s is False for s in seen[out:back])
    # Back right after the second passing check in a row.
    assert run_length(statuses, back, 200) == 2
    # The check goes to /health on the origin, not under the base URL's /v1.
    assert upstream.paths() == {"/health"}

    records = [r for r in caplog.records if r.name == "sluicegate.health"]
    assert [(r.levelname, r.__dict__["deployment"]) for r in records] == [
        ("WARNING", "vllm-1"),
        ("INFO", "vllm-1"),
    ]
    assert "3 consecutive health checks failed" in records[0].__dict__["reason"]
    assert "2 consecutive health checks passed" in records[1].__dict__["reason"]
    assert "half-open" in records[1].getMessage()
    assert "sk-upstream-secret-123" not in caplog.text


@pytest.mark.parametrize(
    ("path", "expected"),
    [(None, "/v1/models"), ("/health", "/health"), ("/ping/ready", "/ping/ready")],
)
def test_probe_path(fake: tuple[HealthUpstream, str], path: str | None, expected: str) -> None:
    upstream, url = fake
    (target,) = targets({"base_url": f"{url}/v1", "health": {**FAST, "path": path}})

    async def body() -> None:
        await until(lambda: len(upstream.hits) >= 3)

    monitored([target], body)
    assert upstream.paths() == {expected}
    assert target.state.healthy


def test_a_closed_port_counts_as_failed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sluicegate.health")
    port = free_port()  # nothing listens there
    (target,) = targets(
        {"id": "gone", "base_url": f"http://127.0.0.1:{port}/v1", "health": {**FAST}}
    )

    async def body() -> None:
        await until(lambda: not target.state.healthy)

    monitored([target], body)
    (record,) = [r for r in caplog.records if r.name == "sluicegate.health"]
    assert record.__dict__["deployment"] == "gone"
    assert "2 consecutive health checks failed" in record.__dict__["reason"]


def test_a_probe_slower_than_its_timeout_counts_as_failed(
    fake: tuple[HealthUpstream, str],
) -> None:
    upstream, url = fake
    upstream.slow_seconds = 1.0
    upstream.status = 200  # a healthy answer, had it come in time
    (target,) = targets(
        {
            "base_url": f"{url}/v1",
            "health": {"interval": 0.05, "timeout": 0.1, "path": "/slow", "unhealthy_after": 2},
        }
    )

    upstream.observe = lambda: target.state.healthy

    async def body() -> None:
        began = time.monotonic()
        await until(lambda: not target.state.healthy)
        # Two timed-out checks and an interval or two, far from the 1 s answer.
        assert time.monotonic() - began < 0.9

    monitored([target], body)
    assert [hit.observed for hit in upstream.hits[:2]] == [True, True]
    assert all(hit.observed is False for hit in upstream.hits[2:])


def test_disabled_checks_send_no_probes(fake: tuple[HealthUpstream, str]) -> None:
    upstream, url = fake
    upstream.status = 503
    off, on = targets(
        {
            "id": "off",
            "base_url": f"{url}/v1",
            "health": {**FAST, "enabled": False, "path": "/off"},
        },
        {"id": "on", "base_url": f"{url}/v1", "health": {**FAST, "path": "/on"}},
    )

    async def body() -> None:
        assert len(asyncio.all_tasks()) == 2  # this one and the watcher of "on"
        await until(lambda: not on.state.healthy)
        await asyncio.sleep(0.3)

    monitored([off, on], body)
    assert upstream.paths() == {"/on"}
    assert off.state.healthy


def test_close_cancels_probes_in_flight(fake: tuple[HealthUpstream, str]) -> None:
    upstream, url = fake
    upstream.slow_seconds = 0.5
    found = targets(
        {"base_url": f"{url}/v1", "health": {**FAST, "path": "/slow"}},
        {"base_url": f"{url}/v1", "health": {**FAST, "path": "/fast"}},
        {"base_url": f"{url}/v1", "health": {**FAST, "path": "/also-fast"}},
    )

    async def main() -> None:
        for target in found:
            await target.provider.start()
        monitor = HealthMonitor(found)
        await monitor.start()
        assert len(asyncio.all_tasks()) == 4
        await until(lambda: upstream.paths() == {"/slow", "/fast", "/also-fast"})
        began = time.monotonic()
        await monitor.close()  # the /slow probe is still waiting for its answer
        assert time.monotonic() - began < 0.2
        assert asyncio.all_tasks() == {asyncio.current_task()}
        count = len(upstream.hits)
        await asyncio.sleep(0.2)
        assert len(upstream.hits) == count  # nothing probes after close
        await monitor.close()  # closing twice is harmless
        for target in found:
            await target.provider.close()

    asyncio.run(main())


def test_first_probes_are_spread_over_the_interval(fake: tuple[HealthUpstream, str]) -> None:
    upstream, url = fake
    interval = 0.6
    found = targets(
        *(
            {"base_url": f"{url}/v1", "health": {"interval": interval, "path": f"/d{n}"}}
            for n in range(6)
        )
    )
    # Each watcher draws its first delay in start order from the monitor's generator.
    rng = random.Random(2)
    delays = [rng.uniform(0, interval) for _ in range(6)]
    began = 0.0

    async def body() -> None:
        nonlocal began
        began = time.monotonic()
        await until(lambda: len(upstream.paths()) == 6, timeout=interval + 1.0)

    upstream.observe = time.monotonic
    monitored(found, body, rng=random.Random(2))
    firsts: dict[str, float] = {}
    for hit in upstream.hits:
        assert isinstance(hit.observed, float)
        firsts.setdefault(hit.path, hit.observed - began)
    for n, delay in enumerate(delays):
        assert delay - 0.02 <= firsts[f"/d{n}"] <= delay + 0.25, (n, delay, firsts)
    assert max(firsts.values()) - min(firsts.values()) > interval / 4  # not in lockstep
