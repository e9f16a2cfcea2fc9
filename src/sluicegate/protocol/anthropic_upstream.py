"""What an Anthropic deployment is sent: an OpenAI chat request as a Messages request.

This is what lets any OpenAI client use Claude. Anthropic wants the system
prompt apart, strictly alternating user/assistant turns, tool results inside
user turns and a max_tokens on every call; the translation makes it so. What
Anthropic cannot do (JSON ``response_format``, ``n`` > 1, logprobs) is refused
with an InvalidRequest naming the field. Pure functions, no I/O.
"""

from __future__ import annotations

from typing import Any

import orjson

from sluicegate.errors import InvalidRequest
from sluicegate.types import JSONObject

__all__ = ["to_anthropic_request"]


def _refuse(field: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"'{field}' {why}", param=field)


def _string(part: JSONObject, field: str, where: str) -> str:
    value = part.get(field)
    if not isinstance(value, str):
        raise _refuse(f"{where}.{field}", "must be a string.")
    return value


def _texts(content: Any, where: str) -> list[str]:
    """The text of a string or of text parts; other parts are refused."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    for index, part in enumerate(content):
        kind = part.get("type")
        if kind in ("text", "refusal"):
            out.append(_string(part, kind, f"{where}[{index}]"))
        else:
            raise _refuse(f"{where}[{index}].type", f"{kind!r} is not supported here.")
    return out


def _image(part: JSONObject, where: str) -> JSONObject:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise _refuse(f"{where}.image_url.url", "is required.")
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64":
            raise _refuse(f"{where}.image_url.url", "must be a base64 data: URL or an http(s) URL.")
        source: JSONObject = {"type": "base64", "media_type": media_type, "data": data}
    elif url.startswith(("http://", "https://")):
        source = {"type": "url", "url": url}
    else:
        raise _refuse(f"{where}.image_url.url", "must be a base64 data: URL or an http(s) URL.")
    return {"type": "image", "source": source}


def _user_blocks(content: Any, where: str) -> list[JSONObject]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks: list[JSONObject] = []
    for index, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": _string(part, "text", f"{where}[{index}]")})
        elif kind == "image_url":
            blocks.append(_image(part, f"{where}[{index}]"))
        else:
            raise _refuse(f"{where}[{index}].type", f"{kind!r} cannot be sent to Anthropic.")
    return blocks


def _assistant_blocks(message: JSONObject, where: str) -> list[JSONObject]:
    blocks: list[JSONObject] = [
        {"type": "text", "text": text}
        for text in _texts(message.get("content"), f"{where}.content")
    ]
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise _refuse(f"{where}.tool_calls", "must be a list.")
    for index, call in enumerate(calls):
        at = f"{where}.tool_calls[{index}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _refuse(f"{at}.function.name", "is required.")
        arguments = fn.get("arguments") or "{}"
        try:
            decoded = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError as exc:
            raise _refuse(f"{at}.function.arguments", "is not valid JSON.") from exc
        if not isinstance(decoded, dict):
            raise _refuse(f"{at}.function.arguments", "must be a JSON object.")
        blocks.append(
            {"type": "tool_use", "id": call.get("id"), "name": fn["name"], "input": decoded}
        )
    return blocks


def _tool_result(message: JSONObject, where: str) -> JSONObject:
    text = "".join(_texts(message.get("content"), f"{where}.content"))
    block: JSONObject = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
    if text:
        block["content"] = text
    return block


def _conversation(messages: list[JSONObject]) -> tuple[list[str], list[JSONObject]]:
    """(system texts, alternating turns); turns of one role in a row are merged."""
    system: list[str] = []
    turns: list[JSONObject] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_texts(message.get("content"), f"{where}.content"))
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), f"{where}.content")
        elif role == "assistant":
            blocks = _assistant_blocks(message, where)
        elif role == "tool":
            role, blocks = "user", [_tool_result(message, where)]
        else:
            raise _refuse(f"{where}.role", f"{role!r} cannot be sent to Anthropic; use tools.")
        # Anthropic refuses empty text blocks; an empty turn is no turn at all.
        blocks = [b for b in blocks if b["type"] != "text" or b["text"]]
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        # Anthropic wants a user turn's tool results before its other blocks.
        if turn["role"] == "user":
            turn["content"].sort(key=lambda b: b["type"] != "tool_result")
    return system, turns


def _tools(tools: list[Any]) -> list[JSONObject]:
    out: list[JSONObject] = []
    for index, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") != "function" or not isinstance(fn, dict):
            raise _refuse(f"tools[{index}].type", "must be 'function' for Anthropic.")
        entry: JSONObject = {"name": fn.get("name")}
        if fn.get("description"):
            entry["description"] = fn["description"]
        entry["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
        out.append(entry)
    return out


def _tool_choice(choice: Any, parallel: Any) -> JSONObject | None:
    picked: JSONObject | None
    if choice is None:
        picked = None
    elif choice in ("auto", "none"):
        picked = {"type": choice}
    elif choice == "required":
        picked = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        if not isinstance(name, str):
            raise _refuse("tool_choice.function.name", "is required.")
        picked = {"type": "tool", "name": name}
    else:
        raise _refuse("tool_choice", "must be auto, none, required or a named function.")
    if parallel is False and (picked is None or picked["type"] != "none"):
        picked = {**(picked or {"type": "auto"}), "disable_parallel_tool_use": True}
    return picked


def _refuse_unsupported(body: JSONObject) -> None:
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        raise _refuse(
            "response_format",
            "JSON modes are not supported by Anthropic deployments; ask for JSON in the "
            "prompt or use a tool whose input_schema is the shape you want.",
        )
    n = body.get("n")
    if n is not None and n != 1:
        raise _refuse("n", "must be 1 for Anthropic deployments, which answer once per call.")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise _refuse("logprobs", "is not supported by Anthropic deployments.")


def to_anthropic_request(body: JSONObject, model: str, default_max_tokens: int) -> JSONObject:
    """A validated OpenAI chat request as a Messages request for ``model``.

    Dropped: ``seed``, ``presence_penalty``, ``frequency_penalty``, ``logit_bias``
    (sampling hints Anthropic has no field for) and ``stream_options`` (the
    gateway answers usage itself).
    """
    _refuse_unsupported(body)
    system, turns = _conversation(body["messages"])
    if not turns:
        raise _refuse("messages", "must hold at least one user or assistant message.")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    out: JSONObject = {"model": model, "max_tokens": max_tokens, "messages": turns}
    if system:
        out["system"] = "\n\n".join(system)
    temperature = body.get("temperature")
    if temperature is not None:
        # OpenAI allows up to 2, Anthropic 1; the hottest Anthropic offers is the closest.
        out["temperature"] = min(max(float(temperature), 0.0), 1.0)
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else stop
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
        choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            out["tool_choice"] = choice
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    if body.get("stream"):
        out["stream"] = True
    return out
