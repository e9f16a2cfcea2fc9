"""Limits, quotas and budgets through one gateway (in-process state): refusals, headers, settles."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest

from sluicegate.governance.cost import cost
from sluicegate.governance.pricing import load_catalogue
from sluicegate.governance.usage import UsageDetail
from sluicegate.server.app import create_app
from sluicegate.server.gateway import MasterKey
from tests.conftest import MASTER_KEY
from tests.fakes.servers import running

APP = "sk-governed-app-key-000000001"
TWIN = "sk-governed-twin-key-00000002"
RICH = "sk-governed-rich-key-00000003"
HELLO = [{"role": "user", "content": "hello there"}]


def config(upstream_url: str, **key_limits: Any) -> dict[str, Any]:
    ok = f"{upstream_url}/ok/v1"
    return {
        "governance": {"orgs": [{"name": "acme", "limits": {"rpm": 5}}]},
        "auth": {
            "keys": [
                {"name": "app", "key": APP, "org": "acme", "limits": key_limits},
                {"name": "twin", "key": TWIN, "org": "acme"},
                {"name": "rich", "key": RICH, "limits": {"budget_usd_day": 1000}},
            ]
        },
        "models": [
            {"name": "gpt-4o-mini", "deployments": [{"provider": "openai", "base_url": ok}]},
            {"name": "mystery-cloud", "deployments": [{"provider": "openai", "base_url": ok}]},
            {
                "name": "own-gpu",
                "deployments": [{"provider": "openai", "base_url": ok, "self_hosted": True}],
            },
            {
                "name": "broken",
                "routing": {"retry": {"attempts": 1}},
                "deployments": [
                    {"provider": "openai", "base_url": f"{upstream_url}/status-500/v1"}
                ],
            },
        ],
    }


@pytest.fixture
def gateway(upstream_url: str) -> Iterator[Any]:
    """Yields a starter: key limits → (base URL, the Gateway object)."""
    from contextlib import ExitStack

    from sluicegate.config.schema import Config

    with ExitStack() as stack:

        def start(**key_limits: Any) -> tuple[str, Any]:
            cfg = Config.model_validate(config(upstream_url, **key_limits))
            app = create_app(cfg, MasterKey(MASTER_KEY, "test"))
            return stack.enter_context(running(app)), app.state.gateway

        yield start


def chat(url: str, key: str, model: str = "gpt-4o-mini", **extra: Any) -> httpx2.Response:
    body = {"model": model, "messages": HELLO, "max_tokens": 20, **extra}
    return httpx2.post(
        url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
    )


def bucket(gw: Any, scope: str, name: str) -> int:
    """The current count of one of a scope's limits, read from the in-process store."""
    store = gw.admit.store
    for key, held in store._buckets.items():
        if key.startswith(f"{scope}|{name}|"):
            return int(held.count)
    return 0


def settled(gw: Any) -> None:
    deadline = time.monotonic() + 2
    while gw.admit._settling and time.monotonic() < deadline:
        time.sleep(0.01)


def test_rpm_refuses_the_request_past_the_limit_with_headers(gateway: Any) -> None:
    url, _ = gateway(rpm=3)
    answers = [chat(url, APP) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert answers[0].headers["x-ratelimit-name"] == "rpm"
    assert [r.headers["x-ratelimit-remaining"] for r in answers] == ["2", "1", "0"]
    assert answers[0].headers["x-ratelimit-limit"] == "3"
    assert 0 < int(answers[0].headers["x-ratelimit-reset"]) <= 60
    refused = chat(url, APP)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert "'rpm' of key:app" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-name"] == "rpm"


def test_an_org_limit_binds_all_its_keys(gateway: Any) -> None:
    url, _ = gateway()
    codes = [chat(url, key).status_code for key in (APP, TWIN, APP, TWIN, APP)]
    assert codes == [200] * 5
    refused = chat(url, TWIN)
    assert refused.status_code == 429
    assert "of org:acme" in refused.json()["error"]["message"]


def test_the_master_key_is_not_limited(gateway: Any) -> None:
    url, _ = gateway(rpm=1)
    assert [chat(url, MASTER_KEY).status_code for _ in range(7)] == [200] * 7


def test_tokens_are_reserved_then_settled_to_the_reported_usage(gateway: Any) -> None:
    url, gw = gateway(tpm=10_000)
    r = chat(url, APP)
    assert r.status_code == 200
    settled(gw)
    assert bucket(gw, "key:app", "tpm") == r.json()["usage"]["total_tokens"]
    with httpx2.stream(
        "POST",
        url + "/v1/chat/completions",
        json={
            "model": "gpt-4o-mini",
            "messages": HELLO,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        headers={"authorization": f"Bearer {APP}"},
    ) as s:
        body = b"".join(s.iter_bytes())
    assert body.endswith(b"data: [DONE]\n\n")
    settled(gw)
    streamed = int(body.split(b'"total_tokens":')[1].split(b"}")[0])
    assert bucket(gw, "key:app", "tpm") == r.json()["usage"]["total_tokens"] + streamed


def test_a_reservation_larger_than_the_quota_is_refused(gateway: Any) -> None:
    url, gw = gateway(tpm=100)
    refused = chat(url, APP, max_tokens=500)
    assert refused.status_code == 429
    assert refused.headers["x-ratelimit-name"] == "tpm"
    assert bucket(gw, "key:app", "tpm") == 0  # nothing was counted


def test_a_failed_call_counts_the_request_but_no_tokens(gateway: Any) -> None:
    url, gw = gateway(rpm=10, tpm=10_000)
    assert chat(url, APP, model="broken").status_code == 502
    settled(gw)
    assert bucket(gw, "key:app", "rpm") == 1
    assert bucket(gw, "key:app", "tpm") == 0


def test_spend_is_the_exact_cost_of_the_reported_usage(gateway: Any) -> None:
    url, gw = gateway(budget_usd_day=1.0)
    answers = [chat(url, APP) for _ in range(3)]
    settled(gw)
    price = load_catalogue().price_for("gpt-4o-mini", __import__("datetime").datetime.now())
    assert price is not None
    expected = sum(
        cost(UsageDetail.from_openai(r.json()["usage"]) or UsageDetail(), price).micro_usd
        for r in answers
    )
    assert expected > 0
    assert bucket(gw, "key:app", "budget_usd_day") == expected


def test_a_spent_budget_refuses_with_when_it_resets(gateway: Any) -> None:
    # gpt-4o-mini output is $0.60/M: reserving 20,000 output tokens costs $0.012 > $0.01.
    url, _ = gateway(budget_usd_day=0.01)
    refused = chat(url, APP, max_tokens=20_000)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert "budget_usd_day" in error["message"] and "resets" in error["message"]


def test_a_model_without_a_price_is_refused_to_a_budgeted_key(gateway: Any) -> None:
    url, _ = gateway()
    refused = chat(url, RICH, model="mystery-cloud")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "model_not_priced"
    # Self-hosted and unpriced: counted in tokens, never blocked by dollars.
    assert chat(url, RICH, model="own-gpu").status_code == 200
    # Without a budget, an unpriced model is fine.
    assert chat(url, TWIN, model="mystery-cloud").status_code == 200


def test_the_sdk_sees_rate_limit_errors(gateway: Any) -> None:
    url, _ = gateway(rpm=1)
    client = openai.OpenAI(base_url=url + "/v1", api_key=APP, max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.response.headers["x-ratelimit-name"] == "rpm"
