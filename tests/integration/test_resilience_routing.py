"""Routing over time against upstreams that fail on cue: breakers and fallbacks through an
outage, the accounting of a failed-over call, prefix affinity and the fair queue.

Like test_resilience_calls.py, each test asserts what clients see, which upstream got
how many calls and when, and how long it took; timings are scaled down from the issue's
(a 3 s outage for its 60 s, a 1 s breaker recovery for its 30 s).
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx2
import orjson
import pytest

from sluicegate.config.schema import Config
from sluicegate.server.app import create_app
from sluicegate.server.gateway import Gateway, MasterKey
from tests.conftest import APP_KEY, MASTER_KEY
from tests.fakes.faulty_upstream import Answer, Fail, FaultyUpstream, serving, text_of
from tests.fakes.servers import running

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
FLOOD_KEY = "sk-test-flood-key-0123456789ab"
RETRY = {"attempts": 3, "backoff_base": 0.05, "backoff_max": 0.1}
SLACK = 0.35


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultyUpstream]:
    fake = FaultyUpstream()
    with serving(fake):
        yield fake


@dataclass
class Started:
    url: str
    gateway: Gateway
    log: io.BytesIO

    def log_lines(self) -> list[dict[str, Any]]:
        assert self.gateway.access_log is not None
        self.gateway.access_log.flush()
        return [orjson.loads(line) for line in self.log.getvalue().splitlines()]


Starter = Callable[[list[dict[str, Any]]], Started]


@pytest.fixture
def start() -> Iterator[Starter]:
    """Start a gateway over ``models``; its access log is kept in memory for the test."""
    with ExitStack() as stack:

        def run(models: list[dict[str, Any]]) -> Started:
            keys = [{"name": "app", "key": APP_KEY}, {"name": "flood", "key": FLOOD_KEY}]
            config = Config.model_validate({"auth": {"keys": keys}, "models": models})
            app = create_app(config, MasterKey(MASTER_KEY, "test"))
            gateway: Gateway = app.state.gateway
            log = io.BytesIO()
            assert gateway.access_log is not None
            gateway.access_log.out = log
            return Started(stack.enter_context(running(app)), gateway, log)

        yield run


def model(name: str, *deployments: dict[str, Any], **fields: Any) -> dict[str, Any]:
    routing = {"retry": RETRY, **fields.pop("routing", {})}
    return {"name": name, "routing": routing, "deployments": list(deployments), **fields}


def ask(http: httpx2.Client, url: str, content: str = "hi", **fields: Any) -> httpx2.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": content}], **fields}
    return http.post(url + "/v1/chat/completions", json=body, headers=AUTH)


def test_outage_is_served_by_the_fallback_then_returns_to_the_primary(
    upstream: FaultyUpstream, start: Starter
) -> None:
    primary = upstream.deployment(Fail(503))
    backup = upstream.deployment(Answer())
    breaker = {"failures": 2, "recovery": 1.0}
    gw = start(
        [
            model("m", primary.config("primary", breaker=breaker), fallbacks=["backup"]),
            model("backup", backup.config("backup-0")),
        ]
    )
    served: list[tuple[float, str]] = []
    outage = 3.0
    began = time.monotonic()
    recovered: float | None = None
    with httpx2.Client(timeout=10) as http:
        while time.monotonic() - began < outage + 2.5:
            if recovered is None and time.monotonic() - began >= outage:
                primary.script = [Answer()]
                recovered = time.monotonic()
            r = ask(http, gw.url)
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] == text_of(0, 5)
            served.append((time.monotonic(), r.headers["x-sluicegate-deployment"]))
            time.sleep(0.05)
    assert recovered is not None
    during = [name for at, name in served if at < recovered]
    assert len(during) >= 10
    assert set(during) == {"backup-0"}
    # The breaker keeps the dead primary from being asked on every call: two failures
    # open it, then one half-open probe per recovery period.
    assert len([a for a in primary.attempts if a.at < recovered]) <= 2 + outage / 1.0 + 1
    # Back on the primary within a recovery period (and a probe) of its return, and
    # there to stay.
    back = next(at for at, name in served if at >= recovered and name == "primary")
    assert back - recovered < 1.0 + 2 * SLACK
    assert {name for at, name in served if at > back} == {"primary"}


def test_breaker_state_in_ready_and_in_the_refusal(
    upstream: FaultyUpstream, start: Starter
) -> None:
    broken = upstream.deployment(Fail(503))
    breaker = {"failures": 2, "recovery": 1.0}
    gw = start([model("m", broken.config("broken", breaker=breaker))])
    with httpx2.Client(timeout=10) as http:
        ready = http.get(gw.url + "/ready").json()
        assert ready["breakers"] == {"broken": "closed"}
        r = ask(http, gw.url)
        # Two upstream failures opened the breaker; the third attempt found nobody to ask,
        # and the caller hears of the failure it met rather than of "nobody left".
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "upstream_unavailable"
        assert len(broken.attempts) == 2
        route = r.headers["x-sluicegate-route"]
        assert route == "broken:503,broken:503,m:no_healthy_deployment"
        ready = http.get(gw.url + "/ready")
        assert ready.json()["breakers"] == {"broken": "open"}
        assert ready.status_code == 503
        # While open, calls are refused at once, saying why and for how long.
        started = time.monotonic()
        r = ask(http, gw.url)
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "no_healthy_deployment"
        assert "broken breaker open" in r.json()["error"]["message"]
        assert r.headers["retry-after"] == "1"
        assert r.headers["x-sluicegate-route"] == "m:no_healthy_deployment"
        assert time.monotonic() - started < SLACK
        assert len(broken.attempts) == 2


def test_attempts_header_counts_upstream_attempts_only(
    upstream: FaultyUpstream, start: Starter
) -> None:
    broken = upstream.deployment(Fail(503))
    gw = start([model("m", broken.config("broken", breaker={"failures": 2}))])
    with httpx2.Client(timeout=10) as http:
        r = ask(http, gw.url)
    assert len(broken.attempts) == 2
    assert r.headers["x-sluicegate-attempts"] == "2"


@pytest.mark.parametrize("stream", [False, True])
def test_a_failed_over_call_is_accounted_to_what_answered(
    upstream: FaultyUpstream, start: Starter, stream: bool
) -> None:
    primary = upstream.deployment(Fail(503))
    backup = upstream.deployment(Answer(tokens=4, prompt_tokens=7))
    gw = start(
        [
            model("m", primary.config("primary"), fallbacks=["backup"]),
            model("backup", backup.config("backup-0")),
        ]
    )
    fields: dict[str, Any] = (
        {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
    )
    with httpx2.Client(timeout=10) as http:
        r = ask(http, gw.url, **fields)
    assert r.status_code == 200, r.text
    assert r.headers["x-sluicegate-model"] == "backup"
    assert r.headers["x-sluicegate-deployment"] == "backup-0"
    assert r.headers["x-sluicegate-attempts"] == "4"
    assert (len(primary.attempts), len(backup.attempts)) == (3, 1)
    if stream:
        chunks = [orjson.loads(e[6:]) for e in r.content.split(b"\n\n")[:-2]]
        assert r.content.endswith(b"data: [DONE]\n\n")
        assert {c["model"] for c in chunks} == {"backup"}
        usage = chunks[-1]["usage"]
    else:
        assert r.json()["model"] == "backup"
        usage = r.json()["usage"]
    assert usage == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}
    # One line, one count for the call: the failed attempts are not billed.
    [line] = [x for x in gw.log_lines() if x["request_id"] == r.headers["x-request-id"]]
    assert (line["deployment"], line["status"], line["error"]) == ("backup-0", 200, None)
    assert (line["prompt_tokens"], line["completion_tokens"]) == (7, 4)
    assert len(gw.log_lines()) == 1
    labels = {"route": "chat", "model": "m", "deployment": "backup-0", "org": "-", "status": "200"}
    registry = gw.gateway.metrics.registry
    assert registry.get_sample_value("sluicegate_requests_total", labels) == 1


SYSTEM = "You are a careful assistant for the billing team. " * 4  # 204 characters


def affinity_model(upstream: FaultyUpstream, seconds: float) -> tuple[list[Any], dict[str, Any]]:
    replicas = [upstream.deployment(Answer(head_delay=seconds)) for _ in range(3)]
    group = model(
        "m",
        *(r.config(f"replica-{i}") for i, r in enumerate(replicas)),
        routing={"strategy": "prefix_affinity", "prefix_chars": 128},
    )
    return replicas, group


def chat_with(system: str, user: str) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return {"model": "m", "messages": messages}


def test_prefix_affinity_keeps_a_shared_prompt_on_one_replica(
    upstream: FaultyUpstream, start: Starter
) -> None:
    replicas, group = affinity_model(upstream, 0.0)
    gw = start([group])
    with httpx2.Client(timeout=10) as http:
        for i in range(30):
            body = chat_with(SYSTEM, f"question {i}")
            assert http.post(gw.url + "/v1/chat/completions", json=body, headers=AUTH).is_success
        shared = [len(r.attempts) for r in replicas]
        assert sorted(shared) == [0, 0, 30]
        for i in range(30):
            body = chat_with(f"System prompt number {i}: " + SYSTEM, "same question")
            assert http.post(gw.url + "/v1/chat/completions", json=body, headers=AUTH).is_success
    spread = [len(r.attempts) - before for r, before in zip(replicas, shared, strict=True)]
    assert sum(spread) == 30
    assert min(spread) >= 4, spread


def test_prefix_affinity_spills_over_when_its_replica_is_loaded(
    upstream: FaultyUpstream, start: Starter
) -> None:
    replicas, group = affinity_model(upstream, 0.5)
    gw = start([group])
    url = gw.url + "/v1/chat/completions"
    with httpx2.Client(timeout=10) as http:
        assert http.post(url, json=chat_with(SYSTEM, "alone"), headers=AUTH).is_success
    [affine] = [r for r in replicas if r.attempts]

    async def burst() -> list[httpx2.Response]:
        async with httpx2.AsyncClient(timeout=10) as http:
            calls = [
                http.post(url, json=chat_with(SYSTEM, f"q{i}"), headers=AUTH) for i in range(12)
            ]
            return await asyncio.gather(*calls)

    started = time.monotonic()
    answers = asyncio.run(burst())
    elapsed = time.monotonic() - started
    assert all(r.status_code == 200 for r in answers)
    counts = [len(r.attempts) - (r is affine) for r in replicas]
    assert sum(counts) == 12
    # Bounded load (factor 1.25): no replica carries more than 1.25 x the mean + 1 at
    # once, so the burst spills over; the affine replica still takes the most.
    assert max(counts) <= 1.25 * 12 / 3 + 1, counts
    assert len(affine.attempts) - 1 == max(counts), counts
    assert elapsed < 0.5 + 1.0  # all in flight at once, none queued


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (at most 5 s) for ``condition``, which another thread makes true."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what}: not in time")


def waiting(gw: Started) -> int:
    return len(gw.gateway.router.groups["m"].queue)


def queued_model(upstream: FaultyUpstream, seconds: float, **queue: Any) -> tuple[Any, Any]:
    slow = upstream.deployment(Answer(head_delay=seconds))
    group = model(
        "m", slow.config("slow", max_concurrency=1), routing={"queue": {"size": 100, **queue}}
    )
    return slow, group


def test_a_flooding_tenant_does_not_starve_another(
    upstream: FaultyUpstream, start: Starter
) -> None:
    service = 0.15
    slow, group = queued_model(upstream, service)
    gw = start([group])
    url = gw.url + "/v1/chat/completions"
    done: list[tuple[str, float]] = []

    async def call(http: httpx2.AsyncClient, key: str, label: str) -> None:
        body = {"model": "m", "messages": [{"role": "user", "content": label}]}
        r = await http.post(url, json=body, headers={"authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
        done.append((label, time.monotonic()))

    async def main() -> float:
        limits = httpx2.Limits(max_connections=40)
        async with httpx2.AsyncClient(timeout=30, limits=limits) as http:
            flood = [asyncio.create_task(call(http, FLOOD_KEY, f"a{i}")) for i in range(20)]
            await until(lambda: waiting(gw) >= 15, "A's burst queues up")
            b_sent = time.monotonic()
            await asyncio.gather(*flood, call(http, APP_KEY, "b0"), call(http, APP_KEY, "b1"))
            return b_sent

    started = time.monotonic()
    b_sent = asyncio.run(main())
    elapsed = time.monotonic() - started
    order = [label for label, _ in done]
    assert len(order) == 22
    # B's calls finish long before the flood drains: at least 6 of A's finish after both.
    assert max(order.index("b0"), order.index("b1")) < len(order) - 6, order
    arrived = [a.body["messages"][0]["content"] for a in slow.attempts]
    after_b = [label for a, label in zip(slow.attempts, arrived, strict=True) if a.at > b_sent]
    # Served within a few grants of being sent, not behind A's backlog of 15 or more.
    # (A's calls reach the upstream in no particular order; their labels say nothing.)
    assert {"b0", "b1"} <= set(after_b[:6]), after_b
    b_latency = max(at for label, at in done if label.startswith("b")) - b_sent
    assert b_latency < 8 * service + 2 * SLACK
    assert elapsed < 22 * service + 3.0


def test_a_full_queue_refuses_at_once(upstream: FaultyUpstream, start: Starter) -> None:
    slow, group = queued_model(upstream, 0.6, size=2)
    gw = start([group])
    url = gw.url + "/v1/chat/completions"
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

    async def main() -> tuple[httpx2.Response, float, list[httpx2.Response]]:
        async with httpx2.AsyncClient(timeout=10) as http:
            first = asyncio.create_task(http.post(url, json=body, headers=AUTH))
            await until(lambda: len(slow.attempts) == 1, "the first call is served")
            queued = [asyncio.create_task(http.post(url, json=body, headers=AUTH)) for _ in "ab"]
            await until(lambda: waiting(gw) == 2, "two calls wait")
            started = time.monotonic()
            refused = await http.post(url, json=body, headers=AUTH)
            took = time.monotonic() - started
            return refused, took, list(await asyncio.gather(first, *queued))

    refused, took, served = asyncio.run(main())
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "queue_full"
    assert int(refused.headers["retry-after"]) >= 1
    assert took < SLACK
    assert [r.status_code for r in served] == [200, 200, 200]
    assert len(slow.attempts) == 3


def test_a_queue_timeout_refuses_with_retry_after(upstream: FaultyUpstream, start: Starter) -> None:
    slow, group = queued_model(upstream, 1.0, timeout=0.3)
    gw = start([group])
    url = gw.url + "/v1/chat/completions"
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

    async def main() -> tuple[httpx2.Response, float, httpx2.Response]:
        async with httpx2.AsyncClient(timeout=10) as http:
            first = asyncio.create_task(http.post(url, json=body, headers=AUTH))
            await until(lambda: len(slow.attempts) == 1, "the first call is served")
            started = time.monotonic()
            refused = await http.post(url, json=body, headers=AUTH)
            return refused, time.monotonic() - started, await first

    refused, took, served = asyncio.run(main())
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "queue_timeout"
    assert int(refused.headers["retry-after"]) >= 1
    assert 0.3 <= took < 0.3 + SLACK
    assert served.status_code == 200
    assert len(slow.attempts) == 1


def test_interactive_calls_go_before_queued_batch_calls(
    upstream: FaultyUpstream, start: Starter
) -> None:
    slow, group = queued_model(upstream, 0.1)
    gw = start([group])
    url = gw.url + "/v1/chat/completions"

    async def call(http: httpx2.AsyncClient, label: str, priority: str) -> None:
        body = {"model": "m", "messages": [{"role": "user", "content": label}]}
        headers = {**AUTH, "x-sluicegate-priority": priority}
        assert (await http.post(url, json=body, headers=headers)).status_code == 200

    async def main() -> int:
        async with httpx2.AsyncClient(timeout=30, limits=httpx2.Limits(max_connections=20)) as h:
            batch = [asyncio.create_task(call(h, f"batch{i}", "batch")) for i in range(10)]
            await until(lambda: waiting(gw) >= 7, "the batch calls queue up")
            behind = waiting(gw)
            await asyncio.gather(*batch, call(h, "now", "interactive"))
            return behind

    behind = asyncio.run(main())
    arrived = [a.body["messages"][0]["content"] for a in slow.attempts]
    # Sent behind `behind` waiting batch calls, it goes next: before it, only the batch
    # calls that had their slot already, and at most one woken as it arrived.
    assert arrived.index("now") <= 10 - behind + 1, (behind, arrived)
