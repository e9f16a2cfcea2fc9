"""An Anthropic Messages request from a Claude client: checked, then told as OpenAI chat.

This is what lets Claude clients (``/v1/messages``) use any backend; the other
direction is in ``anthropic_upstream``. What OpenAI chat cannot express is
refused with an InvalidRequest naming the field, never silently dropped, except
what changes no contract (``top_k``, ``metadata``, Claude's thinking). Pure
functions, no I/O.
"""

from __future__ import annotations

from typing import Any

import orjson

from sluicegate.errors import InvalidRequest
from sluicegate.types import JSONObject

__all__ = ["to_openai_request", "validate_messages"]

_ROLES = ("user", "assistant")
_TOOL_CHOICES = ("auto", "any", "tool", "none")


def _got(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _expect(field: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(f"'{field}' must be {expected}, got {_got(value)}.", param=field)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(body: JSONObject, field: str, low: float, high: float) -> None:
    value = body.get(field)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _expect(field, "a number", value)
    if not low <= value <= high:
        raise InvalidRequest(
            f"'{field}' must be between {low} and {high}, got {value}.", param=field
        )


def _blocks(value: Any, where: str) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise _expect(where, "a string or a list of content blocks", value)
    for index, block in enumerate(value):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise InvalidRequest(
                f"'{where}[{index}]' must be an object with a 'type'.", param=f"{where}[{index}]"
            )


def validate_messages(body: JSONObject) -> tuple[str, bool]:
    """The model and stream flag of an Anthropic Messages request, or InvalidRequest."""
    model = body.get("model")
    if model is None:
        raise InvalidRequest("'model' is required.", param="model")
    if not isinstance(model, str) or not model:
        raise _expect("model", "a non-empty string", model)
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise InvalidRequest("'max_tokens' is required.", param="max_tokens")
    if not _is_int(max_tokens) or max_tokens < 1:
        raise InvalidRequest(
            f"'max_tokens' must be an integer of at least 1, got {max_tokens!r}.",
            param="max_tokens",
        )
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("'messages' is required.", param="messages")
    if not isinstance(messages, list):
        raise _expect("messages", "a list", messages)
    if not messages:
        raise InvalidRequest("'messages' must hold at least one message.", param="messages")
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _expect(where, "an object", message)
        if message.get("role") not in _ROLES:
            raise InvalidRequest(
                f"'{where}.role' must be 'user' or 'assistant', got {message.get('role')!r}.",
                param=f"{where}.role",
            )
        if "content" not in message:
            raise InvalidRequest(f"'{where}.content' is required.", param=f"{where}.content")
        _blocks(message["content"], f"{where}.content")
    if body.get("system") is not None:
        _blocks(body["system"], "system")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise _expect("stream", "a boolean", stream)
    _number(body, "temperature", 0.0, 1.0)
    _number(body, "top_p", 0.0, 1.0)
    stops = body.get("stop_sequences")
    if stops is not None and (
        not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)
    ):
        raise _expect("stop_sequences", "a list of strings", stops)
    return model, bool(stream)


def _text(block: JSONObject, where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise _expect(f"{where}.text", "a string", text)
    return text


def _text_of(value: Any, where: str) -> str:
    """A string, or the text blocks of a block list joined as paragraphs."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        return ""
    return "\n\n".join(
        _text(block, f"{where}[{index}]")
        for index, block in enumerate(value)
        if isinstance(block, dict) and block.get("type") == "text"
    )


def _image_part(block: JSONObject, where: str) -> JSONObject:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64":
        assert isinstance(source, dict)
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif kind == "url" and isinstance(source, dict) and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise InvalidRequest(
            f"'{where}.source.type' must be 'base64' or 'url', got {kind!r}.",
            param=f"{where}.source",
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_message(block: JSONObject, where: str) -> tuple[JSONObject, list[JSONObject]]:
    """A tool_result as an OpenAI tool message, plus its images (tool messages hold text only)."""
    content = block.get("content")
    images: list[JSONObject] = []
    if isinstance(content, list):
        for index, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "image":
                images.append(_image_part(part, f"{where}.content[{index}]"))
    text = _text_of(content, f"{where}.content")
    if block.get("is_error"):
        # OpenAI has no error flag on tool results; say it in words so the model still knows.
        text = f"Error: {text}" if text else "Error"
    message = {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text}
    return message, images


def _user_messages(content: Any, where: str) -> list[JSONObject]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tools: list[JSONObject] = []
    parts: list[JSONObject] = []
    for index, block in enumerate(content):
        kind = block["type"]
        at = f"{where}[{index}]"
        if kind == "text":
            parts.append({"type": "text", "text": _text(block, at)})
        elif kind == "image":
            parts.append(_image_part(block, at))
        elif kind == "tool_result":
            message, images = _tool_message(block, at)
            tools.append(message)
            parts.extend(images)
        else:
            raise InvalidRequest(
                f"'{at}.type' {kind!r} cannot be sent to this backend; "
                "use text, image, tool_use or tool_result blocks.",
                param=f"{at}.type",
            )
    # Tool results must directly follow the assistant's tool calls, so they go first.
    out = tools
    if parts and all(p["type"] == "text" for p in parts):
        out.append({"role": "user", "content": "\n\n".join(p["text"] for p in parts)})
    elif parts:
        out.append({"role": "user", "content": parts})
    return out


def _assistant_message(content: Any, where: str) -> JSONObject:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[JSONObject] = []
    for index, block in enumerate(content):
        kind = block["type"]
        if kind == "text":
            texts.append(_text(block, f"{where}[{index}]"))
        elif kind == "tool_use":
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
        elif kind not in ("thinking", "redacted_thinking"):
            # Thinking is Claude's own and means nothing to another backend; anything else
            # (server tool blocks, documents) would change the conversation if dropped.
            raise InvalidRequest(
                f"'{where}[{index}].type' {kind!r} cannot be sent to this backend.",
                param=f"{where}[{index}].type",
            )
    message: JSONObject = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    return message


def _openai_tools(tools: Any) -> list[JSONObject]:
    if not isinstance(tools, list):
        raise _expect("tools", "a list", tools)
    out: list[JSONObject] = []
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise InvalidRequest(f"'{where}' must be an object with a 'name'.", param=where)
        if tool.get("type") not in (None, "custom"):
            raise InvalidRequest(
                f"'{where}.type' {tool['type']!r} is an Anthropic server tool; "
                "only client tools with an input_schema can be sent to this backend.",
                param=f"{where}.type",
            )
        fn: JSONObject = {"name": tool["name"]}
        if tool.get("description"):
            fn["description"] = tool["description"]
        fn["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
        out.append({"type": "function", "function": fn})
    return out


def _openai_tool_choice(choice: Any, out: JSONObject) -> None:
    if not isinstance(choice, dict) or choice.get("type") not in _TOOL_CHOICES:
        raise InvalidRequest(
            "'tool_choice.type' must be one of auto, any, tool, none.", param="tool_choice"
        )
    kind = choice["type"]
    if kind == "tool":
        if not isinstance(choice.get("name"), str):
            raise InvalidRequest("'tool_choice.name' is required.", param="tool_choice.name")
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if choice.get("disable_parallel_tool_use"):
        out["parallel_tool_calls"] = False


def to_openai_request(body: JSONObject) -> JSONObject:
    """A validated Anthropic Messages request as an OpenAI chat request.

    Dropped: ``metadata`` (OpenAI's is a different thing), ``top_k`` (no OpenAI
    field), and thinking settings and blocks (Claude's own).
    """
    messages: list[JSONObject] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": _text_of(system, "system")})
    for index, message in enumerate(body["messages"]):
        where = f"messages[{index}].content"
        if message["role"] == "user":
            messages.extend(_user_messages(message["content"], where))
        else:
            messages.append(_assistant_message(message["content"], where))
    out: JSONObject = {
        "model": body["model"],
        "messages": messages,
        "max_tokens": body["max_tokens"],
    }
    for field in ("temperature", "top_p"):
        if body.get(field) is not None:
            out[field] = body[field]
    if body.get("stop_sequences"):
        out["stop"] = body["stop_sequences"]
    if body.get("tools"):
        out["tools"] = _openai_tools(body["tools"])
    # OpenAI refuses tool_choice without tools; without tools there is nothing to choose.
    if body.get("tool_choice") is not None and out.get("tools"):
        _openai_tool_choice(body["tool_choice"], out)
    if body.get("stream"):
        # The Anthropic stream ends with usage, so the backend must send it.
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out
