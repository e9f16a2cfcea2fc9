"""The bundled models end to end: SmolLM2 and MiniLM in the gateway, driven by the openai SDK."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from sluicegate.config.defaults import embedded_config
from sluicegate.server.app import create_app
from sluicegate.server.gateway import MasterKey
from tests.conftest import MASTER_KEY, GatewayFactory
from tests.fakes.servers import running

pytestmark = pytest.mark.slow

CHAT = "smollm2-135m"
EMBED = "minilm-l6"
ASK: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Name three colours."},
]
#: SmolLM2's end-of-generation tokens; biased away so an answer runs to max_tokens.
NEVER_STOP = {"0": -100, "2": -100, "4": -100}


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """The gateway with its embedded defaults: exactly what `make run` serves."""
    app = create_app(embedded_config(), MasterKey(MASTER_KEY, "test"))
    with running(app) as base:
        yield base


@pytest.fixture
def client(url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=url + "/v1", api_key=MASTER_KEY, max_retries=0) as c:
        yield c


def one_slot(
    start_gateway: GatewayFactory,
    queue_size: int = 32,
    queue_timeout: float = 30,
    **settings: Any,
) -> str:
    """One model instance; calls beyond it wait in the model group's fair queue."""
    deployment = {"provider": "local", "path": "builtin:smollm2", "max_concurrency": 1, **settings}
    queue = {"size": queue_size, "timeout": queue_timeout}
    model = {"name": CHAT, "routing": {"queue": queue}, "deployments": [deployment]}
    return start_gateway({"models": [model]})


def test_chat_answers_with_usage_and_the_gateway_model_name(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=CHAT, messages=ASK, max_tokens=24, seed=1)
    assert reply.id.startswith("chatcmpl-")
    assert reply.model == CHAT
    assert reply.object == "chat.completion"
    [choice] = reply.choices
    assert choice.message.role == "assistant"
    assert choice.message.content and len(choice.message.content.split()) >= 2
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 10 and reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_stream_with_usage_matches_the_whole_answer(client: openai.OpenAI, url: str) -> None:
    args: dict[str, Any] = {"model": CHAT, "messages": ASK, "max_tokens": 20, "temperature": 0}
    whole = client.chat.completions.create(**args)
    chunks = list(
        client.chat.completions.create(**args, stream=True, stream_options={"include_usage": True})
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 3
    assert text == whole.choices[0].message.content
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == [whole.choices[0].finish_reason]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert whole.usage is not None
    # Counted by the gateway for the stream, by llama-cpp-python for the whole answer.
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (
        whole.usage.prompt_tokens,
        whole.usage.completion_tokens,
    )
    assert {c.id for c in chunks} == {chunks[0].id} and all(c.model == CHAT for c in chunks)

    body = {**args, "stream": True}
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    with httpx2.stream("POST", url + "/v1/chat/completions", json=body, headers=headers) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = b"".join(r.iter_bytes())
    assert raw.endswith(b"data: [DONE]\n\n")
    assert b'"usage"' not in raw  # only when the client asks for it


def test_max_tokens_is_respected(client: openai.OpenAI) -> None:
    limits: list[dict[str, Any]] = [{"max_tokens": 5}, {"max_completion_tokens": 5}]
    for limit in limits:
        reply = client.chat.completions.create(
            model=CHAT, messages=ASK, logit_bias=NEVER_STOP, **limit
        )
        assert reply.choices[0].finish_reason == "length"
        assert reply.usage is not None and reply.usage.completion_tokens == 5


def test_stop_sequences_cut_the_answer(client: openai.OpenAI) -> None:
    args: dict[str, Any] = {"model": CHAT, "messages": ASK, "max_tokens": 30, "temperature": 0}
    full = client.chat.completions.create(**args, logit_bias=NEVER_STOP).choices[0].message.content
    assert full
    words = full.split()
    stop = next(w for w in words[2:] if w not in words[:2])  # a word that first appears later
    cut = client.chat.completions.create(**args, logit_bias=NEVER_STOP, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == full[: full.index(stop)]


def test_the_same_seed_gives_the_same_text(client: openai.OpenAI) -> None:
    args: dict[str, Any] = {"model": CHAT, "messages": ASK, "max_tokens": 16, "temperature": 1.0}
    first = client.chat.completions.create(**args, seed=1234).choices[0].message.content
    second = client.chat.completions.create(**args, seed=1234).choices[0].message.content
    assert first and first == second


def test_json_object_response_format_gives_parseable_json(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=CHAT,
        messages=[
            {"role": "system", "content": "Answer in JSON."},
            {"role": "user", "content": "Give a JSON object with a name and an age."},
        ],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=80,
    )
    content = reply.choices[0].message.content
    assert content is not None
    assert isinstance(json.loads(content), dict)


def test_async_client_whole_and_streamed(url: str) -> None:
    async def main() -> tuple[str | None, str]:
        async with openai.AsyncOpenAI(
            base_url=url + "/v1", api_key=MASTER_KEY, max_retries=0
        ) as client:
            whole, stream = await asyncio.gather(
                client.chat.completions.create(model=CHAT, messages=ASK, max_tokens=8),
                client.chat.completions.create(model=CHAT, messages=ASK, max_tokens=8, stream=True),
            )
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            return whole.choices[0].message.content, "".join(parts)

    whole, streamed = asyncio.run(main())
    assert whole and streamed


def test_completions_endpoint(client: openai.OpenAI) -> None:
    reply = client.completions.create(model=CHAT, prompt="The sky is", max_tokens=6, seed=3)
    assert reply.id.startswith("cmpl-") and reply.model == CHAT
    assert reply.choices[0].text
    assert reply.usage is not None and reply.usage.prompt_tokens == 3
    chunks = list(
        client.completions.create(
            model=CHAT,
            prompt="The sky is",
            max_tokens=6,
            seed=3,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == reply.choices[0].text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6


def test_embeddings_float_and_base64_agree_and_mean_something(client: openai.OpenAI) -> None:
    texts = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The stock market fell sharply today.",
    ]
    floats = client.embeddings.create(model=EMBED, input=texts, encoding_format="float")
    assert floats.model == EMBED
    vectors = np.array([d.embedding for d in floats.data])
    assert vectors.shape == (3, 384)
    assert [d.index for d in floats.data] == [0, 1, 2]
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > 0.6 and unrelated < 0.2

    packed = client.embeddings.create(model=EMBED, input=texts, encoding_format="base64")
    for data, row in zip(packed.data, vectors, strict=True):
        raw = base64.b64decode(data.embedding)  # type: ignore[arg-type]
        assert np.array_equal(np.array(struct.unpack("<384f", raw)), row.astype(np.float32))

    # [CLS] a man is eating food . [SEP] is 8 tokens.
    single = client.embeddings.create(model=EMBED, input=texts[0])
    assert single.usage.prompt_tokens == 8
    assert np.allclose(single.data[0].embedding, vectors[0], atol=1e-6)


@pytest.mark.parametrize(
    ("endpoint", "body", "param", "code"),
    [
        ("chat/completions", {"model": CHAT, "messages": ASK, "n": 2}, "n", None),
        (
            "chat/completions",
            {
                "model": CHAT,
                "messages": ASK,
                "tools": [{"type": "function", "function": {"name": "f"}}],
            },
            "tools",
            None,
        ),
        (
            "chat/completions",
            {"model": CHAT, "messages": [{"role": "user", "content": "word " * 2100}]},
            "messages",
            "context_length_exceeded",
        ),
        (
            "completions",
            {"model": CHAT, "prompt": "x " * 2100, "stream": True},
            "prompt",
            "context_length_exceeded",
        ),
        ("embeddings", {"model": EMBED, "input": "hi", "dimensions": 128}, "dimensions", None),
        ("embeddings", {"model": EMBED, "input": [101, 102]}, "input", None),
    ],
)
def test_what_the_local_models_cannot_do_is_a_400(
    url: str, endpoint: str, body: dict[str, Any], param: str, code: str | None
) -> None:
    r = httpx2.post(
        f"{url}/v1/{endpoint}", json=body, headers={"authorization": f"Bearer {MASTER_KEY}"}
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    if code:
        assert error["code"] == code


def test_a_second_request_gets_429_with_retry_after_when_no_queue(
    start_gateway: GatewayFactory,
) -> None:
    base = one_slot(start_gateway, queue_size=0)
    with openai.OpenAI(base_url=base + "/v1", api_key=MASTER_KEY, max_retries=0) as client:
        stream = client.chat.completions.create(
            model=CHAT, messages=ASK, max_tokens=300, logit_bias=NEVER_STOP, stream=True
        )
        next(iter(stream))  # the slot is taken and generation is under way
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=CHAT, messages=ASK, max_tokens=1)
        assert int(caught.value.response.headers["retry-after"]) >= 1
        assert caught.value.status_code == 429
        stream.close()


def test_a_client_that_leaves_frees_the_model_at_once(start_gateway: GatewayFactory) -> None:
    base = one_slot(start_gateway, queue_size=1, queue_timeout=20)
    with openai.OpenAI(base_url=base + "/v1", api_key=MASTER_KEY, max_retries=0) as client:
        # 1500 tokens take 15 s or more here; the next call must not wait for them.
        stream = client.completions.create(
            model=CHAT, prompt="1, 2, 3,", max_tokens=1500, logit_bias=NEVER_STOP, stream=True
        )
        iterator = iter(stream)
        next(iterator), next(iterator)
        stream.close()
        started = time.monotonic()
        reply = client.completions.create(model=CHAT, prompt="Hello", max_tokens=2)
        assert reply.choices[0].text
        assert time.monotonic() - started < 3.0


def test_the_event_loop_stays_responsive_while_generating(start_gateway: GatewayFactory) -> None:
    base = one_slot(start_gateway)
    done = threading.Event()

    def generate() -> None:
        with openai.OpenAI(base_url=base + "/v1", api_key=MASTER_KEY, max_retries=0) as client:
            client.completions.create(
                model=CHAT, prompt="1, 2, 3,", max_tokens=200, logit_bias=NEVER_STOP
            )
        done.set()

    worker = threading.Thread(target=generate)
    worker.start()
    latencies: list[float] = []
    with httpx2.Client(base_url=base) as http:
        time.sleep(0.3)  # the model is loaded and generating by now
        while not done.is_set() and len(latencies) < 20:
            started = time.perf_counter()
            assert http.get("/health").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.05)
    worker.join(30)
    assert len(latencies) >= 5, "generation ended before the loop could be probed"
    assert sorted(latencies)[-2] < 0.1, latencies  # the slowest but one: allow one hiccup


def test_a_generation_past_the_total_timeout_ends_with_an_error(
    start_gateway: GatewayFactory,
) -> None:
    base = one_slot(start_gateway, timeouts={"total": 0.3})
    long: dict[str, Any] = {
        "model": CHAT,
        "prompt": "1, 2, 3,",
        "max_tokens": 1000,
        "logit_bias": NEVER_STOP,
    }
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    r = httpx2.post(base + "/v1/completions", json=long, headers=headers, timeout=30)
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "upstream_timeout"
    with httpx2.stream(
        "POST", base + "/v1/completions", json={**long, "stream": True}, headers=headers
    ) as r:
        assert r.status_code == 200
        raw = b"".join(r.iter_bytes())
    assert b'"text"' in raw  # some of the answer came through before the deadline
    assert raw.rstrip().endswith(b"}") and b"[DONE]" not in raw
    assert b'"upstream_timeout"' in raw.rsplit(b"data: ", 1)[1]


def test_a_gguf_that_will_not_load_is_a_503_and_unready(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    deployment = {"provider": "local", "path": str(broken)}
    base = start_gateway({"models": [{"name": "broken", "deployments": [deployment]}]})
    assert httpx2.get(base + "/ready").status_code == 200  # healthy until a load is tried
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    body = {"model": "broken", "messages": ASK}
    for _ in range(2):  # the failure is remembered, not retried per request
        r = httpx2.post(base + "/v1/chat/completions", json=body, headers=headers)
        assert r.status_code == 503
        assert "failed to load" in r.json()["error"]["message"]
        assert str(tmp_path) not in r.text  # the server's paths are not the client's business
    time.sleep(1.1)  # /ready caches its probe for a second
    ready = httpx2.get(base + "/ready")
    assert ready.status_code == 503
    assert ready.json()["unready_models"] == ["broken"]


def test_ready_reports_the_local_models_healthy(url: str) -> None:
    r = httpx2.get(url + "/ready")
    assert r.status_code == 200
    assert r.json()["models"][CHAT]["healthy"] == 1
    assert r.json()["models"][EMBED]["healthy"] == 1
