"""protocol/openai: request checks; every refusal is a 400 that names its ``param``."""

from __future__ import annotations

from typing import Any

import pytest

from sluicegate.errors import InvalidRequest
from sluicegate.protocol.openai import validate_chat, validate_completion, validate_embeddings

USER = {"role": "user", "content": "hi"}


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [USER], **fields}


def refused(check: Any, body: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        check(body)
    exc = caught.value
    assert (exc.status, exc.type) == (400, "invalid_request_error")
    return exc


def test_minimal_chat() -> None:
    assert validate_chat(chat()) == ("m", False)


def test_full_chat_passes() -> None:
    body = chat(
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": "json"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
            {"role": "tool", "content": "42", "tool_call_id": "c1"},
        ],
        stream=True,
        stream_options={"include_usage": True},
        temperature=0,
        top_p=1,
        presence_penalty=-2,
        frequency_penalty=2.0,
        max_tokens=1,
        max_completion_tokens=5,
        n=1,
        seed=-1,
        stop=["a", "b", "c", "d"],
        tools=[{"type": "function", "function": {"name": "f"}}],
        response_format={"type": "json_schema", "json_schema": {"name": "x"}},
        unknown_vendor_field={"kept": True},
    )
    assert validate_chat(body) == ("m", True)


def test_stream_null_means_false() -> None:
    assert validate_chat(chat(stream=None)) == ("m", False)


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"messages": [USER]}, "model", "'model' is required."),
        (chat(model=""), "model", "'model' must be a non-empty string, got str."),
        (chat(model=3), "model", "'model' must be a non-empty string, got int."),
        ({"model": "m"}, "messages", "'messages' is required."),
        (chat(messages="hi"), "messages", "'messages' must be a list, got str."),
        (chat(messages=[]), "messages", "'messages' must hold at least one message."),
        (chat(messages=["hi"]), "messages[0]", "'messages[0]' must be an object, got str."),
        (
            chat(messages=[USER, {"role": "robot", "content": "x"}]),
            "messages[1].role",
            "'messages[1].role' must be one of assistant, developer, function, system, tool, "
            "user, got 'robot'.",
        ),
        (
            chat(messages=[{"content": "x"}]),
            "messages[0].role",
            "'messages[0].role' must be one of assistant, developer, function, system, tool, "
            "user, got None.",
        ),
        (
            chat(messages=[{"role": "user"}]),
            "messages[0].content",
            "'messages[0].content' is required.",
        ),
        (
            chat(messages=[{"role": "user", "content": 5}]),
            "messages[0].content",
            "'messages[0].content' must be a string or a list of content parts, got int.",
        ),
        (
            chat(messages=[{"role": "user", "content": [{"text": "no type"}]}]),
            "messages[0].content[0]",
            "'messages[0].content[0]' must be an object with a 'type'.",
        ),
        (
            chat(messages=[{"role": "tool", "content": "42"}]),
            "messages[0].tool_call_id",
            "'messages[0].tool_call_id' is required for role 'tool'.",
        ),
        (chat(stream="yes"), "stream", "'stream' must be a boolean, got str."),
        (chat(stream=1), "stream", "'stream' must be a boolean, got int."),
        (
            chat(stream_options={"include_usage": True}),
            "stream_options",
            "'stream_options' is only allowed when 'stream' is true.",
        ),
        (
            chat(stream=False, stream_options={}),
            "stream_options",
            "'stream_options' is only allowed when 'stream' is true.",
        ),
        (
            chat(stream=True, stream_options=[]),
            "stream_options",
            "'stream_options' must be an object, got list.",
        ),
        (
            chat(stream=True, stream_options={"include_usage": "yes"}),
            "stream_options.include_usage",
            "'stream_options.include_usage' must be a boolean, got str.",
        ),
        (chat(temperature="hot"), "temperature", "'temperature' must be a number, got str."),
        (chat(temperature=True), "temperature", "'temperature' must be a number, got bool."),
        (
            chat(temperature=2.5),
            "temperature",
            "'temperature' must be between 0.0 and 2.0, got 2.5.",
        ),
        (chat(top_p=-0.1), "top_p", "'top_p' must be between 0.0 and 1.0, got -0.1."),
        (
            chat(presence_penalty=3),
            "presence_penalty",
            "'presence_penalty' must be between -2.0 and 2.0, got 3.",
        ),
        (chat(max_tokens=True), "max_tokens", "'max_tokens' must be an integer, got bool."),
        (chat(max_tokens=1.5), "max_tokens", "'max_tokens' must be an integer, got float."),
        (chat(max_tokens=0), "max_tokens", "'max_tokens' must be at least 1, got 0."),
        (
            chat(max_completion_tokens=False),
            "max_completion_tokens",
            "'max_completion_tokens' must be an integer, got bool.",
        ),
        (chat(n=129), "n", "'n' must be between 1 and 128, got 129."),
        (chat(seed="1"), "seed", "'seed' must be an integer, got str."),
        (chat(stop=7), "stop", "'stop' must be a string or a list of strings, got int."),
        (chat(stop=["a", 1]), "stop", "'stop' must be a string or a list of strings, got list."),
        (chat(stop=["a"] * 5), "stop", "'stop' may hold at most 4 sequences."),
        (chat(tools={"name": "f"}), "tools", "'tools' must be a list, got dict."),
        (
            chat(tools=[{"type": "function", "function": {}}]),
            "tools[0]",
            "'tools[0]' must be {'type': 'function', 'function': {'name': ...}}.",
        ),
        (
            chat(response_format={"type": "yaml"}),
            "response_format",
            "'response_format.type' must be one of text, json_object, json_schema.",
        ),
        (
            chat(response_format="json"),
            "response_format",
            "'response_format.type' must be one of text, json_object, json_schema.",
        ),
    ],
)
def test_chat_refusals(body: dict[str, Any], param: str, message: str) -> None:
    exc = refused(validate_chat, body)
    assert (exc.param, exc.message, exc.code) == (param, message, None)


@pytest.mark.parametrize("role", [["user"], {"r": "user"}])
def test_unhashable_role_is_a_400(role: Any) -> None:
    exc = refused(validate_chat, chat(messages=[{"role": role, "content": "x"}]))
    assert exc.param == "messages[0].role"


def test_completion_prompts() -> None:
    for prompt in ("", "hi", ["a", "b"], [1, 2, 3], [[1, 2], [3]]):
        assert validate_completion({"model": "m", "prompt": prompt}) == ("m", False)
    assert validate_completion(
        {"model": "m", "prompt": "x", "stream": True, "stream_options": {"include_usage": True}}
    ) == ("m", True)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m"}, "prompt"),
        ({"model": "m", "prompt": []}, "prompt"),
        ({"model": "m", "prompt": ["a", 1]}, "prompt"),
        ({"model": "m", "prompt": [True, False]}, "prompt"),
        ({"model": "m", "prompt": [[1], []]}, "prompt"),
        ({"model": "m", "prompt": {"text": "x"}}, "prompt"),
        ({"prompt": "x"}, "model"),
        ({"model": "m", "prompt": "x", "max_tokens": "5"}, "max_tokens"),
        ({"model": "m", "prompt": "x", "stream_options": {}}, "stream_options"),
    ],
)
def test_completion_refusals(body: dict[str, Any], param: str) -> None:
    assert refused(validate_completion, body).param == param


@pytest.mark.parametrize("data", ["hello", ["a", "b"], [1, 2, 3], [[1, 2], [3, 4]], ["x"] * 2048])
def test_embedding_inputs(data: Any) -> None:
    assert validate_embeddings({"model": "e", "input": data}) == "e"


def test_embedding_options() -> None:
    body = {"model": "e", "input": "x", "encoding_format": "base64", "dimensions": 8}
    assert validate_embeddings(body) == "e"


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"model": "e"}, "input", "'input' is required."),
        ({"model": "e", "input": ""}, "input", "'input' must not be empty."),
        ({"model": "e", "input": []}, "input", "'input' must hold at least one item."),
        (
            {"model": "e", "input": ["x"] * 2049},
            "input",
            "'input' may hold at most 2048 items, got 2049.",
        ),
        ({"model": "e", "input": ["a", ""]}, "input[1]", "'input[1]' must not be empty."),
        (
            {"model": "e", "input": ["a", 1]},
            "input",
            "'input' must be a string, a list of strings, or token ids, got list.",
        ),
        (
            {"model": "e", "input": [True]},
            "input",
            "'input' must be a string, a list of strings, or token ids, got list.",
        ),
        (
            {"model": "e", "input": [[1], "a"]},
            "input",
            "'input' must be a string, a list of strings, or token ids, got list.",
        ),
        ({"model": "e", "input": 5}, "input", "'input' must be a string or a list, got int."),
        (
            {"model": "e", "input": "x", "encoding_format": "int8"},
            "encoding_format",
            "'encoding_format' must be 'float' or 'base64', got 'int8'.",
        ),
        (
            {"model": "e", "input": "x", "dimensions": 0},
            "dimensions",
            "'dimensions' must be at least 1, got 0.",
        ),
        ({"input": "x"}, "model", "'model' is required."),
    ],
)
def test_embedding_refusals(body: dict[str, Any], param: str, message: str) -> None:
    exc = refused(validate_embeddings, body)
    assert (exc.param, exc.message) == (param, message)


def test_body_is_not_modified() -> None:
    body = chat(stream=True, stream_options={"include_usage": True}, extra={"a": [1]})
    before = repr(body)
    validate_chat(body)
    assert repr(body) == before
