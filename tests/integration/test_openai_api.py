"""The OpenAI-compatible API, driven by the official ``openai`` SDK against a fake upstream."""

from __future__ import annotations

import asyncio
import base64
import re
import struct
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import APP_KEY, MASTER_KEY, GatewayFactory

# Generated ids are opaque; the middleware accepts the same alphabet from clients.
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{16,128}$")
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello world"}]


@pytest.fixture
def client(shared_gateway_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=shared_gateway_url + "/v1", api_key=MASTER_KEY, max_retries=0) as c:
        yield c


def auth(key: str = MASTER_KEY) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_chat(client: openai.OpenAI, seen: list[dict[str, Any]]) -> None:
    raw = client.chat.completions.with_raw_response.create(model="fake-chat", messages=HELLO)
    assert raw.status_code == 200
    assert raw.headers["content-type"] == "application/json"
    assert raw.headers["x-sluicegate-deployment"] == "fake-chat/0"
    assert REQUEST_ID.match(raw.headers["x-request-id"])
    reply = raw.parse()
    assert reply.choices[0].message.content == "echo: hello world"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (11, 3)
    assert reply.usage.total_tokens == 14

    [request] = seen
    assert request["path"] == "/ok/v1/chat/completions"
    assert request["body"] == {"model": "upstream-chat", "messages": HELLO}
    headers = request["headers"]
    assert headers["authorization"] == "Bearer sk-upstream-secret"
    assert headers["content-type"] == "application/json"
    # The client's key never leaves the gateway, in any header.
    assert not any(MASTER_KEY in value for value in headers.values())
    assert "x-api-key" not in headers


def test_chat_async(shared_gateway_url: str, seen: list[dict[str, Any]]) -> None:
    async def main() -> tuple[str | None, str | None]:
        async with openai.AsyncOpenAI(
            base_url=shared_gateway_url + "/v1", api_key=APP_KEY, max_retries=0
        ) as c:
            replies = await asyncio.gather(
                *(
                    c.chat.completions.create(
                        model="fake-chat", messages=[{"role": "user", "content": f"n{i}"}]
                    )
                    for i in range(2)
                )
            )
            return replies[0].choices[0].message.content, replies[1].choices[0].message.content

    assert asyncio.run(main()) == ("echo: n0", "echo: n1")
    assert len(seen) == 2


def test_chat_stream_with_usage(client: openai.OpenAI, seen: list[dict[str, Any]]) -> None:
    stream = client.chat.completions.create(
        model="fake-chat", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello world"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert finishes.count("stop") == 1
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (11, 3)
    assert all(c.usage is None for c in chunks[:-1])
    assert seen[0]["body"]["stream_options"] == {"include_usage": True}
    assert seen[0]["body"]["model"] == "upstream-chat"


def test_chat_stream_async(shared_gateway_url: str) -> None:
    async def main() -> str:
        async with openai.AsyncOpenAI(
            base_url=shared_gateway_url + "/v1", api_key=MASTER_KEY, max_retries=0
        ) as c:
            stream = await c.chat.completions.create(
                model="fake-chat", messages=[{"role": "user", "content": "a b c"}], stream=True
            )
            return "".join([chunk.choices[0].delta.content or "" async for chunk in stream])

    assert asyncio.run(main()) == "echo: a b c"


def test_raw_stream_ends_with_done(shared_gateway_url: str) -> None:
    body = {"model": "fake-chat", "messages": HELLO, "stream": True}
    with (
        httpx2.Client(timeout=10) as http,
        http.stream(
            "POST", shared_gateway_url + "/v1/chat/completions", json=body, headers=auth()
        ) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-sluicegate-deployment"] == "fake-chat/0"
        assert REQUEST_ID.match(r.headers["x-request-id"])
        raw = b"".join(r.iter_bytes())
    assert raw.endswith(b"\n\ndata: [DONE]\n\n")
    assert raw.count(b"[DONE]") == 1
    events = raw.split(b"\n\n")
    assert events[-1] == b""
    payloads = [e.removeprefix(b"data: ") for e in events[:-2]]
    assert all(e.startswith(b"data: ") for e in events[:-1])
    decoded = [orjson.loads(p) for p in payloads]
    assert all(d["object"] == "chat.completion.chunk" for d in decoded)
    # The upstream split events across writes; the gateway relays whole events only.
    assert len(decoded) == 5  # role, three words, finish


def test_tools_pass_through(client: openai.OpenAI, seen: list[dict[str, Any]]) -> None:
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    reply = client.chat.completions.create(
        model="fake-chat", messages=HELLO, tools=tools, tool_choice="auto"
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function"
    assert (call.id, call.function.name) == ("call_1", "get_weather")
    assert orjson.loads(call.function.arguments) == {"city": "Paris"}
    assert seen[0]["body"]["tools"] == tools
    assert seen[0]["body"]["tool_choice"] == "auto"


def test_tool_result_messages_pass_through(
    client: openai.OpenAI, seen: list[dict[str, Any]]
) -> None:
    messages: Any = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "user", "content": [{"type": "text", "text": "and tomorrow?"}]},
    ]
    reply = client.chat.completions.create(model="fake-chat", messages=messages)
    assert reply.choices[0].message.content == "echo: and tomorrow?"
    assert seen[0]["body"]["messages"] == messages


def test_sampling_parameters_forwarded_untouched(
    client: openai.OpenAI, seen: list[dict[str, Any]]
) -> None:
    params: dict[str, Any] = {
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 7,
        "max_completion_tokens": 9,
        "stop": ["\n\n", "END"],
        "seed": 42,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "n": 1,
        "response_format": {"type": "json_object"},
        "user": "u-1",
    }
    client.chat.completions.create(
        model="fake-chat",
        messages=HELLO,
        extra_body={"top_k": 5, "repetition_penalty": 1.1},
        **params,
    )
    assert seen[0]["body"] == {
        "model": "upstream-chat",
        "messages": HELLO,
        **params,
        "top_k": 5,
        "repetition_penalty": 1.1,
    }


def test_completions(client: openai.OpenAI, seen: list[dict[str, Any]]) -> None:
    raw = client.completions.with_raw_response.create(
        model="fake-chat", prompt="say hi", max_tokens=5
    )
    assert raw.headers["x-sluicegate-deployment"] == "fake-chat/0"
    reply = raw.parse()
    assert reply.choices[0].text == "echo: say hi"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (11, 3)
    [request] = seen
    assert request["path"] == "/ok/v1/completions"
    assert request["body"] == {"model": "upstream-chat", "prompt": "say hi", "max_tokens": 5}


def test_completions_stream_when_upstream_ignores_stream(client: openai.OpenAI) -> None:
    stream = client.completions.create(model="fake-chat", prompt="say hi", stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "echo: say hi"
    assert all(c.object == "text_completion" for c in chunks)


def test_embeddings_string(client: openai.OpenAI, seen: list[dict[str, Any]]) -> None:
    raw = client.embeddings.with_raw_response.create(
        model="fake-embed", input="hello", encoding_format="float"
    )
    assert raw.headers["x-sluicegate-deployment"] == "fake-embed/0"
    reply = raw.parse()
    assert len(reply.data) == 1
    assert len(reply.data[0].embedding) == 8
    assert reply.usage.prompt_tokens == 1
    [request] = seen
    assert request["path"] == "/ok/v1/embeddings"
    # No upstream model name configured: the model is the gateway's own name.
    assert request["body"] == {"model": "fake-embed", "input": "hello", "encoding_format": "float"}
    assert "authorization" not in request["headers"]


def test_embeddings_list_keeps_order(client: openai.OpenAI) -> None:
    reply = client.embeddings.create(
        model="fake-embed", input=["one", "two", "three"], encoding_format="float"
    )
    assert [d.index for d in reply.data] == [0, 1, 2]
    single = client.embeddings.create(model="fake-embed", input="two", encoding_format="float")
    assert reply.data[1].embedding == single.data[0].embedding
    assert reply.data[0].embedding != reply.data[1].embedding


def test_embeddings_base64(client: openai.OpenAI, seen: list[dict[str, Any]]) -> None:
    as_float = client.embeddings.create(model="fake-embed", input="hi", encoding_format="float")
    encoded = client.embeddings.create(model="fake-embed", input="hi", encoding_format="base64")
    assert seen[1]["body"]["encoding_format"] == "base64"
    packed = encoded.data[0].embedding
    assert isinstance(packed, str)
    decoded = struct.unpack("<8f", base64.b64decode(packed))
    assert decoded == pytest.approx(as_float.data[0].embedding, rel=1e-6)


def test_embeddings_sdk_default(client: openai.OpenAI) -> None:
    # The SDK asks for base64 behind the user's back and decodes it; the result is floats.
    reply = client.embeddings.create(model="fake-embed", input=["x", "y"])
    assert all(len(d.embedding) == 8 for d in reply.data)
    assert all(isinstance(v, float) for v in reply.data[0].embedding)


def test_embeddings_token_ids(client: openai.OpenAI, seen: list[dict[str, Any]]) -> None:
    reply = client.embeddings.create(
        model="fake-embed", input=[[1, 2, 3], [4, 5]], encoding_format="float"
    )
    assert len(reply.data) == 2
    assert seen[0]["body"]["input"] == [[1, 2, 3], [4, 5]]


def test_models_list(client: openai.OpenAI, seen: list[dict[str, Any]]) -> None:
    models = client.models.list()
    assert [(m.id, m.object, m.owned_by) for m in models.data] == [
        ("fake-chat", "model", "sluicegate"),
        ("fake-embed", "model", "sluicegate"),
    ]
    assert all(isinstance(m.created, int) and m.created > 1_700_000_000 for m in models.data)
    assert seen == []  # the catalogue comes from config, not the upstream


def test_request_id_echoed(shared_gateway_url: str) -> None:
    with httpx2.Client(timeout=10) as http:
        r = http.get(
            shared_gateway_url + "/v1/models",
            headers={**auth(), "x-request-id": "client-id.1:a_b-C"},
        )
        assert r.status_code == 200
        assert r.headers["x-request-id"] == "client-id.1:a_b-C"
        assert r.headers.get_list("x-request-id") == ["client-id.1:a_b-C"]


def test_request_id_generated(shared_gateway_url: str) -> None:
    with httpx2.Client(timeout=10) as http:
        ids = [
            http.get(shared_gateway_url + "/v1/models", headers=auth()).headers for _ in range(2)
        ]
    first, second = (h["x-request-id"] for h in ids)
    assert REQUEST_ID.match(first) and REQUEST_ID.match(second)
    assert first != second


@pytest.mark.parametrize("sent", ["has space", "x" * 129, 'quote"d', ""])
def test_unsafe_request_id_is_replaced(shared_gateway_url: str, sent: str) -> None:
    with httpx2.Client(timeout=10) as http:
        r = http.get(shared_gateway_url + "/v1/models", headers={**auth(), "x-request-id": sent})
    assert r.status_code == 200
    assert REQUEST_ID.match(r.headers["x-request-id"])
    assert r.headers["x-request-id"] != sent


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": f"Bearer {MASTER_KEY}"},
        {"authorization": f"Bearer {APP_KEY}"},
        {"authorization": f"bearer {APP_KEY}"},
        {"x-api-key": MASTER_KEY},
        {"x-api-key": APP_KEY},
    ],
    ids=["master", "app", "lowercase-scheme", "x-api-key-master", "x-api-key-app"],
)
def test_accepted_keys(
    shared_gateway_url: str, seen: list[dict[str, Any]], headers: dict[str, str]
) -> None:
    body = {"model": "fake-chat", "messages": HELLO}
    with httpx2.Client(timeout=10) as http:
        r = http.post(shared_gateway_url + "/v1/chat/completions", json=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "echo: hello world"
    forwarded = seen[0]["headers"]
    assert forwarded["authorization"] == "Bearer sk-upstream-secret"
    assert "x-api-key" not in forwarded


def test_app_key_through_sdk(shared_gateway_url: str) -> None:
    with openai.OpenAI(base_url=shared_gateway_url + "/v1", api_key=APP_KEY, max_retries=0) as c:
        assert [m.id for m in c.models.list().data] == ["fake-chat", "fake-embed"]


def same_name_gateway(start_gateway: GatewayFactory, upstream_url: str) -> str:
    return start_gateway(
        {
            "models": [
                {
                    "name": "same-chat",
                    "deployments": [{"provider": "openai", "base_url": f"{upstream_url}/ok/v1"}],
                },
                {
                    "name": "same-embed",
                    "kind": "embedding",
                    "deployments": [{"provider": "openai", "base_url": f"{upstream_url}/ok/v1"}],
                },
            ]
        }
    )


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        (
            "/v1/chat/completions",
            b'{ "messages" : [ {"role":"user","content":"caf\\u00e9 \xe2\x98\x95"} ],\n'
            b'  "model":"same-chat", "x_vendor": {"keep": [1, 2.50, null]} }',
        ),
        ("/v1/embeddings", b'{"input": ["a",  "b"], "model": "same-embed", "dimensions": 8}\n'),
    ],
    ids=["chat", "embeddings"],
)
def test_body_bytes_pass_through_untouched(
    start_gateway: GatewayFactory,
    upstream_url: str,
    seen: list[dict[str, Any]],
    path: str,
    sent: bytes,
) -> None:
    url = same_name_gateway(start_gateway, upstream_url)
    with httpx2.Client(timeout=10) as http:
        r = http.post(
            url + path, content=sent, headers={**auth(), "content-type": "application/json"}
        )
    assert r.status_code == 200, r.text
    [request] = seen
    assert request["raw"] == sent


def test_renamed_model_is_reserialised(shared_gateway_url: str, seen: list[dict[str, Any]]) -> None:
    sent = b'{"model": "fake-chat", "messages": [{"role": "user", "content": "x"}], "seed": 1}'
    with httpx2.Client(timeout=10) as http:
        r = http.post(shared_gateway_url + "/v1/chat/completions", content=sent, headers=auth())
    assert r.status_code == 200
    assert orjson.loads(seen[0]["raw"]) == {**orjson.loads(sent), "model": "upstream-chat"}


def small_pool_gateway(start_gateway: GatewayFactory, upstream_url: str) -> str:
    deployment = {
        "provider": "openai",
        "base_url": f"{upstream_url}/ok/v1",
        "max_concurrency": 2,
    }
    return start_gateway({"models": [{"name": "pooled", "deployments": [deployment]}]})


def test_concurrent_calls_over_a_small_pool_keep_their_answers(
    start_gateway: GatewayFactory, upstream_url: str
) -> None:
    url = small_pool_gateway(start_gateway, upstream_url)

    async def main() -> tuple[list[str | None], list[str]]:
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=MASTER_KEY, max_retries=0) as c:

            async def plain(i: int) -> str | None:
                reply = await c.chat.completions.create(
                    model="pooled", messages=[{"role": "user", "content": f"plain {i}"}]
                )
                return reply.choices[0].message.content

            async def streamed(i: int) -> str:
                stream = await c.chat.completions.create(
                    model="pooled",
                    messages=[{"role": "user", "content": f"streamed {i} x y"}],
                    stream=True,
                )
                return "".join([ch.choices[0].delta.content or "" async for ch in stream])

            plains = asyncio.gather(*(plain(i) for i in range(20)))
            streams = asyncio.gather(*(streamed(i) for i in range(6)))
            return list(await plains), list(await streams)

    plains, streams = asyncio.run(main())
    assert plains == [f"echo: plain {i}" for i in range(20)]
    assert streams == [f"echo: streamed {i} x y" for i in range(6)]


def test_client_leaving_a_stream_does_not_spoil_the_next_call(
    start_gateway: GatewayFactory, upstream_url: str
) -> None:
    url = small_pool_gateway(start_gateway, upstream_url)
    body = {
        "model": "pooled",
        "messages": [{"role": "user", "content": "w " * 200}],
        "stream": True,
    }
    with httpx2.Client(timeout=10) as http:
        for _ in range(3):
            with http.stream("POST", url + "/v1/chat/completions", json=body, headers=auth()) as r:
                assert r.status_code == 200
                next(r.iter_bytes())  # read a little, then hang up
        for i in range(4):
            plain = {"model": "pooled", "messages": [{"role": "user", "content": f"after {i}"}]}
            r2 = http.post(url + "/v1/chat/completions", json=plain, headers=auth())
            assert r2.status_code == 200, r2.text
            assert r2.json()["choices"][0]["message"]["content"] == f"echo: after {i}"
