"""Budget alert webhooks against a real receiver: once per threshold, retries, replicas."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sluicegate.config.governance import BudgetActionsConfig
from sluicegate.governance.budget_actions import BudgetWatch, RedisDedupe
from sluicegate.governance.limits import InProcessLimitStore, Limit, LimitStore
from sluicegate.governance.limits_redis import RedisLimitStore
from tests.fakes.redis_db import flush
from tests.fakes.servers import free_port, running

REDIS = "redis://127.0.0.1:6379/10"
NOW = datetime(2026, 3, 5, 10, tzinfo=UTC).timestamp()
DOLLAR = 1_000_000
ORG = Limit("org:acme", "budget_usd_month", "usd_micros", "month", 100 * DOLLAR)


class Receiver:
    """A webhook endpoint that records what it was sent; answers 500 ``failures`` times first."""

    def __init__(self, failures: int = 0, stall: float = 0.0) -> None:
        self.failures = failures
        self.stall = stall
        self.attempts = 0
        self.received: list[dict[str, Any]] = []
        self.queries: list[str] = []
        self.app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])

    async def _hook(self, request: Request) -> Response:
        self.attempts += 1
        if self.stall:
            await asyncio.sleep(self.stall)
        if self.failures:
            self.failures -= 1
            return Response("down", status_code=500)
        assert request.headers["content-type"] == "application/json"
        self.received.append(await request.json())
        self.queries.append(request.url.query)
        return Response(status_code=204)


async def spend(store: LimitStore, watch: BudgetWatch, *dollars: float, now: float = NOW) -> None:
    for amount in dollars:
        watch.observe(await store.reserve([(ORG, round(amount * DOLLAR))], now), now)


def test_one_post_per_threshold() -> None:
    receiver = Receiver()
    with running(receiver.app) as url:

        async def main() -> None:
            watch = BudgetWatch(BudgetActionsConfig(webhook=f"{url}/hook?token=s3cret"))
            await spend(InProcessLimitStore(), watch, 50, 30, 5, 10, 5, 0)
            await watch.close()

        asyncio.run(main())
    assert [body["threshold"] for body in receiver.received] == [0.8, 1.0]
    assert receiver.received[0] == {
        "type": "budget_alert",
        "scope": "org:acme",
        "budget": "budget_usd_month",
        "limit_usd": 100.0,
        "spent_usd": 80.0,
        "share": 0.8,
        "threshold": 0.8,
        "resets_at": "2026-04-01T00:00:00Z",
    }
    assert receiver.queries == ["token=s3cret"] * 2


def test_a_failing_receiver_gets_the_alert_on_a_retry() -> None:
    receiver = Receiver(failures=2)
    with running(receiver.app) as url:

        async def main() -> None:
            config = BudgetActionsConfig(webhook=f"{url}/hook")
            watch = BudgetWatch(config, webhook_backoff=0.01)
            await spend(InProcessLimitStore(), watch, 85)
            await watch.close()

        asyncio.run(main())
    assert receiver.attempts == 3
    assert [body["threshold"] for body in receiver.received] == [0.8]


def test_a_dead_receiver_is_logged_once_and_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sluicegate.governance")
    receiver = Receiver(failures=100)
    with running(receiver.app) as url:

        async def main(hook: str) -> None:
            watch = BudgetWatch(BudgetActionsConfig(webhook=hook), webhook_backoff=0.01)
            await spend(InProcessLimitStore(), watch, 85)
            await watch.close()

        asyncio.run(main(f"{url}/hook?token=s3cret"))
        asyncio.run(main(f"http://127.0.0.1:{free_port()}/hook"))  # nothing listens there
    assert receiver.attempts == 3
    failures = [r for r in caplog.records if r.getMessage() == "budget alert webhook failed"]
    assert len(failures) == 2
    assert failures[0].reason == "HTTP 500"  # type: ignore[attr-defined]
    assert "cannot connect" in failures[1].reason  # type: ignore[attr-defined]
    assert "s3cret" not in caplog.text


def test_close_does_not_wait_for_a_stalled_receiver() -> None:
    receiver = Receiver(stall=1.0)
    with running(receiver.app) as url:

        async def main() -> float:
            config = BudgetActionsConfig(webhook=f"{url}/hook")
            watch = BudgetWatch(config, webhook_timeout=0.2)
            await spend(InProcessLimitStore(), watch, 85)
            await asyncio.sleep(0.05)
            started = time.monotonic()
            await watch.close()
            return time.monotonic() - started

        assert asyncio.run(main()) < 0.5
    assert receiver.attempts >= 1
    assert not receiver.received


async def _flush() -> bool:
    return await flush(REDIS)


@pytest.fixture
def redis_db() -> Iterator[str]:
    if not asyncio.run(_flush()):
        if os.environ.get("CI"):
            pytest.fail("Redis on 127.0.0.1:6379 is unreachable (CI is set: `make services`)")
        pytest.skip("Redis on 127.0.0.1:6379 is unreachable")
    yield REDIS
    asyncio.run(_flush())


@pytest.mark.parametrize(("shared", "posts"), [(True, 2), (False, 4)])
def test_replicas_sharing_redis_send_one_post_per_threshold(
    redis_db: str, shared: bool, posts: int
) -> None:
    receiver = Receiver()
    with running(receiver.app) as url:

        async def main() -> list[BudgetWatch]:
            config = BudgetActionsConfig(webhook=f"{url}/hook")
            store = RedisLimitStore(redis_db)  # the counters both replicas share
            replicas = [
                BudgetWatch(config, dedupe=RedisDedupe(redis_db) if shared else None)
                for _ in range(2)
            ]
            try:
                # Each replica sees 80 % and 100 % first-hand, so each would alert alone.
                for dollars in (40, 41, 10, 9, 0):
                    for watch in replicas:
                        await spend(store, watch, dollars / 2)
            finally:
                for watch in replicas:
                    await watch.close()
                await store.close()
            return replicas

        replicas = asyncio.run(main())
    # Without the shared dedupe (the control) both replicas alert for both thresholds.
    assert sorted(body["threshold"] for body in receiver.received) == sorted(
        [0.8, 1.0] * (posts // 2)
    )
    assert sum(sum(watch.alerts.values()) for watch in replicas) == posts


def test_an_unreachable_dedupe_still_alerts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sluicegate.governance")
    receiver = Receiver()
    with running(receiver.app) as url:

        async def main() -> BudgetWatch:
            dead = RedisDedupe(f"redis://127.0.0.1:{free_port()}/0")
            watch = BudgetWatch(BudgetActionsConfig(webhook=f"{url}/hook"), dedupe=dead)
            await spend(InProcessLimitStore(), watch, 85)
            await watch.close()
            return watch

        watch = asyncio.run(main())
    assert [body["threshold"] for body in receiver.received] == [0.8]
    assert sum(watch.alerts.values()) == 1
    assert any(r.getMessage().startswith("budget alert dedupe failed") for r in caplog.records)
