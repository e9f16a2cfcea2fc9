"""Upstream failures: each misbehaviour of the fake upstream reaches the client as the right error.

Before the first byte a failure is an HTTP error; after it, an in-band SSE error event and no
``[DONE]``, so a cut answer never looks complete. Every model here makes one attempt, so each
test sees how one failure is reported; retries and fail-over are tested in test_resilience_*.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionMessageParam

from sluicegate.config.schema import Config
from sluicegate.server.app import create_app
from sluicegate.server.gateway import MasterKey
from tests.conftest import MASTER_KEY, GatewayFactory
from tests.fakes.servers import free_port, running

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
# Generated ids are opaque; the middleware accepts the same alphabet from clients.
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{16,128}$")
TIMEOUTS = {"connect": 1, "first_byte": 1, "stream_idle": 1, "total": 5}
WORDS: list[ChatCompletionMessageParam] = [{"role": "user", "content": "a b c d"}]
ONE_TRY = {"retry": {"attempts": 1}}

# model name → the fake upstream's mode it points at
MODES = {
    "rate": "status-429",
    "boom": "status-500",
    "busy": "status-503",
    "unauth": "status-401",
    "missing": "status-404",
    "upstream-timeout": "status-504",
    "context": "context",
    "slow": "sleep-3",
    "garbage": "garbage",
    "cut": "cut",
    "short": "short",
    "stall": "stall-3",
    "nodone": "nodone",
    "nostream": "nostream",
    "slowbody": "slowbody-3",
}


@pytest.fixture(scope="module")
def gateway(upstream_url: str) -> Iterator[str]:
    """One gateway for the module: each model has one deployment, so tests share no state."""
    models: list[dict[str, Any]] = [
        {
            "name": name,
            "routing": ONE_TRY,
            "deployments": [
                {
                    "provider": "openai",
                    "base_url": f"{upstream_url}/{mode}/v1",
                    "timeouts": TIMEOUTS,
                }
            ],
        }
        for name, mode in MODES.items()
    ]
    dead = {"provider": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1"}
    models.append(
        {"name": "down", "routing": ONE_TRY, "deployments": [{**dead, "timeouts": TIMEOUTS}]}
    )
    rate = {"provider": "openai", "base_url": f"{upstream_url}/status-429/v1"}
    models.append(
        {"name": "rate-embed", "kind": "embedding", "routing": ONE_TRY, "deployments": [rate]}
    )
    app = create_app(Config.model_validate({"models": models}), MasterKey(MASTER_KEY, "test"))
    with running(app) as url:
        yield url


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(timeout=15) as client:
        yield client


@pytest.fixture
def client(gateway: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway + "/v1", api_key=MASTER_KEY, max_retries=0) as c:
        yield c


def chat(http: httpx2.Client, url: str, model: str, **fields: Any) -> httpx2.Response:
    body = {"model": model, "messages": WORDS, **fields}
    return http.post(url + "/v1/chat/completions", json=body, headers=AUTH)


def error_of(r: httpx2.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert REQUEST_ID.match(r.headers["x-request-id"])
    body = r.json()
    assert list(body) == ["error"]
    assert list(body["error"]) == ["message", "type", "param", "code"]
    error: dict[str, Any] = body["error"]
    return error


def raw_stream(http: httpx2.Client, url: str, model: str) -> tuple[httpx2.Response, bytes, float]:
    body = {"model": model, "messages": WORDS, "stream": True}
    started = time.monotonic()
    with http.stream("POST", url + "/v1/chat/completions", json=body, headers=AUTH) as r:
        raw = b"".join(r.iter_bytes())
    return r, raw, time.monotonic() - started


def events(raw: bytes) -> list[Any]:
    assert raw.endswith(b"\n\n"), raw[-80:]
    out: list[Any] = []
    for block in raw.split(b"\n\n")[:-1]:
        assert block.startswith(b"data: "), block
        payload = block.removeprefix(b"data: ")
        out.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return out


def test_rate_limited_keeps_retry_after(http: httpx2.Client, gateway: str) -> None:
    r = chat(http, gateway, "rate")
    assert r.headers["retry-after"] == "7"
    assert error_of(r, 429) == {
        "message": "Deployment 'rate/0' is rate limiting requests: fake upstream says status-429",
        "type": "rate_limit_error",
        "param": None,
        "code": "upstream_rate_limited",
    }


def test_rate_limited_through_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="rate", messages=WORDS)
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "upstream_rate_limited"


def test_rate_limited_before_a_stream_is_plain_http(http: httpx2.Client, gateway: str) -> None:
    r = chat(http, gateway, "rate", stream=True)
    assert r.headers["retry-after"] == "7"
    assert error_of(r, 429)["code"] == "upstream_rate_limited"


def test_upstream_500_is_a_bad_gateway(http: httpx2.Client, gateway: str) -> None:
    assert error_of(chat(http, gateway, "boom"), 502) == {
        "message": "Deployment 'boom/0' failed (HTTP 500): fake upstream says status-500",
        "type": "upstream_error",
        "param": None,
        "code": "upstream_error",
    }


def test_upstream_503_is_unavailable(http: httpx2.Client, gateway: str) -> None:
    assert error_of(chat(http, gateway, "busy"), 503) == {
        "message": "Deployment 'busy/0' is unavailable (HTTP 503): fake upstream says status-503",
        "type": "service_unavailable",
        "param": None,
        "code": "upstream_unavailable",
    }


def test_upstream_504_is_a_timeout(http: httpx2.Client, gateway: str) -> None:
    error = error_of(chat(http, gateway, "upstream-timeout"), 504)
    assert (error["type"], error["code"]) == ("timeout_error", "upstream_timeout")


def test_upstream_refusing_the_gateway_key(http: httpx2.Client, gateway: str) -> None:
    error = error_of(chat(http, gateway, "unauth"), 502)
    assert error["code"] == "upstream_auth_failed"
    assert error["message"].startswith("Deployment 'unauth/0' refused the gateway's credentials")


def test_upstream_404(http: httpx2.Client, gateway: str) -> None:
    error = error_of(chat(http, gateway, "missing"), 502)
    assert error["code"] == "upstream_not_found"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", {"model": "rate", "prompt": "x"}),
        ("/v1/embeddings", {"model": "rate-embed", "input": "x"}),
    ],
)
def test_other_endpoints_map_errors_the_same_way(
    http: httpx2.Client, gateway: str, path: str, body: dict[str, Any]
) -> None:
    r = http.post(gateway + path, json=body, headers=AUTH)
    assert r.headers["retry-after"] == "7"
    assert error_of(r, 429)["code"] == "upstream_rate_limited"


def test_context_length_passes_through(http: httpx2.Client, gateway: str) -> None:
    assert error_of(chat(http, gateway, "context"), 400) == {
        "message": "This model's maximum context length is 8 tokens.",
        "type": "invalid_request_error",
        "param": None,
        "code": "context_length_exceeded",
    }


def test_context_length_through_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="context", messages=WORDS)
    assert caught.value.code == "context_length_exceeded"


def test_connection_refused(http: httpx2.Client, gateway: str) -> None:
    started = time.monotonic()
    assert error_of(chat(http, gateway, "down"), 502) == {
        "message": "Cannot connect to deployment 'down/0'.",
        "type": "upstream_error",
        "param": None,
        "code": "upstream_unreachable",
    }
    assert time.monotonic() - started < 1.0


def test_no_headers_in_time_is_a_504(http: httpx2.Client, gateway: str) -> None:
    started = time.monotonic()
    r = chat(http, gateway, "slow")
    elapsed = time.monotonic() - started
    assert error_of(r, 504) == {
        "message": "Deployment 'slow/0' sent no response within 1s.",
        "type": "timeout_error",
        "param": None,
        "code": "upstream_timeout",
    }
    assert 0.9 <= elapsed < 2.0


def test_body_stalling_after_headers_is_a_504(http: httpx2.Client, gateway: str) -> None:
    started = time.monotonic()
    r = chat(http, gateway, "slowbody")
    elapsed = time.monotonic() - started
    assert error_of(r, 504) == {
        "message": "Deployment 'slowbody/0' did not finish its answer in time.",
        "type": "timeout_error",
        "param": None,
        "code": "upstream_timeout",
    }
    assert 0.9 <= elapsed < 2.0


def test_garbage_body_is_a_bad_gateway(http: httpx2.Client, gateway: str) -> None:
    assert error_of(chat(http, gateway, "garbage"), 502) == {
        "message": "Deployment 'garbage/0' answered with invalid JSON.",
        "type": "upstream_error",
        "param": None,
        "code": "bad_gateway",
    }


def test_cut_stream_ends_with_an_error_event(http: httpx2.Client, gateway: str) -> None:
    r, raw, _ = raw_stream(http, gateway, "cut")
    assert r.status_code == 200
    assert b"[DONE]" not in raw
    *chunks, last = events(raw)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "echo: a"
    assert last == {
        "error": {
            "message": "Deployment 'cut/0' broke off the stream.",
            "type": "upstream_error",
            "param": None,
            "code": "bad_gateway",
            "request_id": r.headers["x-request-id"],
        }
    }


def test_cut_stream_raises_in_the_sdk(client: openai.OpenAI) -> None:
    got: list[str] = []
    stream = client.chat.completions.create(
        model="cut",
        messages=WORDS,
        stream=True,
    )
    with pytest.raises(openai.APIError, match="broke off the stream"):
        for chunk in stream:
            got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == "echo: a"


def test_stream_ended_early_is_not_passed_off_as_complete(
    http: httpx2.Client, gateway: str
) -> None:
    # The upstream closes cleanly mid-answer: no finish_reason, no [DONE].
    r, raw, _ = raw_stream(http, gateway, "short")
    assert r.status_code == 200
    assert b"[DONE]" not in raw
    *chunks, last = events(raw)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "echo: a"
    assert last == {
        "error": {
            "message": "Deployment 'short/0' ended the stream before it was complete.",
            "type": "upstream_error",
            "param": None,
            "code": "bad_gateway",
            "request_id": r.headers["x-request-id"],
        }
    }


def test_stalled_stream_times_out_in_band(http: httpx2.Client, gateway: str) -> None:
    r, raw, elapsed = raw_stream(http, gateway, "stall")
    assert r.status_code == 200
    assert b"[DONE]" not in raw
    *chunks, last = events(raw)
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["", "echo:"]
    assert last["error"]["code"] == "upstream_timeout"
    assert last["error"]["type"] == "timeout_error"
    assert last["error"]["message"] == "Deployment 'stall/0' stalled: no data for 1s."
    assert 0.9 <= elapsed < 2.5


def test_stream_without_done_is_finished_for_the_client(http: httpx2.Client, gateway: str) -> None:
    r, raw, _ = raw_stream(http, gateway, "nodone")
    assert r.status_code == 200
    assert raw.endswith(b"\n\ndata: [DONE]\n\n")
    assert raw.count(b"[DONE]") == 1
    chunks = events(raw)[:-1]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "echo: a b c d"
    assert not any("error" in c for c in chunks)


def test_upstream_ignoring_stream_still_streams(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="nostream",
        messages=WORDS,
        stream=True,
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: a b c d"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.object == "chat.completion.chunk" for c in chunks)


def test_upstream_ignoring_stream_raw(http: httpx2.Client, gateway: str) -> None:
    r, raw, _ = raw_stream(http, gateway, "nostream")
    assert r.headers["content-type"].startswith("text/event-stream")
    assert raw.endswith(b"data: [DONE]\n\n")
    [chunk, done] = events(raw)
    assert done == "[DONE]"
    assert chunk["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": "echo: a b c d"},
            "finish_reason": "stop",
        }
    ]
    assert chunk["usage"]["prompt_tokens"] == 11


def drip_gateway(start_gateway: GatewayFactory, upstream_url: str, mode: str) -> str:
    timeouts = {"connect": 1, "first_byte": 1, "stream_idle": 5, "total": 0.8}
    deployment = {"provider": "openai", "base_url": f"{upstream_url}/{mode}/v1"}
    return start_gateway(
        {
            "models": [
                {
                    "name": "drip",
                    "routing": ONE_TRY,
                    "deployments": [{**deployment, "timeouts": timeouts}],
                }
            ]
        }
    )


def test_total_deadline_ends_a_stream(
    start_gateway: GatewayFactory, upstream_url: str, http: httpx2.Client
) -> None:
    # The upstream idles 1.2 s after its first chunk: within stream_idle, past total.
    url = drip_gateway(start_gateway, upstream_url, "stall-1.2")
    r, raw, elapsed = raw_stream(http, url, "drip")
    assert r.status_code == 200
    last = events(raw)[-1]
    assert last["error"]["code"] == "upstream_timeout"
    assert last["error"]["message"] == "Deployment 'drip/0' did not finish within 0.8s."
    assert elapsed < 2.0


def test_total_deadline_cuts_the_stream_at_the_deadline(
    start_gateway: GatewayFactory, upstream_url: str, http: httpx2.Client
) -> None:
    # Only the role chunk comes at once; the whole answer, with [DONE], arrives in one write
    # 1.2 s in, past the 0.8 s total. No token reached the client before the deadline, so
    # the call fails as a plain 504, and nothing of the late write is passed on.
    url = drip_gateway(start_gateway, upstream_url, "late-1.2")
    r, raw, elapsed = raw_stream(http, url, "drip")
    assert r.status_code == 504
    assert b"[DONE]" not in raw
    assert orjson.loads(raw)["error"]["code"] == "upstream_timeout"
    assert elapsed < 1.1


def test_total_deadline_bounds_a_slow_body(
    start_gateway: GatewayFactory, upstream_url: str, http: httpx2.Client
) -> None:
    # Headers at once, the body's second half 1.2 s later: within stream_idle, past total.
    url = drip_gateway(start_gateway, upstream_url, "slowbody-1.2")
    started = time.monotonic()
    r = chat(http, url, "drip")
    elapsed = time.monotonic() - started
    assert error_of(r, 504)["message"] == "Deployment 'drip/0' did not finish its answer in time."
    assert elapsed < 1.1


def test_health_needs_no_key(http: httpx2.Client, gateway: str) -> None:
    r = http.get(gateway + "/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    assert REQUEST_ID.match(r.headers["x-request-id"])


def ready_gateway(start_gateway: GatewayFactory, upstream_url: str, **extra: str) -> str:
    """'good' on a healthy upstream, 'mixed' with one dead and one good deployment, plus extras."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    deployments = {
        "good": [f"{upstream_url}/ok/v1"],
        "mixed": [dead, f"{upstream_url}/ok/v1"],
        **{name: [base] for name, base in extra.items()},
    }
    return start_gateway(
        {
            "models": [
                {
                    "name": name,
                    "deployments": [
                        {"provider": "openai", "base_url": base, "timeouts": TIMEOUTS}
                        for base in bases
                    ],
                }
                for name, bases in deployments.items()
            ]
        }
    )


def test_ready_when_every_model_has_a_healthy_deployment(
    start_gateway: GatewayFactory, upstream_url: str, http: httpx2.Client
) -> None:
    url = ready_gateway(start_gateway, upstream_url)
    r = http.get(url + "/ready")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ready",
        "unready_models": [],
        "breakers": {"good/0": "closed", "mixed/0": "closed", "mixed/1": "closed"},
        "models": {
            "good": {"healthy": 1, "deployments": {"good/0": True}},
            "mixed": {"healthy": 1, "deployments": {"mixed/0": False, "mixed/1": True}},
        },
    }


def test_not_ready_names_the_models_without_a_healthy_deployment(
    start_gateway: GatewayFactory, upstream_url: str, http: httpx2.Client
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    url = ready_gateway(
        start_gateway, upstream_url, failing=f"{upstream_url}/status-500/v1", closed=closed
    )
    r = http.get(url + "/ready")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "not_ready"
    assert body["unready_models"] == ["closed", "failing"]
    assert body["models"]["failing"] == {"healthy": 0, "deployments": {"failing/0": False}}
    assert body["models"]["closed"] == {"healthy": 0, "deployments": {"closed/0": False}}
    assert body["models"]["good"]["healthy"] == 1
    # /health says the process is alive even when it is not ready.
    assert http.get(url + "/health").status_code == 200
