"""routing/engine_load over real servers on 127.0.0.1: a gateway scrapes fake vLLM and TEI
engines' /metrics, routes least-outstanding calls away from the one with a long queue,
falls back to its own counts when the figures go stale or a scrape fails, and
re-exports the figures on its own /metrics."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from sluicegate.config.schema import Config
from sluicegate.routing.state import DeploymentState
from sluicegate.server.app import create_app
from sluicegate.server.gateway import Gateway, MasterKey
from tests.conftest import APP_KEY, MASTER_KEY
from tests.fakes.engine_upstream import EngineUpstream
from tests.fakes.servers import running

AUTH = {"authorization": f"Bearer {APP_KEY}"}
ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
# Fast scrapes; a scrape may wait long, so that a held-back one leaves stale figures.
SCRAPE_TIMEOUT = 5.0
SCRAPE = {"path": "/metrics", "interval": 0.05, "timeout": SCRAPE_TIMEOUT, "stale_after": 1.0}


class Setup:
    def __init__(self, url: str, app: Starlette, engines: dict[str, EngineUpstream]) -> None:
        self.url = url
        self.engines = engines
        gateway: Gateway = app.state.gateway
        self.states = {t.deployment_id: t.state for t in gateway.router.targets()}
        self.http = httpx2.Client(base_url=url, timeout=10)

    def chats(self, count: int) -> Counter[str]:
        served: Counter[str] = Counter()
        for _ in range(count):
            r = self.http.post("/v1/chat/completions", json=CHAT, headers=AUTH)
            assert r.status_code == 200, r.text
            served[r.headers["x-sluicegate-deployment"]] += 1
        return served

    def gauges(self) -> dict[tuple[str, str], float]:
        """(metric, deployment) → value of the gateway's engine gauges."""
        r = self.http.get("/metrics", headers=ADMIN)
        assert r.status_code == 200
        return {
            (sample.name, sample.labels["deployment"]): sample.value
            for family in text_string_to_metric_families(r.text)
            if family.name.startswith("sluicegate_engine_")
            for sample in family.samples
        }

    def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "condition not reached in time"
            time.sleep(0.01)


@pytest.fixture
def setup() -> Iterator[Setup]:
    engines = {
        "busy": EngineUpstream("vllm"),
        "idle": EngineUpstream("vllm-old"),
        "tei": EngineUpstream("tei"),
    }
    with ExitStack() as stack:
        urls = {name: stack.enter_context(running(e.app)) for name, e in engines.items()}
        # TEI serves its metrics on a port of its own (--prometheus-port): a second
        # server on the same engine stands for it, reached by engine_metrics.url.
        tei_metrics = stack.enter_context(running(engines["tei"].app))

        def dep(name: str) -> dict[str, Any]:
            scrape: dict[str, Any] = dict(SCRAPE)
            if name == "tei":
                del scrape["path"]
                scrape["url"] = f"{tei_metrics}/metrics"
            return {
                "provider": "openai",
                "id": name,
                "base_url": f"{urls[name]}/v1",
                "api_key": "sk-engine",
                "health": {"enabled": False},
                "engine_metrics": scrape,
            }

        raw = {
            "auth": {"keys": [{"name": "app", "key": APP_KEY}]},
            "models": [
                {
                    "name": "chat",
                    "routing": {"strategy": "least_outstanding"},
                    "deployments": [dep("busy"), dep("idle")],
                },
                {"name": "embed", "kind": "embedding", "deployments": [dep("tei")]},
            ],
        }
        app = create_app(Config.model_validate(raw), MasterKey(MASTER_KEY, "test"))
        url = stack.enter_context(running(app))
        found = Setup(url, app, engines)
        stack.callback(found.http.close)
        # Never leave a held-back scrape for the servers' shutdown to wait on.
        for engine in engines.values():
            stack.callback(engine.release)
        yield found


def fresh(state: DeploymentState) -> bool:
    return state.engine_fresh(time.monotonic())


def test_calls_avoid_the_engine_with_a_long_queue_and_gauges_show_it(setup: Setup) -> None:
    busy, idle, tei = setup.engines["busy"], setup.engines["idle"], setup.engines["tei"]
    busy.waiting, busy.running, busy.kv_usage = 50, 8, 0.9
    idle.kv_usage = 0.25
    tei.waiting, tei.running = 3, 16
    expected = {
        ("sluicegate_engine_requests_waiting", "busy"): 50,
        ("sluicegate_engine_requests_running", "busy"): 8,
        ("sluicegate_engine_kv_cache_usage_ratio", "busy"): 0.9,
        ("sluicegate_engine_requests_waiting", "idle"): 0,
        ("sluicegate_engine_requests_running", "idle"): 0,
        ("sluicegate_engine_kv_cache_usage_ratio", "idle"): 0.25,  # the older name
        ("sluicegate_engine_requests_waiting", "tei"): 3,
        ("sluicegate_engine_requests_running", "tei"): 16,
        # TEI reports no KV cache: no series
    }
    setup.until(lambda: setup.gauges() == expected)

    assert setup.chats(12) == {"idle": 12}
    assert busy.served == 0 and idle.served == 12
    assert setup.gauges() == expected
    r = setup.http.get("/metrics", headers=ADMIN)
    assert 'sluicegate_engine_requests_waiting{deployment="busy",model="chat"} 50.0' in r.text

    # The queue drains: the busy engine is back in the rotation.
    busy.waiting = busy.running = 0
    setup.until(lambda: setup.gauges().get(("sluicegate_engine_requests_waiting", "busy")) == 0)
    assert setup.chats(4) == {"busy": 2, "idle": 2}


def test_a_failed_scrape_falls_back_to_own_counts(setup: Setup) -> None:
    busy = setup.engines["busy"]
    busy.waiting = 50
    setup.until(lambda: setup.gauges().get(("sluicegate_engine_requests_waiting", "busy")) == 50)
    assert setup.chats(2) == {"idle": 2}

    busy.metrics_status = 503
    setup.until(lambda: setup.states["busy"].engine_seen_at is None)
    assert ("sluicegate_engine_requests_waiting", "busy") not in setup.gauges()
    assert ("sluicegate_engine_requests_waiting", "idle") in setup.gauges()
    assert setup.chats(4) == {"busy": 2, "idle": 2}

    busy.metrics_status = 200  # scrapes work again: the queue counts again
    setup.until(lambda: fresh(setup.states["busy"]))
    assert setup.chats(3) == {"idle": 3}


def test_stale_figures_fall_back_to_own_counts(setup: Setup) -> None:
    busy = setup.engines["busy"]
    busy.waiting = 50
    state = setup.states["busy"]
    setup.until(lambda: fresh(state) and state.engine_waiting == 50)
    assert setup.chats(2) == {"idle": 2}

    busy.hold()  # the next scrape waits (within its timeout): the last figures age
    setup.until(lambda: not fresh(state))
    started = time.monotonic()
    assert state.engine_seen_at is not None  # stale, not dropped: staleness alone decides
    assert ("sluicegate_engine_requests_waiting", "busy") not in setup.gauges()
    assert setup.chats(4) == {"busy": 2, "idle": 2}
    assert time.monotonic() - started < SCRAPE_TIMEOUT, "too slow to see the stale window"

    busy.release()
    setup.until(lambda: fresh(state))
    assert setup.chats(2) == {"idle": 2}
