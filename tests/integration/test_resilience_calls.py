"""Retries and fail-over of whole (non-streamed) calls against upstreams that fail on cue.

Each test scripts fake deployments (tests/fakes/faulty_upstream.py) and asserts what the
client sees (the whole answer, or one clean error), how many attempts reached each
upstream and how far apart, and how long the call took. Timeouts and backoffs are
scaled down; lower time bounds are tight only where the spec sets them (Retry-After).
Breakers, fallbacks in time, accounting and queues: test_resilience_routing.py;
streams: test_resilience_streams.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import httpx2
import openai
import pytest

from tests.conftest import MASTER_KEY, GatewayFactory
from tests.fakes.faulty_upstream import (
    Answer,
    Fail,
    FaultyUpstream,
    Reset,
    Silent,
    serving,
    text_of,
)

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
HI = [{"role": "user", "content": "hi"}]
RETRY = {"attempts": 3, "backoff_base": 0.2, "backoff_max": 0.4, "retry_after_max": 3.0}
TIMEOUTS = {"connect": 1.0, "first_byte": 2.0, "stream_idle": 2.0, "total": 10.0}
#: Scheduling and HTTP overhead allowed on top of a computed wait, on a loaded 2-core box.
SLACK = 0.35
#: How much later than the gateway sent it a request may be noted as arrived.
ARRIVAL = 0.05


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultyUpstream]:
    fake = FaultyUpstream()
    with serving(fake):
        yield fake


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(timeout=20) as client:
        yield client


def model(name: str, *deployments: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": name, "routing": {"retry": RETRY}, "deployments": list(deployments), **fields}


def chat(http: httpx2.Client, url: str, name: str = "m") -> tuple[httpx2.Response, float]:
    started = time.monotonic()
    r = http.post(url + "/v1/chat/completions", json={"model": name, "messages": HI}, headers=AUTH)
    return r, time.monotonic() - started


def answer_of(r: httpx2.Response) -> str:
    assert r.status_code == 200, r.text
    content: str = r.json()["choices"][0]["message"]["content"]
    return content


def error_of(r: httpx2.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    return error


def test_429_with_retry_after_waits_that_long(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    only = upstream.deployment(Fail(429, retry_after="2"), Answer())
    url = start_gateway({"models": [model("m", only.config("only", timeouts=TIMEOUTS))]})
    r, elapsed = chat(http, url)
    assert answer_of(r) == text_of(0, 5)
    assert r.headers["x-sluicegate-attempts"] == "2"
    assert r.headers["x-sluicegate-deployment"] == "only"
    assert len(only.attempts) == 2
    assert 2.0 <= only.gaps()[0] < 2.0 + SLACK
    assert elapsed < 2.0 + 2 * SLACK


def test_429_with_retry_after_as_an_http_date(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    # An HTTP date has whole seconds: "now + 2 s" is between 1 and 2 s away when read.
    when = formatdate(time.time() + 2, usegmt=True)
    only = upstream.deployment(Fail(429, retry_after=when), Answer())
    url = start_gateway({"models": [model("m", only.config("only", timeouts=TIMEOUTS))]})
    r, elapsed = chat(http, url)
    assert answer_of(r) == text_of(0, 5)
    assert len(only.attempts) == 2
    assert 0.9 <= only.gaps()[0] < 2.0 + SLACK
    assert elapsed < 2.0 + 2 * SLACK


def test_retry_after_beyond_the_cap_fails_over_without_waiting(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    limited = upstream.deployment(Fail(429, retry_after="30"))
    spare = upstream.deployment(Answer())
    url = start_gateway({"models": [model("m", limited.config("limited"), spare.config("spare"))]})
    r, elapsed = chat(http, url)
    assert answer_of(r) == text_of(0, 5)
    assert r.headers["x-sluicegate-deployment"] == "spare"
    assert r.headers["x-sluicegate-attempts"] == "2"
    assert (len(limited.attempts), len(spare.attempts)) == (1, 1)
    assert elapsed < 1.0


def test_retry_after_beyond_the_cap_with_nowhere_else_to_go(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    limited = upstream.deployment(Fail(429, retry_after="30"))
    url = start_gateway({"models": [model("m", limited.config("limited"))]})
    r, elapsed = chat(http, url)
    assert error_of(r, 429)["code"] == "upstream_rate_limited"
    # The caller learns how long the upstream asked for, not a made-up second.
    assert r.headers["retry-after"] == "30"
    assert r.headers["x-sluicegate-attempts"] == "1"
    assert len(limited.attempts) == 1
    assert elapsed < 1.0


def test_persistent_429_without_retry_after_backs_off_with_full_jitter(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    only = upstream.deployment(Fail(429))
    url = start_gateway({"models": [model("m", only.config("only"))]})
    r, elapsed = chat(http, url)
    error = error_of(r, 429)
    assert error["code"] == "upstream_rate_limited"
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["x-sluicegate-attempts"] == "3"
    assert r.headers["x-sluicegate-route"] == "only:429,only:429,only:429"
    assert len(only.attempts) == 3
    # Full jitter: the i-th wait is uniform in [0, min(max, base * 2^i)] = [0, 0.2], [0, 0.4].
    first, second = only.gaps()
    assert first < 0.2 + SLACK
    assert second < 0.4 + SLACK
    assert elapsed < 0.6 + 2 * SLACK


def test_500_once_then_healthy(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    only = upstream.deployment(Fail(500), Answer())
    url = start_gateway({"models": [model("m", only.config("only"))]})
    r, elapsed = chat(http, url)
    assert answer_of(r) == text_of(0, 5)
    assert r.headers["x-sluicegate-attempts"] == "2"
    assert len(only.attempts) == 2
    assert only.gaps()[0] < 0.2 + SLACK
    assert elapsed < 0.2 + 2 * SLACK


def test_persistent_503_gives_up_after_the_attempts(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    only = upstream.deployment(Fail(503, message="overloaded"))
    url = start_gateway({"models": [model("m", only.config("only"))]})
    r, elapsed = chat(http, url)
    assert error_of(r, 503) == {
        "message": "Deployment 'only' is unavailable (HTTP 503): overloaded",
        "type": "service_unavailable",
        "param": None,
        "code": "upstream_unavailable",
    }
    assert r.headers["x-sluicegate-attempts"] == "3"
    assert r.headers["x-sluicegate-route"] == "only:503,only:503,only:503"
    assert len(only.attempts) == 3
    assert all(gap < 0.4 + SLACK for gap in only.gaps())
    assert elapsed < 0.6 + 2 * SLACK


def test_the_time_budget_ends_the_retries(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    only = upstream.deployment(Fail(503))
    retry = {"attempts": 50, "backoff_base": 0.2, "backoff_max": 0.4, "budget": 1.0}
    deployment = only.config("o", breaker={"failures": 100})  # the budget, not the breaker
    url = start_gateway(
        {"models": [{"name": "m", "routing": {"retry": retry}, "deployments": [deployment]}]}
    )
    r, elapsed = chat(http, url)
    assert error_of(r, 503)["code"] == "upstream_unavailable"
    assert r.headers["x-sluicegate-attempts"] == str(len(only.attempts))
    # No wait that would end past the budget is begun: at most 1 s, at least 2 tries
    # (the first wait is at most 0.2 s).
    assert 2 <= len(only.attempts) < 50
    assert only.attempts[-1].at - only.attempts[0].at < 1.0
    assert elapsed < 1.0 + SLACK


def test_reset_before_headers_is_retried(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    only = upstream.deployment(Reset(), Answer())
    url = start_gateway({"models": [model("m", only.config("only"))]})
    r, elapsed = chat(http, url)
    assert answer_of(r) == text_of(0, 5)
    assert r.headers["x-sluicegate-attempts"] == "2"
    assert len(only.attempts) == 2
    assert elapsed < 0.2 + 2 * SLACK


def test_reset_before_headers_goes_to_the_healthy_deployment(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    broken = upstream.deployment(Reset())
    healthy = upstream.deployment(Answer())
    url = start_gateway(
        {"models": [model("m", broken.config("broken"), healthy.config("healthy"))]}
    )
    r, elapsed = chat(http, url)
    assert answer_of(r) == text_of(0, 5)
    assert r.headers["x-sluicegate-deployment"] == "healthy"
    assert r.headers["x-sluicegate-attempts"] == "2"
    assert (len(broken.attempts), len(healthy.attempts)) == (1, 1)
    # Another deployment was free: no backoff before asking it.
    assert healthy.attempts[0].at - broken.attempts[0].at < SLACK
    assert elapsed < 2 * SLACK


def test_silent_deployment_is_left_after_first_byte_timeout(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    silent = upstream.deployment(Silent())
    healthy = upstream.deployment(Answer())
    timeouts = {**TIMEOUTS, "first_byte": 0.5}
    url = start_gateway(
        {
            "models": [
                model(
                    "m",
                    silent.config("silent", timeouts=timeouts),
                    healthy.config("healthy", timeouts=timeouts),
                )
            ]
        }
    )
    r, elapsed = chat(http, url)
    assert answer_of(r) == text_of(0, 5)
    assert r.headers["x-sluicegate-deployment"] == "healthy"
    assert r.headers["x-sluicegate-attempts"] == "2"
    assert (len(silent.attempts), len(healthy.attempts)) == (1, 1)
    # The gateway's clock starts as it sends; the fake notes the request once read.
    assert 0.5 - ARRIVAL <= healthy.attempts[0].at - silent.attempts[0].at < 0.5 + SLACK
    assert elapsed < 0.5 + 2 * SLACK


def test_silent_deployment_is_not_retried(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    silent = upstream.deployment(Silent())
    timeouts = {**TIMEOUTS, "first_byte": 0.5}
    url = start_gateway({"models": [model("m", silent.config("silent", timeouts=timeouts))]})
    r, elapsed = chat(http, url)
    assert error_of(r, 504) == {
        "message": "Deployment 'silent' sent no response within 0.5s.",
        "type": "timeout_error",
        "param": None,
        "code": "upstream_timeout",
    }
    assert r.headers["x-sluicegate-attempts"] == "1"
    assert r.headers["x-sluicegate-route"] == "silent:504"
    assert len(silent.attempts) == 1
    assert 0.5 <= elapsed < 0.5 + 2 * SLACK


CONTEXT = "This model's maximum context length is 8 tokens."


def test_context_length_exceeded_takes_the_context_fallback(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    small = upstream.deployment(Fail(400, code="context_length_exceeded", message=CONTEXT))
    large = upstream.deployment(Answer())
    url = start_gateway(
        {
            "models": [
                model("small", small.config("small-0"), context_fallback="large"),
                model("large", large.config("large-0")),
            ]
        }
    )
    r, elapsed = chat(http, url, "small")
    assert answer_of(r) == text_of(0, 5)
    assert r.json()["model"] == "large"  # what answered, not what was asked for
    assert r.headers["x-sluicegate-model"] == "large"
    assert r.headers["x-sluicegate-deployment"] == "large-0"
    assert (len(small.attempts), len(large.attempts)) == (1, 1)
    assert elapsed < 2 * SLACK


def test_context_length_exceeded_without_a_context_fallback(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    small = upstream.deployment(Fail(400, code="context_length_exceeded", message=CONTEXT))
    url = start_gateway({"models": [model("small", small.config("small-0"))]})
    r, elapsed = chat(http, url, "small")
    assert error_of(r, 400) == {
        "message": CONTEXT,
        "type": "invalid_request_error",
        "param": None,
        "code": "context_length_exceeded",
    }
    assert r.headers["x-sluicegate-attempts"] == "1"
    assert len(small.attempts) == 1
    assert elapsed < 2 * SLACK


POLICY = "Your request was rejected as a result of our safety system: violence."


def test_content_policy_violation_is_passed_on_and_never_retried(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    strict = upstream.deployment(Fail(400, code="content_policy_violation", message=POLICY))
    twin = upstream.deployment(Answer())
    backup = upstream.deployment(Answer())
    url = start_gateway(
        {
            "models": [
                model("m", strict.config("strict"), twin.config("twin"), fallbacks=["backup"]),
                model("backup", backup.config("backup-0")),
            ]
        }
    )
    r, elapsed = chat(http, url)
    assert error_of(r, 400) == {
        "message": POLICY,
        "type": "invalid_request_error",
        "param": None,
        "code": "content_policy_violation",
    }
    assert r.headers["x-sluicegate-attempts"] == "1"
    assert r.headers["x-sluicegate-route"] == "strict:400"
    # Neither the same model's other deployment nor the fallback model gets to answer.
    assert (len(strict.attempts), len(twin.attempts), len(backup.attempts)) == (1, 0, 0)
    assert elapsed < 2 * SLACK


def test_content_policy_violation_through_the_sdk(
    upstream: FaultyUpstream, start_gateway: GatewayFactory
) -> None:
    strict = upstream.deployment(Fail(400, code="content_policy_violation", message=POLICY))
    url = start_gateway({"models": [model("m", strict.config("strict"))]})
    with (
        openai.OpenAI(base_url=url + "/v1", api_key=MASTER_KEY, max_retries=0) as client,
        pytest.raises(openai.BadRequestError) as caught,
    ):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "content_policy_violation"
    assert POLICY in caught.value.message
    assert len(strict.attempts) == 1


def test_retry_after_holds_for_each_deployment_when_all_ask_to_wait(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    first = upstream.deployment(Fail(429, retry_after="1"), Answer())
    second = upstream.deployment(Fail(429, retry_after="1"), Answer())
    url = start_gateway({"models": [model("m", first.config("first"), second.config("second"))]})
    r, elapsed = chat(http, url)
    assert answer_of(r) == text_of(0, 5)
    # Whichever answers, neither was asked again before the second it asked for.
    assert [len(first.attempts), len(second.attempts)].count(2) >= 1
    for deployment in (first, second):
        assert all(gap >= 1.0 for gap in deployment.gaps()), deployment.gaps()
    assert elapsed < 1.0 + 2 * SLACK


def test_a_retry_skips_the_wait_only_by_going_elsewhere(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    # Prefix affinity sends every call with this prompt to one replica; when that replica
    # fails, the retry (which skips its backoff because others are free) must go elsewhere.
    replicas = [upstream.deployment(Answer()) for _ in range(3)]
    routing = {"retry": RETRY, "strategy": "prefix_affinity", "prefix_chars": 16}
    deployments = [r.config(f"replica-{i}") for i, r in enumerate(replicas)]
    url = start_gateway({"models": [{"name": "m", "routing": routing, "deployments": deployments}]})
    assert answer_of(chat(http, url)[0]) == text_of(0, 5)
    [affine] = [r for r in replicas if r.attempts]
    affine.script = [Fail(503)]
    r, elapsed = chat(http, url)
    assert answer_of(r) == text_of(0, 5)
    assert len(affine.attempts) == 2  # the first call and one failed attempt of this one
    assert r.headers["x-sluicegate-attempts"] == "2"
    assert elapsed < 2 * SLACK
