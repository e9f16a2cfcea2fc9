"""Checks on OpenAI request bodies: just what the gateway needs, each error naming its field.

Deliberately not a pydantic model of the whole request: unknown fields pass
through to the backend untouched, and the hot path pays for a few dict lookups.
"""

from __future__ import annotations

from typing import Any

from sluicegate.errors import InvalidRequest
from sluicegate.types import JSONObject

__all__ = ["validate_chat", "validate_completion", "validate_embeddings"]

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_MAX_EMBED_INPUTS = 2048


def _type_error(field: str, expected: str, value: Any) -> InvalidRequest:
    got = "null" if value is None else type(value).__name__
    return InvalidRequest(f"'{field}' must be {expected}, got {got}.", param=field)


def _model(body: JSONObject) -> str:
    model = body.get("model")
    if model is None:
        raise InvalidRequest("'model' is required.", param="model")
    if not isinstance(model, str) or not model:
        raise _type_error("model", "a non-empty string", model)
    return model


def _stream(body: JSONObject) -> bool:
    stream = body.get("stream", False)
    if stream is None:
        return False
    if not isinstance(stream, bool):
        raise _type_error("stream", "a boolean", stream)
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _type_error("stream_options", "an object", options)
        if not stream:
            raise InvalidRequest(
                "'stream_options' is only allowed when 'stream' is true.", param="stream_options"
            )
        usage = options.get("include_usage")
        if usage is not None and not isinstance(usage, bool):
            raise _type_error("stream_options.include_usage", "a boolean", usage)
    return bool(stream)


def _int(body: JSONObject, field: str, low: int, high: int | None = None) -> None:
    value = body.get(field)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(field, "an integer", value)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidRequest(f"'{field}' must be {bound}, got {value}.", param=field)


def _number(body: JSONObject, field: str, low: float, high: float) -> None:
    value = body.get(field)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(field, "a number", value)
    if not low <= value <= high:
        raise InvalidRequest(
            f"'{field}' must be between {low} and {high}, got {value}.", param=field
        )


def _stop(body: JSONObject) -> None:
    stop = body.get("stop")
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise _type_error("stop", "a string or a list of strings", stop)
    if len(stop) > 4:
        raise InvalidRequest("'stop' may hold at most 4 sequences.", param="stop")


def _sampling(body: JSONObject) -> None:
    _number(body, "temperature", 0.0, 2.0)
    _number(body, "top_p", 0.0, 1.0)
    _number(body, "presence_penalty", -2.0, 2.0)
    _number(body, "frequency_penalty", -2.0, 2.0)
    _int(body, "max_tokens", 1)
    _int(body, "n", 1, 128)
    _int(body, "seed", -(2**63), 2**64 - 1)
    _stop(body)


def _message(index: int, message: Any) -> None:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise _type_error(where, "an object", message)
    role = message.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise InvalidRequest(
            f"'{where}.role' must be one of {', '.join(sorted(_ROLES))}, got {role!r}.",
            param=f"{where}.role",
        )
    content = message.get("content")
    if content is None:
        if role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
            return
        raise InvalidRequest(f"'{where}.content' is required.", param=f"{where}.content")
    if isinstance(content, str):
        pass
    elif isinstance(content, list):
        for part_index, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise InvalidRequest(
                    f"'{where}.content[{part_index}]' must be an object with a 'type'.",
                    param=f"{where}.content[{part_index}]",
                )
    else:
        raise _type_error(f"{where}.content", "a string or a list of content parts", content)
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise InvalidRequest(
            f"'{where}.tool_call_id' is required for role 'tool'.", param=f"{where}.tool_call_id"
        )


def _tools(body: JSONObject) -> None:
    tools = body.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _type_error("tools", "a list", tools)
    for index, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidRequest(
                f"'tools[{index}]' must be {{'type': 'function', 'function': {{'name': ...}}}}.",
                param=f"tools[{index}]",
            )


def _response_format(body: JSONObject) -> None:
    fmt = body.get("response_format")
    if fmt is None:
        return
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise InvalidRequest(
            "'response_format.type' must be one of text, json_object, json_schema.",
            param="response_format",
        )


def validate_chat(body: JSONObject) -> tuple[str, bool]:
    """The model and stream flag of a chat completion request, or InvalidRequest."""
    model = _model(body)
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("'messages' is required.", param="messages")
    if not isinstance(messages, list):
        raise _type_error("messages", "a list", messages)
    if not messages:
        raise InvalidRequest("'messages' must hold at least one message.", param="messages")
    for index, message in enumerate(messages):
        _message(index, message)
    stream = _stream(body)
    _sampling(body)
    _int(body, "max_completion_tokens", 1)
    _tools(body)
    _response_format(body)
    return model, stream


def validate_completion(body: JSONObject) -> tuple[str, bool]:
    model = _model(body)
    prompt = body.get("prompt")
    if prompt is None:
        raise InvalidRequest("'prompt' is required.", param="prompt")
    if not (
        isinstance(prompt, str)
        or (isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt))
        or (isinstance(prompt, list) and prompt and all(_is_token_ids(p) for p in prompt))
        or _is_token_ids(prompt)
    ):
        raise _type_error("prompt", "a string, a list of strings, or token ids", prompt)
    stream = _stream(body)
    _sampling(body)
    return model, stream


def validate_embeddings(body: JSONObject) -> str:
    model = _model(body)
    data = body.get("input")
    if data is None:
        raise InvalidRequest("'input' is required.", param="input")
    if isinstance(data, str):
        if not data:
            raise InvalidRequest("'input' must not be empty.", param="input")
    elif isinstance(data, list):
        if not data:
            raise InvalidRequest("'input' must hold at least one item.", param="input")
        if len(data) > _MAX_EMBED_INPUTS:
            raise InvalidRequest(
                f"'input' may hold at most {_MAX_EMBED_INPUTS} items, got {len(data)}.",
                param="input",
            )
        if not (
            all(isinstance(item, str) for item in data)
            or _is_token_ids(data)
            or all(_is_token_ids(item) for item in data)
        ):
            raise _type_error("input", "a string, a list of strings, or token ids", data)
        for index, item in enumerate(data):
            if isinstance(item, str) and not item:
                raise InvalidRequest(
                    f"'input[{index}]' must not be empty.", param=f"input[{index}]"
                )
    else:
        raise _type_error("input", "a string or a list", data)
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise InvalidRequest(
            f"'encoding_format' must be 'float' or 'base64', got {fmt!r}.", param="encoding_format"
        )
    _int(body, "dimensions", 1)
    return model


def _is_token_ids(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    )
