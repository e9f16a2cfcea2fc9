"""Every call goes through the pipeline: no route skips authentication, stages keep their order."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from starlette.routing import Route

from sluicegate.config.schema import Config
from sluicegate.pipeline.admit import Admit
from sluicegate.pipeline.authenticate import Authenticate
from sluicegate.pipeline.drain import DrainGate
from sluicegate.pipeline.guard import Concurrency
from sluicegate.pipeline.inspect import Inspect
from sluicegate.pipeline.parse import Parse
from sluicegate.pipeline.record import Record
from sluicegate.pipeline.route import Route as RouteStage
from sluicegate.server.app import create_app
from sluicegate.server.gateway import Gateway, MasterKey
from sluicegate.server.routes import ROUTES
from tests.conftest import MASTER_KEY
from tests.fakes.servers import running

PUBLIC = {"/health", "/ready"}
AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
# Valid for every endpoint that takes a body, so only the missing key can refuse it.
ANY_BODY = {
    "model": "fake-chat",
    "messages": [{"role": "user", "content": "hi"}],
    "prompt": "hi",
    "input": "hi",
    "max_tokens": 16,
}


def guarded() -> list[tuple[str, str]]:
    pairs = []
    for route in ROUTES:
        assert isinstance(route, Route)
        if route.path in PUBLIC:
            continue
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                pairs.append((method, route.path))
    return pairs


def test_every_route_is_enumerated() -> None:
    # Guards against ROUTES changing shape so that the tests below silently check nothing.
    assert ("POST", "/v1/chat/completions") in guarded()
    assert ("GET", "/v1/models") in guarded()
    assert {r.path for r in ROUTES if isinstance(r, Route)} >= PUBLIC


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(timeout=10) as client:
        yield client


def request(http: httpx2.Client, method: str, url: str, **kw: Any) -> httpx2.Response:
    if method == "GET":
        kw.pop("json", None)
        kw.pop("content", None)
    return http.request(method, url, **kw)


@pytest.mark.parametrize(("method", "path"), guarded())
def test_route_needs_a_key(
    http: httpx2.Client, shared_gateway_url: str, seen: list[dict[str, Any]], method: str, path: str
) -> None:
    r = request(http, method, shared_gateway_url + path, json=ANY_BODY)
    assert r.status_code == 401, r.text
    assert "error" in r.json()  # OpenAI's or, on /v1/messages, Anthropic's error shape
    assert "No API key provided" in r.text
    assert r.headers["x-request-id"]
    assert seen == []


@pytest.mark.parametrize(("method", "path"), guarded())
def test_route_refuses_a_wrong_key(
    http: httpx2.Client, shared_gateway_url: str, method: str, path: str
) -> None:
    headers = {"authorization": "Bearer sk-not-a-key-0123456789"}
    r = request(http, method, shared_gateway_url + path, json=ANY_BODY, headers=headers)
    assert r.status_code == 401, r.text
    assert "Incorrect API key provided." in r.text


@pytest.mark.parametrize(("method", "path"), guarded())
def test_route_checks_the_key_before_the_body(
    http: httpx2.Client, shared_gateway_url: str, method: str, path: str
) -> None:
    r = request(http, method, shared_gateway_url + path, content=b"{not json")
    assert r.status_code == 401, r.text
    assert "No API key provided" in r.text


@pytest.mark.parametrize("path", sorted(PUBLIC))
def test_probes_need_no_key(http: httpx2.Client, shared_gateway_url: str, path: str) -> None:
    r = http.get(shared_gateway_url + path)
    assert r.status_code == 200, r.text


def config(upstream_url: str) -> Config:
    return Config.model_validate(
        {
            "server": {"access_log": False},
            "models": [
                {
                    "name": "fake-chat",
                    "deployments": [{"provider": "openai", "base_url": f"{upstream_url}/ok/v1"}],
                }
            ],
        }
    )


def test_stages_in_documented_order(upstream_url: str) -> None:
    app = create_app(config(upstream_url), MasterKey(MASTER_KEY, "test"))
    gw = app.state.gateway
    assert isinstance(gw, Gateway)
    stages = gw.pipeline.stages
    assert [s.name for s in stages] == [
        "record",
        "drain",
        "authenticate",
        "concurrency",
        "parse",
        "route",
        "admit",
        "inspect",
    ]
    assert [type(s) for s in stages] == [
        Record,
        DrainGate,
        Authenticate,
        Concurrency,
        Parse,
        RouteStage,
        Admit,
        Inspect,
    ]


def test_record_sees_refusals_and_finished_streams(upstream_url: str) -> None:
    app = create_app(config(upstream_url), MasterKey(MASTER_KEY, "test"))
    gw = app.state.gateway
    chat = {"model": "fake-chat", "messages": [{"role": "user", "content": "a b"}]}
    with running(app) as url, httpx2.Client(timeout=10) as http:
        assert http.post(url + "/v1/chat/completions", json=chat).status_code == 401
        unknown = {**chat, "model": "nope"}
        r = http.post(url + "/v1/chat/completions", json=unknown, headers=AUTH)
        assert r.status_code == 404
        assert http.get(url + "/v1/models", headers=AUTH).status_code == 200
        streamed = {**chat, "stream": True}
        with http.stream("POST", url + "/v1/chat/completions", json=streamed, headers=AUTH) as s:
            assert s.status_code == 200
            assert b"".join(s.iter_bytes()).endswith(b"data: [DONE]\n\n")
        assert gw.counters.in_flight == 0
        assert _requests(gw) == {
            # Refused before its body was read: the model it asked for is never looked at.
            ("chat", "-", "-", "401"): 1,
            ("chat", "fake-chat", "fake-chat/0", "200"): 1,
            # A model no config names is not a label value.
            ("chat", "-", "-", "404"): 1,
            ("models", "-", "-", "200"): 1,
        }


def test_client_leaving_a_stream_ends_the_call_at_once(upstream_url: str) -> None:
    # The upstream goes quiet for 3 s after its first chunk and stream_idle is 5 s: only the
    # client's hang-up can end this call within the test's second.
    timeouts = {"connect": 1, "first_byte": 1, "stream_idle": 5, "total": 10}
    deployment = {"provider": "openai", "base_url": f"{upstream_url}/stall-3/v1"}
    raw = {
        "server": {"access_log": False},
        "models": [{"name": "quiet", "deployments": [{**deployment, "timeouts": timeouts}]}],
    }
    app = create_app(Config.model_validate(raw), MasterKey(MASTER_KEY, "test"))
    counters = app.state.gateway.counters
    body = {"model": "quiet", "messages": [{"role": "user", "content": "a b"}], "stream": True}
    with running(app) as url, httpx2.Client(timeout=10) as http:
        with http.stream("POST", url + "/v1/chat/completions", json=body, headers=AUTH) as r:
            assert r.status_code == 200
            chunks = r.iter_bytes()  # held: dropping the generator would close the response
            next(chunks)
            assert counters.in_flight == 1
        deadline = time.monotonic() + 1.0
        while counters.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)
        assert counters.in_flight == 0
        assert _requests(app.state.gateway) == {("chat", "quiet", "quiet/0", "200"): 1}


def _requests(gw: Any) -> dict[tuple[str, ...], float]:
    """sluicegate_requests_total by (route, model, deployment, status), as /metrics has it."""
    return {
        (s.labels["route"], s.labels["model"], s.labels["deployment"], s.labels["status"]): s.value
        for family in gw.metrics.registry.collect()
        if family.name == "sluicegate_requests"
        for s in family.samples
        if s.name == "sluicegate_requests_total"
    }
