"""/metrics after known traffic: exact counts, bounded labels, admin keys only."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
from prometheus_client.parser import text_string_to_metric_families

from sluicegate.config.schema import Config
from sluicegate.server.app import create_app
from sluicegate.server.gateway import MasterKey
from tests.conftest import APP_KEY, MASTER_KEY
from tests.fakes.databases import sqlite_url
from tests.fakes.servers import running


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_known_traffic_exactly(upstream_url: str, tmp_path: Path) -> None:
    raw: dict[str, Any] = {
        "database": {"url": sqlite_url(tmp_path)},
        "auth": {"keys": [{"name": "app", "key": APP_KEY, "limits": {"rpm": 4}}]},
        "models": [
            {
                "name": "gpt-4o-mini",
                "deployments": [
                    {"provider": "openai", "base_url": f"{upstream_url}/ok/v1", "id": "mini"}
                ],
            },
            {
                "name": "flaky",
                "routing": {"retry": {"attempts": 2, "backoff_base": 0.01}},
                "deployments": [
                    {
                        "provider": "openai",
                        "base_url": f"{upstream_url}/status-503/v1",
                        "id": "bad",
                    },
                    {"provider": "openai", "base_url": f"{upstream_url}/ok/v1", "id": "good"},
                ],
            },
        ],
    }
    app = create_app(Config.model_validate(raw), MasterKey(MASTER_KEY, "test"))
    auth = {"authorization": f"Bearer {APP_KEY}"}
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    with running(app) as url, httpx2.Client(base_url=url) as client:
        assert client.post("/v1/chat/completions", json=chat, headers=auth).status_code == 200
        flaky = {**chat, "model": "flaky"}
        assert client.post("/v1/chat/completions", json=flaky, headers=auth).status_code == 200
        made_up = {**chat, "model": "no-such-model-" + "x" * 50}
        assert client.post("/v1/chat/completions", json=made_up, headers=auth).status_code == 404
        assert client.post("/v1/chat/completions", json=chat, headers=auth).status_code == 200
        streamed = {**chat, "stream": True}
        with client.stream("POST", "/v1/chat/completions", json=streamed, headers=auth) as s:
            assert s.status_code == 200 and b"[DONE]" in s.read()
        assert client.post("/v1/chat/completions", json=chat, headers=auth).status_code == 429

        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=auth).status_code == 403
        scraped = client.get("/metrics", headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    samples = _samples(scraped.text)
    requests = "sluicegate_requests_total"
    ok = {"route": "chat", "org": "-", "status": "200"}
    assert _value(samples, requests, model="gpt-4o-mini", deployment="mini", **ok) == 3
    assert _value(samples, requests, model="flaky", deployment="good", **ok) == 1
    # A made-up model name is not a label value: the cardinality stays bounded.
    assert (
        _value(samples, requests, route="chat", model="-", deployment="-", org="-", status="404")
        == 1
    )
    assert "no-such-model" not in scraped.text
    assert _value(samples, "sluicegate_refusals_total", code="rate_limit_exceeded") == 1
    assert _value(samples, "sluicegate_limit_refusals_total", scope="key", limit="rpm") == 1
    assert _value(samples, "sluicegate_failovers_total", model="flaky") == 1
    assert _value(samples, "sluicegate_retries_total", model="flaky") == 1
    assert _value(samples, "sluicegate_retries_total", model="gpt-4o-mini") == 0
    failures = "sluicegate_upstream_failures_total"
    assert _value(samples, failures, deployment="bad", code="upstream_unavailable") == 1
    assert _value(samples, failures, deployment="good", code="upstream_unavailable") == 0
    # Every call that reached a deployment, waiting or not (none had to wait here).
    waited = "sluicegate_queue_wait_seconds_count"
    assert _value(samples, waited, model="gpt-4o-mini") == 3
    assert _value(samples, "sluicegate_queue_wait_seconds_sum", model="gpt-4o-mini") == 0
    duration = "sluicegate_request_duration_seconds_count"
    assert _value(samples, duration, route="chat", model="gpt-4o-mini") == 4
    prompt = _value(samples, "sluicegate_tokens_total", model="gpt-4o-mini", org="-", kind="prompt")
    assert prompt == 22  # the fake upstream reports 11 prompt tokens per call
    assert _value(samples, "sluicegate_cost_usd_total", model="gpt-4o-mini", org="-") > 0
    upstream = "sluicegate_upstream_duration_seconds_count"
    assert _value(samples, upstream, model="gpt-4o-mini") == 3
    assert _value(samples, "sluicegate_gateway_overhead_seconds_count", route="chat") == 3
    ttft = "sluicegate_time_to_first_token_seconds_count"
    assert _value(samples, ttft, model="gpt-4o-mini") == 1
    assert _value(samples, "sluicegate_queue_depth", model="flaky") == 0
    assert _value(samples, "sluicegate_deployment_healthy", model="flaky", deployment="good") == 1
    assert _value(samples, "sluicegate_breaker_state", deployment="mini", state="closed") == 1
    assert _value(samples, "sluicegate_usage_events_submitted_total") >= 5
    assert _value(samples, "sluicegate_key_directory_available") == 1
    assert APP_KEY not in scraped.text and "sk-" not in scraped.text


def test_queue_wait_is_measured_for_calls_that_waited(upstream_url: str, tmp_path: Path) -> None:
    raw: dict[str, Any] = {
        "database": {"url": sqlite_url(tmp_path)},
        "auth": {"keys": [{"name": "app", "key": APP_KEY}]},
        "models": [
            {
                "name": "one-slot",
                "deployments": [
                    {
                        "provider": "openai",
                        "base_url": f"{upstream_url}/sleep-0.4/v1",
                        "max_concurrency": 1,
                        "health": {"enabled": False},
                    }
                ],
            }
        ],
    }
    app = create_app(Config.model_validate(raw), MasterKey(MASTER_KEY, "test"))
    auth = {"authorization": f"Bearer {APP_KEY}"}
    chat = {"model": "one-slot", "messages": [{"role": "user", "content": "hi"}]}
    with running(app) as url, httpx2.Client(base_url=url) as client:
        with ThreadPoolExecutor(2) as pool:
            calls = [
                pool.submit(client.post, "/v1/chat/completions", json=chat, headers=auth)
                for _ in range(2)
            ]
            assert [c.result().status_code for c in calls] == [200, 200]
        scraped = client.get("/metrics", headers={"authorization": f"Bearer {MASTER_KEY}"})
    samples = _samples(scraped.text)
    assert _value(samples, "sluicegate_queue_wait_seconds_count", model="one-slot") == 2
    # The second call waited for the first (0.4 s upstream) to free the only slot.
    waited = _value(samples, "sluicegate_queue_wait_seconds_sum", model="one-slot")
    assert 0.3 < waited < 2.0
    assert (
        _value(samples, "sluicegate_queue_wait_seconds_bucket", model="one-slot", le="0.001") == 1
    )


def test_per_key_counts_only_when_asked(upstream_url: str, tmp_path: Path) -> None:
    def scrape(per_key: bool) -> tuple[str, str]:
        raw: dict[str, Any] = {
            "database": {"url": sqlite_url(tmp_path / str(per_key))},
            "observability": {"metrics": {"per_key": per_key}},
            "models": [
                {
                    "name": "chat",
                    "deployments": [{"provider": "openai", "base_url": f"{upstream_url}/ok/v1"}],
                }
            ],
        }
        (tmp_path / str(per_key)).mkdir()
        app = create_app(Config.model_validate(raw), MasterKey(MASTER_KEY, "test"))
        admin = {"authorization": f"Bearer {MASTER_KEY}"}
        chat = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
        with running(app) as url, httpx2.Client(base_url=url) as client:
            client.post("/admin/orgs", json={"name": "acme"}, headers=admin)
            created = client.post(
                "/admin/keys", json={"name": "k", "org": "acme", "role": "developer"}, headers=admin
            ).json()
            auth = {"authorization": f"Bearer {created['key']}"}
            for _ in range(2):
                assert client.post("/v1/chat/completions", json=chat, headers=auth).is_success
            text = client.get("/metrics", headers=admin).text
        assert created["key"] not in text
        return text, created["prefix"]

    text, prefix = scrape(True)
    samples = _samples(text)
    assert _value(samples, "sluicegate_key_requests_total", key=prefix, status="200") == 2
    assert _value(samples, "sluicegate_key_tokens_total", key=prefix, kind="prompt") == 22
    text, prefix = scrape(False)
    assert "sluicegate_key_requests" not in text and prefix not in text
