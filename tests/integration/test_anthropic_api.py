"""Anthropic both ways, over real HTTP: Claude clients on /v1/messages over an OpenAI backend,
and OpenAI clients over an Anthropic deployment, each driven by its official SDK."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from tests.conftest import MASTER_KEY, GatewayFactory
from tests.fakes import anthropic_upstream
from tests.fakes.servers import running

HELLO: Any = [{"role": "user", "content": "hello world"}]
WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
OPENAI_WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}
UPSTREAM_KEY = "sk-ant-upstream-secret"


def texts(blocks: Iterable[object]) -> list[str]:
    return [block.text for block in blocks if isinstance(block, anthropic.types.TextBlock)]


@pytest.fixture(scope="module")
def claude_url() -> Iterator[str]:
    """The fake Anthropic Messages API; ``{claude_url}/{mode}`` picks a behaviour."""
    with running(anthropic_upstream.app) as url:
        yield url


@pytest.fixture
def claude_seen() -> Iterator[list[dict[str, Any]]]:
    anthropic_upstream.SEEN.clear()
    yield anthropic_upstream.SEEN


def _claude(name: str, url: str, **extra: Any) -> dict[str, Any]:
    deployment = {
        "provider": "anthropic",
        "base_url": url,
        "model": "claude-upstream",
        "api_key": UPSTREAM_KEY,
        **extra,
    }
    # One attempt each: these tests check how one upstream answer is translated.
    return {"name": name, "routing": {"retry": {"attempts": 1}}, "deployments": [deployment]}


@pytest.fixture
def base_url(start_gateway: GatewayFactory, upstream_url: str, claude_url: str) -> str:
    return start_gateway(
        {
            "models": [
                {
                    "name": "fake-chat",
                    "deployments": [
                        {
                            "provider": "openai",
                            "base_url": f"{upstream_url}/ok/v1",
                            "model": "upstream-chat",
                            "api_key": "sk-upstream-secret",
                        }
                    ],
                },
                {
                    "name": "fake-cut",
                    "deployments": [{"provider": "openai", "base_url": f"{upstream_url}/cut/v1"}],
                },
                _claude("claude", f"{claude_url}/ok", default_max_tokens=333),
                _claude("claude-529", f"{claude_url}/status-529"),
                _claude("claude-429", f"{claude_url}/status-429"),
                _claude("claude-cut", f"{claude_url}/cut"),
                _claude("claude-overloaded", f"{claude_url}/overloaded"),
            ]
        }
    )


@pytest.fixture
def claude_client(base_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=base_url, api_key=MASTER_KEY, max_retries=0) as c:
        yield c


@pytest.fixture
def openai_client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=base_url + "/v1", api_key=MASTER_KEY, max_retries=0) as c:
        yield c


# --- Claude clients on /v1/messages, over the fake OpenAI-compatible backend ---------------


def test_messages(claude_client: anthropic.Anthropic, seen: list[dict[str, Any]]) -> None:
    raw = claude_client.messages.with_raw_response.create(
        model="fake-chat",
        max_tokens=50,
        system="Be brief.",
        messages=HELLO,
        metadata={"user_id": "u-1"},
        extra_body={"top_k": 5},
    )
    assert raw.http_response.status_code == 200
    assert raw.headers["x-sluicegate-deployment"] == "fake-chat/0"
    assert raw.headers["x-request-id"]
    message = raw.parse()
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id.startswith("msg_")
    assert [b.type for b in message.content] == ["text"]
    assert texts(message.content) == ["echo: hello world"]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 3)

    [request] = seen
    assert request["path"] == "/ok/v1/chat/completions"
    assert request["body"] == {
        "model": "upstream-chat",
        "messages": [{"role": "system", "content": "Be brief."}, *HELLO],
        "max_tokens": 50,
    }
    assert request["headers"]["authorization"] == "Bearer sk-upstream-secret"
    assert not any(MASTER_KEY in value for value in request["headers"].values())


def test_messages_stream(claude_client: anthropic.Anthropic, seen: list[dict[str, Any]]) -> None:
    with claude_client.messages.stream(
        model="fake-chat",
        max_tokens=50,
        messages=HELLO,
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: hello world"
    assert texts(final.content) == ["echo: hello world"]
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 3)
    [request] = seen
    assert request["body"]["stream"] is True
    assert request["body"]["stream_options"] == {"include_usage": True}


def test_messages_stream_events_in_order(claude_client: anthropic.Anthropic) -> None:
    events = claude_client.messages.create(
        model="fake-chat",
        max_tokens=50,
        messages=HELLO,
        stream=True,
    )
    kinds = [event.type for event in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_tool_use_round_trip(
    claude_client: anthropic.Anthropic, seen: list[dict[str, Any]]
) -> None:
    question: Any = {"role": "user", "content": "What's the weather in Paris?"}
    first = claude_client.messages.create(
        model="fake-chat",
        max_tokens=100,
        messages=[question],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "any"},
    )
    assert first.stop_reason == "tool_use"
    [call] = first.content
    assert call.type == "tool_use"
    assert (call.id, call.name, call.input) == ("call_1", "get_weather", {"city": "Paris"})

    second = claude_client.messages.create(
        model="fake-chat",
        max_tokens=100,
        messages=[
            question,
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "18°C, rain"}
                ],
            },
        ],
    )
    assert texts(second.content) == ["echo: What's the weather in Paris?"]

    first_sent, second_sent = (s["body"] for s in seen)
    assert first_sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": WEATHER_TOOL["input_schema"],
            },
        }
    ]
    assert first_sent["tool_choice"] == "required"
    assert second_sent["messages"] == [
        question,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C, rain"},
    ]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": 0}, "'max_tokens'"),
        ({"messages": []}, "'messages'"),
        ({"messages": [{"role": "system", "content": "hi"}]}, "'messages[0].role'"),
        ({"extra_body": {"temperature": 1.5}}, "'temperature'"),
    ],
)
def test_bad_input_is_an_anthropic_400_naming_the_field(
    claude_client: anthropic.Anthropic, fields: dict[str, Any], param: str
) -> None:
    request: dict[str, Any] = {"model": "fake-chat", "max_tokens": 10, "messages": HELLO}
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude_client.messages.create(**{**request, **fields})
    assert caught.value.status_code == 400
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert param in body["error"]["message"]
    assert body["request_id"] == caught.value.response.headers["x-request-id"]


def test_missing_max_tokens_and_bad_json(base_url: str) -> None:
    headers = {"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"}
    url = base_url + "/v1/messages"
    missing = httpx2.post(url, headers=headers, json={"model": "fake-chat", "messages": HELLO})
    assert missing.status_code == 400
    assert missing.json()["error"] == {
        "type": "invalid_request_error",
        "message": "'max_tokens' is required.",
    }
    broken = httpx2.post(url, headers=headers, content=b'{"model": ')
    assert broken.status_code == 400
    assert broken.json()["type"] == "error"
    assert broken.headers["x-request-id"]


def test_wrong_key_is_401(base_url: str) -> None:
    with (
        anthropic.Anthropic(base_url=base_url, api_key="sk-wrong-key", max_retries=0) as c,
        pytest.raises(anthropic.AuthenticationError) as caught,
    ):
        c.messages.create(model="fake-chat", max_tokens=10, messages=HELLO)
    assert caught.value.status_code == 401
    assert caught.value.type == "authentication_error"


def test_unknown_model_is_404(claude_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude_client.messages.create(model="nope", max_tokens=10, messages=HELLO)
    assert caught.value.type == "not_found_error"
    assert caught.value.api_message is not None
    assert "fake-chat" in caught.value.api_message


def test_broken_backend_stream_is_an_anthropic_error_event(
    claude_client: anthropic.Anthropic, base_url: str
) -> None:
    received: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        claude_client.messages.stream(
            model="fake-cut",
            max_tokens=10,
            messages=HELLO,
        ) as stream,
    ):
        received.extend(stream.text_stream)
    assert received == ["echo:", " hello"]
    assert caught.value.type == "api_error"
    assert caught.value.api_message is not None
    assert "broke off" in caught.value.api_message

    headers = {"x-api-key": MASTER_KEY}
    body = {"model": "fake-cut", "max_tokens": 10, "messages": HELLO, "stream": True}
    raw = httpx2.post(base_url + "/v1/messages", headers=headers, json=body).text
    assert raw.endswith("\n\n")
    last = raw.rstrip("\n").split("\n\n")[-1]
    name, data = last.split("\n")
    assert name == "event: error"
    assert json.loads(data.removeprefix("data: "))["error"]["type"] == "api_error"
    assert "message_stop" not in raw


# --- OpenAI clients over an Anthropic deployment -----------------------------------------


def test_chat_over_anthropic(
    openai_client: openai.OpenAI, claude_seen: list[dict[str, Any]]
) -> None:
    reply = openai_client.chat.completions.create(
        model="claude",
        messages=[{"role": "system", "content": "Be brief."}, *HELLO],
        temperature=1.5,
        max_tokens=40,
        seed=3,
    )
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content == "echo: hello world"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == "claude-upstream"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (17, 3)
    assert reply.usage.prompt_tokens_details is not None
    assert reply.usage.prompt_tokens_details.cached_tokens == 4

    [request] = claude_seen
    assert request["path"] == "/ok/v1/messages"
    assert request["body"] == {
        "model": "claude-upstream",
        "max_tokens": 40,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello world"}]}],
        "temperature": 1.0,
    }
    headers = request["headers"]
    assert headers["x-api-key"] == UPSTREAM_KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers
    assert not any(MASTER_KEY in value for value in headers.values())


def test_default_max_tokens(
    openai_client: openai.OpenAI, claude_seen: list[dict[str, Any]]
) -> None:
    openai_client.chat.completions.create(model="claude", messages=HELLO)
    assert claude_seen[0]["body"]["max_tokens"] == 333


def test_stream_over_anthropic_with_usage(
    openai_client: openai.OpenAI, claude_seen: list[dict[str, Any]]
) -> None:
    chunks = list(
        openai_client.chat.completions.create(
            model="claude",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello world"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert finishes.count("stop") == 1
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (17, 3)
    assert claude_seen[0]["body"]["stream"] is True
    assert "stream_options" not in claude_seen[0]["body"]


def test_stream_over_anthropic_without_usage(openai_client: openai.OpenAI) -> None:
    chunks = list(
        openai_client.chat.completions.create(
            model="claude",
            messages=HELLO,
            stream=True,
        )
    )
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_tools_over_anthropic(
    openai_client: openai.OpenAI, claude_seen: list[dict[str, Any]]
) -> None:
    reply = openai_client.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[OPENAI_WEATHER_TOOL],
        tool_choice="required",
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.id == "toolu_01FakeFakeFake"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == anthropic_upstream.TOOL_INPUT
    sent = claude_seen[0]["body"]
    assert sent["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "input_schema": OPENAI_WEATHER_TOOL["function"]["parameters"],
        }
    ]
    assert sent["tool_choice"] == {"type": "any"}


def test_streamed_tool_call_over_anthropic(openai_client: openai.OpenAI) -> None:
    chunks = list(
        openai_client.chat.completions.create(
            model="claude",
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[OPENAI_WEATHER_TOOL],
            stream=True,
        )
    )
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert calls[0].id == "toolu_01FakeFakeFake"
    assert calls[0].function is not None and calls[0].function.name == "get_weather"
    assert {call.index for call in calls} == {0}
    arguments = "".join((call.function.arguments or "") for call in calls if call.function)
    assert json.loads(arguments) == anthropic_upstream.TOOL_INPUT
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_claude_client_over_anthropic_deployment(
    claude_client: anthropic.Anthropic, claude_seen: list[dict[str, Any]]
) -> None:
    """Both translations at once: Messages → OpenAI chat → Messages, and back."""
    with claude_client.messages.stream(
        model="claude",
        max_tokens=20,
        messages=HELLO,
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: hello world"
    usage = final.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (13, 4, 3)
    assert claude_seen[0]["body"]["max_tokens"] == 20


def test_upstream_529_is_503(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        openai_client.chat.completions.create(model="claude-529", messages=HELLO)
    assert caught.value.status_code == 503
    assert caught.value.code == "upstream_overloaded"
    assert "fake upstream says status-529" in caught.value.message


def test_upstream_429_passes_retry_after(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client.chat.completions.create(model="claude-429", messages=HELLO)
    assert caught.value.response.headers["retry-after"] == "7"


@pytest.mark.parametrize(
    ("model", "said"), [("claude-cut", "broke off"), ("claude-overloaded", "overloaded")]
)
def test_broken_anthropic_stream_raises_in_the_sdk(
    openai_client: openai.OpenAI, base_url: str, model: str, said: str
) -> None:
    received: list[str] = []
    with pytest.raises(openai.APIError, match=said):
        for chunk in openai_client.chat.completions.create(
            model=model,
            messages=HELLO,
            stream=True,
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received == ["echo:", " hello"]

    body = {"model": model, "messages": HELLO, "stream": True}
    raw = httpx2.post(
        base_url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        json=body,
    ).text
    assert "[DONE]" not in raw
    last = json.loads(raw.rstrip("\n").split("\n\n")[-1].removeprefix("data: "))
    assert said in last["error"]["message"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"response_format": {"type": "json_object"}}, "response_format"), ({"n": 2}, "n")],
)
def test_what_anthropic_cannot_do_is_a_400(
    openai_client: openai.OpenAI,
    claude_seen: list[dict[str, Any]],
    fields: dict[str, Any],
    param: str,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model="claude", messages=HELLO, **fields)
    assert caught.value.param == param
    assert claude_seen == []


def test_completions_endpoint_is_refused_for_anthropic(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.completions.create(model="claude", prompt="hi")
    assert caught.value.param == "model"


def test_ready_probes_anthropic_deployments(base_url: str) -> None:
    report = httpx2.get(base_url + "/ready").json()
    assert report["models"]["claude"]["deployments"] == {"claude/0": True}
    assert report["models"]["claude-529"]["deployments"] == {"claude-529/0": False}
