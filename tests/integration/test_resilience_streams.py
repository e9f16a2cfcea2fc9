"""Streams against upstreams that fail on cue: never silently cut.

Before the first chunk reaches the client, any failure fails over unseen. After it, a
deployment that accepts assistant prefill continues from the text already sent, so the
client reads one seamless answer; without one, the stream ends with an in-band error
event and no ``[DONE]``. Each test asserts the client's bytes (raw and through the openai
SDK), the attempts each upstream saw, and the time taken.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from tests.conftest import MASTER_KEY, GatewayFactory
from tests.fakes.faulty_upstream import Answer, Fail, FaultyUpstream, Scripted, serving, text_of

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
RETRY = {"attempts": 3, "backoff_base": 0.05, "backoff_max": 0.1}
#: first_byte and stream_idle at 0.5 s: the silent and stalled upstreams are found fast.
TIMEOUTS = {"connect": 1.0, "first_byte": 0.5, "stream_idle": 0.5, "total": 10.0}
SLACK = 0.35
#: How much later than the gateway sent it a request may be noted as arrived.
ARRIVAL = 0.05
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultyUpstream]:
    fake = FaultyUpstream()
    with serving(fake):
        yield fake


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(timeout=20) as client:
        yield client


def deployment(fake: Scripted, deployment_id: str, **fields: Any) -> dict[str, Any]:
    return fake.config(deployment_id, timeouts=TIMEOUTS, **fields)


def model(name: str, *deployments: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": name, "routing": {"retry": RETRY}, "deployments": list(deployments), **fields}


def with_backup(
    start_gateway: GatewayFactory, primary: Scripted, backup: Scripted, **backup_fields: Any
) -> str:
    """Model 'm' on ``primary``, falling back to model 'backup' on ``backup``."""
    return start_gateway(
        {
            "models": [
                model("m", deployment(primary, "primary"), fallbacks=["backup"]),
                model("backup", deployment(backup, "backup-0", **backup_fields)),
            ]
        }
    )


def stream(
    http: httpx2.Client, url: str, **fields: Any
) -> tuple[httpx2.Response, list[Any], float]:
    """POST a streamed chat call; the response, its events ("[DONE]" or decoded JSON), seconds."""
    body = {"model": "m", "messages": HI, "stream": True, **fields}
    started = time.monotonic()
    with http.stream("POST", url + "/v1/chat/completions", json=body, headers=AUTH) as r:
        raw = b"".join(r.iter_bytes())
    elapsed = time.monotonic() - started
    assert r.status_code == 200, raw
    assert raw.endswith(b"\n\n"), raw[-80:]
    events: list[Any] = []
    for block in raw.split(b"\n\n")[:-1]:
        assert block.startswith(b"data: "), block
        payload = block.removeprefix(b"data: ")
        events.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return r, events, elapsed


def text_in(events: list[Any]) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for event in events
        if isinstance(event, dict)
        for choice in event.get("choices", [])
    )


def whole(events: list[Any]) -> str:
    """The text of a stream that must be complete: [DONE] once, at the end; no error."""
    assert events[-1] == "[DONE]"
    assert events.count("[DONE]") == 1
    assert not any(isinstance(e, dict) and "error" in e for e in events), events
    return text_in(events)


def cut(events: list[Any]) -> tuple[str, dict[str, Any]]:
    """The text of a stream that must end in an error event, and that error."""
    assert "[DONE]" not in events
    *chunks, last = events
    assert not any("error" in c for c in chunks)
    error: dict[str, Any] = last["error"]
    return text_in(chunks), error


def test_a_late_first_token_fails_over_to_the_fallback(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    late = upstream.deployment(Answer(first_delay=20))
    backup = upstream.deployment(Answer())
    url = with_backup(start_gateway, late, backup)
    r, events, elapsed = stream(http, url)
    assert whole(events) == text_of(0, 5)
    assert r.headers["x-sluicegate-model"] == "backup"
    assert r.headers["x-sluicegate-deployment"] == "backup-0"
    assert r.headers["x-sluicegate-attempts"] == "2"
    assert {e["model"] for e in events[:-1]} == {"backup"}
    # The slow deployment is asked once, then left after first_byte (0.5 s).
    assert (len(late.attempts), len(backup.attempts)) == (1, 1)
    # The gateway's clock starts as it sends; the fake notes the request once read.
    assert 0.5 - ARRIVAL <= backup.attempts[0].at - late.attempts[0].at < 0.5 + SLACK
    assert elapsed < 0.5 + 2 * SLACK


def test_a_late_first_token_after_an_early_role_chunk_fails_over(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    late = upstream.deployment(Answer(first_delay=20, role_at_once=True))
    backup = upstream.deployment(Answer())
    url = with_backup(start_gateway, late, backup)
    r, events, elapsed = stream(http, url)
    assert whole(events) == text_of(0, 5)
    assert r.headers["x-sluicegate-model"] == "backup"
    assert elapsed < 0.5 + 2 * SLACK


def test_a_cut_stream_without_a_prefill_fallback_ends_in_an_error_event(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    primary = upstream.deployment(Answer(tokens=60, cut_after=40))
    backup = upstream.deployment(Answer(tokens=60))  # a fallback, but no prefill
    url = with_backup(start_gateway, primary, backup)
    r, events, elapsed = stream(http, url)
    text, error = cut(events)
    assert text == text_of(0, 40)
    assert error == {
        "message": "Deployment 'primary' broke off the stream.",
        "type": "upstream_error",
        "param": None,
        "code": "bad_gateway",
        "request_id": r.headers["x-request-id"],
    }
    assert (len(primary.attempts), len(backup.attempts)) == (1, 0)
    assert elapsed < 2 * SLACK


def test_a_cut_stream_raises_in_the_sdk(
    upstream: FaultyUpstream, start_gateway: GatewayFactory
) -> None:
    primary = upstream.deployment(Answer(tokens=60, cut_after=40))
    url = start_gateway({"models": [model("m", deployment(primary, "primary"))]})
    got: list[str] = []
    with openai.OpenAI(base_url=url + "/v1", api_key=MASTER_KEY, max_retries=0) as client:
        chunks = client.chat.completions.create(model="m", messages=HI, stream=True)
        with pytest.raises(openai.APIError, match="broke off the stream"):
            for chunk in chunks:
                got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == text_of(0, 40)


@pytest.mark.parametrize(
    "fault",
    [Answer(tokens=60, cut_after=40), Answer(tokens=60, stall_after=40, stall=30)],
    ids=["cut", "stalled"],
)
def test_a_broken_stream_is_continued_by_a_prefill_fallback(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client, fault: Answer
) -> None:
    primary = upstream.deployment(fault)
    backup = upstream.deployment(Answer(tokens=60, prompt_tokens=50))
    url = with_backup(start_gateway, primary, backup, accepts_prefill=True)
    options = {"stream_options": {"include_usage": True}}
    r, events, elapsed = stream(http, url, temperature=0.5, **options)
    assert whole(events) == text_of(0, 60)
    assert r.headers["x-sluicegate-deployment"] == "primary"  # sent before the break
    assert events[-2]["usage"] == {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}
    assert (len(primary.attempts), len(backup.attempts)) == (1, 1)
    sent = backup.attempts[0].body
    assert sent == {
        "model": "backup",
        "messages": [*HI, {"role": "assistant", "content": text_of(0, 40)}],
        "stream": True,
        "temperature": 0.5,
        "continue_final_message": True,
        "add_generation_prompt": False,
        **options,
    }
    # A stall is noticed after stream_idle; a cut at once.
    assert elapsed < (0.5 if fault.stall_after else 0) + 2 * SLACK


def test_a_prefill_continuation_reads_as_one_answer_in_the_sdk(
    upstream: FaultyUpstream, start_gateway: GatewayFactory
) -> None:
    primary = upstream.deployment(Answer(tokens=60, cut_after=40))
    twin = upstream.deployment(Answer(tokens=60))
    # The prefill deployment is the same model's second one, not a fallback model.
    url = start_gateway(
        {
            "models": [
                model(
                    "m",
                    deployment(primary, "primary"),
                    deployment(twin, "twin", accepts_prefill=True),
                )
            ]
        }
    )
    with openai.OpenAI(base_url=url + "/v1", api_key=MASTER_KEY, max_retries=0) as client:
        chunks = list(client.chat.completions.create(model="m", messages=HI, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text_of(0, 60)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert (len(primary.attempts), len(twin.attempts)) == (1, 1)
    assert twin.attempts[0].body["messages"][-1] == {
        "role": "assistant",
        "content": text_of(0, 40),
    }


def test_a_refused_prefill_never_hides_the_original_failure(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    primary = upstream.deployment(Answer(tokens=60, cut_after=40))
    picky = upstream.deployment(
        Fail(400, code="invalid_request", message="assistant prefill is not supported")
    )
    url = with_backup(start_gateway, primary, picky, accepts_prefill=True)
    _, events, elapsed = stream(http, url)
    text, error = cut(events)
    assert text == text_of(0, 40)
    assert error["message"] == "Deployment 'primary' broke off the stream."
    assert error["code"] == "bad_gateway"
    assert "prefill" not in str(events)
    assert (len(primary.attempts), len(picky.attempts)) == (1, 1)
    assert elapsed < 2 * SLACK


def test_a_stalled_stream_ends_in_an_error_event(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    stalled = upstream.deployment(Answer(tokens=10, stall_after=3, stall=30))
    url = start_gateway({"models": [model("m", deployment(stalled, "stalled"))]})
    _, events, elapsed = stream(http, url)
    text, error = cut(events)
    assert text == text_of(0, 3)
    assert error["code"] == "upstream_timeout"
    assert error["message"] == "Deployment 'stalled' stalled: no data for 0.5s."
    assert len(stalled.attempts) == 1
    assert 0.5 <= elapsed < 0.5 + 2 * SLACK


def test_a_malformed_chunk_is_skipped(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    sloppy = upstream.deployment(Answer(tokens=10, malformed_after=5))
    url = start_gateway({"models": [model("m", deployment(sloppy, "sloppy"))]})
    _, events, elapsed = stream(http, url)
    assert whole(events) == text_of(0, 10)
    with openai.OpenAI(base_url=url + "/v1", api_key=MASTER_KEY, max_retries=0) as client:
        chunks = list(client.chat.completions.create(model="m", messages=HI, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text_of(0, 10)
    assert len(sloppy.attempts) == 2
    assert elapsed < 2 * SLACK


def test_a_complete_stream_without_done_is_finished_at_once(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    forgetful = upstream.deployment(Answer(tokens=5, done=False))
    url = start_gateway({"models": [model("m", deployment(forgetful, "forgetful"))]})
    _, events, elapsed = stream(http, url, stream_options={"include_usage": True})
    assert whole(events) == text_of(0, 5)
    assert events[-2]["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    assert len(forgetful.attempts) == 1
    assert elapsed < 2 * SLACK


def test_a_complete_stream_left_open_without_done_is_finished_at_once(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    lingering = upstream.deployment(Answer(tokens=5, done=False, hold=30))
    url = start_gateway({"models": [model("m", deployment(lingering, "lingering"))]})
    _, events, elapsed = stream(http, url, stream_options={"include_usage": True})
    assert whole(events) == text_of(0, 5)
    assert elapsed < 0.5


@pytest.fixture
def process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A fake upstream in its own process: a 60-token stream, 50 ms per token."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.faulty_upstream", "--tokens", "60", "--gap", "0.05"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready "), line
        yield proc, line.split()[1]
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_an_upstream_process_killed_mid_stream(
    upstream: FaultyUpstream,
    start_gateway: GatewayFactory,
    http: httpx2.Client,
    process: tuple[subprocess.Popen[str], str],
) -> None:
    proc, base = process
    other = upstream.deployment(Answer())
    url = start_gateway(
        {
            "models": [
                model("m", Scripted(base + "/v1", []).config("doomed", timeouts=TIMEOUTS)),
                model("other", deployment(other, "other-0")),
            ]
        }
    )
    body = {"model": "m", "messages": HI, "stream": True}
    received = b""
    killed = 0.0
    with http.stream("POST", url + "/v1/chat/completions", json=body, headers=AUTH) as r:
        assert r.status_code == 200
        for piece in r.iter_bytes():
            received += piece
            if not killed and received.count(b'"content":"t') >= 10:
                os.kill(proc.pid, signal.SIGKILL)
                killed = time.monotonic()
    assert killed, "the stream ended before the kill"
    ended = time.monotonic() - killed
    assert b"[DONE]" not in received
    *chunks, last = [orjson.loads(b[6:]) for b in received.split(b"\n\n")[:-1]]
    assert text_in(chunks) == text_of(0, len(chunks) - 1)
    assert 10 <= len(chunks) - 1 < 60
    assert last["error"]["message"] == "Deployment 'doomed' broke off the stream."
    assert ended < SLACK
    # The gateway carries on: another model answers, and it is still alive.
    r = http.post(
        url + "/v1/chat/completions", json={"model": "other", "messages": HI}, headers=AUTH
    )
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == text_of(0, 5)
    assert http.get(url + "/health").status_code == 200


TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {"name": "search", "parameters": {"type": "object", "properties": {}}},
    }
]


def test_a_whole_tool_call_stream(upstream: FaultyUpstream, start_gateway: GatewayFactory) -> None:
    caller = upstream.deployment(Answer(tokens=6))
    url = start_gateway({"models": [model("m", deployment(caller, "caller"))]})
    with openai.OpenAI(base_url=url + "/v1", api_key=MASTER_KEY, max_retries=0) as client:
        chunks = list(
            client.chat.completions.create(model="m", messages=HI, stream=True, tools=TOOLS)
        )
    arguments = "".join(
        call.function.arguments or ""
        for c in chunks
        for call in c.choices[0].delta.tool_calls or []
        if call.function
    )
    assert orjson.loads(arguments) == {"q": text_of(0, 6)}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_a_cut_tool_call_is_never_glued_to_a_fresh_one(
    upstream: FaultyUpstream, start_gateway: GatewayFactory, http: httpx2.Client
) -> None:
    primary = upstream.deployment(Answer(tokens=60, cut_after=40))
    backup = upstream.deployment(Answer(tokens=60))
    url = with_backup(start_gateway, primary, backup, accepts_prefill=True)
    _, events, elapsed = stream(http, url, tools=TOOLS)
    arguments = "".join(
        call["function"].get("arguments") or ""
        for e in events
        if isinstance(e, dict) and e.get("choices")
        for call in e["choices"][0]["delta"].get("tool_calls") or []
    )
    if events[-1] == "[DONE]":
        # A seamless continuation is fine; a corrupt call reported as complete is not.
        assert orjson.loads(arguments) == {"q": text_of(0, 60)}
    else:
        assert cut(events)[1]["message"] == "Deployment 'primary' broke off the stream."
    assert elapsed < 2 * SLACK
