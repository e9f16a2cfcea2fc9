"""Claude clients' Messages requests: the checks, and the OpenAI chat request they become."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from sluicegate.errors import InvalidRequest
from sluicegate.protocol.anthropic_request import to_openai_request, validate_messages
from sluicegate.protocol.openai import validate_chat

TRANSCRIPTS = Path(__file__).parent / "transcripts"


def transcript(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((TRANSCRIPTS / name).read_text(encoding="utf-8"))
    return loaded


def minimal(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "fake-chat",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
    }
    body.update(fields)
    return body


@pytest.mark.parametrize(
    "name", ["claude_client_text_stream.json", "claude_client_tool_stream.json"]
)
def test_transcript_request(name: str) -> None:
    t = transcript(name)
    body = t["anthropic_request"]
    assert validate_messages(body) == (body["model"], True)
    translated = to_openai_request(copy.deepcopy(body))
    assert translated == t["openai_request"]
    # What the route hands the pipeline is a chat request the OpenAI checks accept.
    assert validate_chat(translated) == (body["model"], True)


def test_not_streamed_has_no_stream_fields() -> None:
    assert to_openai_request(minimal()) == {
        "model": "fake-chat",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
        (minimal(model=""), "model"),
        (minimal(max_tokens=None), "max_tokens"),
        (minimal(max_tokens=0), "max_tokens"),
        (minimal(max_tokens="10"), "max_tokens"),
        (minimal(max_tokens=True), "max_tokens"),
        (minimal(messages=None), "messages"),
        (minimal(messages=[]), "messages"),
        (minimal(messages="hi"), "messages"),
        (minimal(messages=["hi"]), "messages[0]"),
        (minimal(messages=[{"role": "system", "content": "x"}]), "messages[0].role"),
        (minimal(messages=[{"role": ["user"], "content": "x"}]), "messages[0].role"),
        (minimal(messages=[{"role": "user"}]), "messages[0].content"),
        (minimal(messages=[{"role": "user", "content": 3}]), "messages[0].content"),
        (
            minimal(messages=[{"role": "user", "content": [{"text": "no type"}]}]),
            "messages[0].content[0]",
        ),
        (minimal(system=5), "system"),
        (minimal(stream="yes"), "stream"),
        (minimal(temperature=1.5), "temperature"),
        (minimal(top_p="high"), "top_p"),
        (minimal(stop_sequences="END"), "stop_sequences"),
    ],
)
def test_bad_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_messages(body)
    assert caught.value.param == param
    assert f"'{param}'" in caught.value.message


@pytest.mark.parametrize(
    ("content", "param"),
    [
        (
            [
                {
                    "type": "document",
                    "source": {
                        "type": "base64",
                        "media_type": "application/pdf",
                        "data": "JVBERi0x",
                    },
                }
            ],
            "messages[0].content[0].type",
        ),
        (
            [{"type": "image", "source": {"type": "file", "file_id": "file_01"}}],
            "messages[0].content[0].source",
        ),
    ],
)
def test_blocks_another_backend_cannot_take_are_refused(content: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_openai_request(minimal(messages=[{"role": "user", "content": content}]))
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
            "messages[0].content[0].text",
        ),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "text"}]}]},
            "messages[0].content[0].text",
        ),
        ({"system": [{"type": "text", "text": None}]}, "system[0].text"),
    ],
)
def test_text_must_be_a_string(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_openai_request(minimal(**fields))
    assert caught.value.param == param


def test_server_tools_are_refused() -> None:
    tools = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]
    with pytest.raises(InvalidRequest) as caught:
        to_openai_request(minimal(tools=tools))
    assert caught.value.param == "tools[0].type"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "tool", "name": "get_time"},
            {"tool_choice": {"type": "function", "function": {"name": "get_time"}}},
        ),
        (
            {"type": "any", "disable_parallel_tool_use": True},
            {"tool_choice": "required", "parallel_tool_calls": False},
        ),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: dict[str, Any]) -> None:
    tools = [{"name": "get_time", "input_schema": {"type": "object"}}]
    out = to_openai_request(minimal(tools=tools, tool_choice=choice))
    assert {k: out[k] for k in expected} == expected
    assert out["tools"] == [
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    ]


def test_tool_choice_without_tools_is_dropped_and_bad_choice_refused() -> None:
    assert "tool_choice" not in to_openai_request(minimal(tool_choice={"type": "auto"}))
    tools = [{"name": "t", "input_schema": {"type": "object"}}]
    with pytest.raises(InvalidRequest) as caught:
        to_openai_request(minimal(tools=tools, tool_choice={"type": "sometimes"}))
    assert caught.value.param == "tool_choice"


def test_tool_result_error_and_images_keep_their_meaning() -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/chart.png"}}
    messages = [
        {"role": "user", "content": "plot it"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "plot", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "is_error": True,
                    "content": "no data",
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "made"}, image],
                },
            ],
        },
    ]
    out = to_openai_request(minimal(messages=messages))["messages"]
    assert out[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "plot", "arguments": "{}"}}
        ],
    }
    assert out[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: no data"}
    assert out[3] == {"role": "tool", "tool_call_id": "toolu_2", "content": "made"}
    # OpenAI tool messages hold text only, so the image follows as the user's.
    assert out[4] == {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": "https://example.com/chart.png"}}],
    }
