"""The Anthropic Messages API ⇄ OpenAI chat: whole responses, usage, stop reasons and errors.

Requests are translated in ``anthropic_request``, streams in ``anthropic_stream``;
this module holds what both share and the non-streamed response shapes. Pure
functions, no I/O.

Usage is kept exact in both directions. Anthropic counts cached prompt tokens
apart from ``input_tokens``; OpenAI counts them inside ``prompt_tokens`` and
names the cache hits in ``prompt_tokens_details.cached_tokens``.
"""

from __future__ import annotations

from typing import Any

import orjson

from sluicegate.errors import (
    RateLimited,
    ServiceUnavailable,
    SluicegateError,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)
from sluicegate.types import JSONObject

__all__ = [
    "anthropic_usage",
    "error_body",
    "error_message",
    "error_type",
    "finish_reason",
    "message_id",
    "obj",
    "openai_usage",
    "stop_reason",
    "to_anthropic_message",
    "to_openai_completion",
    "upstream_error",
]

_FINISH_TO_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# ``pause_turn`` only follows Anthropic's own server tools, which the gateway never asks for.
_STOP_TO_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def obj(value: Any) -> JSONObject:
    """``value`` if it is a JSON object, else an empty one: upstream JSON is not trusted."""
    return value if isinstance(value, dict) else {}


def stop_reason(finish: Any) -> str:
    """Anthropic's ``stop_reason`` for an OpenAI ``finish_reason``."""
    return _FINISH_TO_STOP.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"


def finish_reason(stop: Any) -> str:
    """OpenAI's ``finish_reason`` for an Anthropic ``stop_reason``."""
    return _STOP_TO_FINISH.get(stop, "stop") if isinstance(stop, str) else "stop"


def openai_usage(usage: Any) -> JSONObject | None:
    """Anthropic usage → OpenAI usage; cache reads and writes count as prompt tokens."""
    if not isinstance(usage, dict):
        return None
    cache_read = usage.get("cache_read_input_tokens")
    prompt = (
        _int(usage.get("input_tokens"))
        + _int(cache_read)
        + _int(usage.get("cache_creation_input_tokens"))
    )
    completion = _int(usage.get("output_tokens"))
    out: JSONObject = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cache_read is not None:
        out["prompt_tokens_details"] = {"cached_tokens": _int(cache_read)}
    return out


def anthropic_usage(usage: Any) -> JSONObject:
    """OpenAI usage → Anthropic usage; cache hits move out of ``input_tokens``."""
    if not isinstance(usage, dict):
        return {"input_tokens": 0, "output_tokens": 0}
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    out: JSONObject = {
        "input_tokens": max(0, _int(usage.get("prompt_tokens")) - _int(cached)),
        "output_tokens": _int(usage.get("completion_tokens")),
    }
    if isinstance(cached, int):
        out["cache_read_input_tokens"] = cached
    return out


def message_id(openai_id: Any) -> str:
    """An Anthropic-looking id that still lets an operator find the upstream's own."""
    text = openai_id if isinstance(openai_id, str) and openai_id else "unknown"
    return "msg_" + text.removeprefix("chatcmpl-")


def _tool_input(arguments: Any, where: str) -> JSONObject:
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    try:
        decoded = orjson.loads(arguments)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise UpstreamError(f"The backend's {where} is not valid JSON.") from exc
    if not isinstance(decoded, dict):
        raise UpstreamError(f"The backend's {where} is not a JSON object.")
    return decoded


def to_anthropic_message(response: JSONObject, model: str) -> JSONObject:
    """An OpenAI chat completion as an Anthropic message (the first choice)."""
    choices = response.get("choices")
    choice = obj(choices[0]) if isinstance(choices, list) and choices else {}
    message = obj(choice.get("message"))
    content: list[JSONObject] = []
    text = message.get("content")
    if isinstance(text, list):  # some servers answer with content parts
        text = "".join(p["text"] for p in text if isinstance(obj(p).get("text"), str))
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    for index, call in enumerate(calls if isinstance(calls, list) else []):
        fn = obj(obj(call).get("function"))
        content.append(
            {
                "type": "tool_use",
                "id": obj(call).get("id") or f"toolu_{index}",
                "name": fn.get("name", ""),
                "input": _tool_input(fn.get("arguments"), f"tool call {index} arguments"),
            }
        )
    finish = choice.get("finish_reason")
    stop = stop_reason(finish)
    # vLLM names the stop string that ended the answer; that is Anthropic's stop_sequence.
    matched = choice.get("stop_reason")
    stop_sequence = matched if finish == "stop" and isinstance(matched, str) else None
    if stop_sequence is not None:
        stop = "stop_sequence"
    return {
        "id": message_id(response.get("id")),
        "type": "message",
        "role": "assistant",
        "model": response.get("model") or model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": stop_sequence,
        "usage": anthropic_usage(response.get("usage")),
    }


def to_openai_completion(message: JSONObject, model: str, created: int) -> JSONObject:
    """An Anthropic message as an OpenAI chat completion. Thinking blocks are not carried."""
    texts: list[str] = []
    tool_calls: list[JSONObject] = []
    blocks = message.get("content")
    for block in blocks if isinstance(blocks, list) else []:
        kind = obj(block).get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
    reply: JSONObject = {"role": "assistant", "content": "".join(texts) if texts else None}
    if tool_calls:
        reply["tool_calls"] = tool_calls
    out: JSONObject = {
        "id": message.get("id"),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model") or model,
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": finish_reason(message.get("stop_reason")),
            }
        ],
    }
    usage = openai_usage(message.get("usage"))
    if usage is not None:
        out["usage"] = usage
    return out


def error_type(status: int) -> str:
    """Anthropic's error type for an HTTP status."""
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def error_body(exc: SluicegateError, request_id: str | None) -> JSONObject:
    """Our error in Anthropic's shape, for Claude clients of /v1/messages."""
    return {
        "type": "error",
        "error": {"type": error_type(exc.status), "message": exc.message},
        "request_id": request_id,
    }


def error_message(body: bytes) -> str | None:
    """The message of an Anthropic error body, if it is one."""
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = decoded.get("error") if isinstance(decoded, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return str(message)[:500] if message is not None else None


def upstream_error(deployment: str, error: Any) -> SluicegateError:
    """The error for an Anthropic ``event: error`` (or a 529), by its type."""
    kind = error.get("type") if isinstance(error, dict) else None
    text = error.get("message") if isinstance(error, dict) else None
    said = f": {text}" if text else ""
    if kind == "overloaded_error":
        return ServiceUnavailable(
            f"Deployment '{deployment}' is overloaded{said}", code="upstream_overloaded"
        )
    if kind == "rate_limit_error":
        return RateLimited(
            f"Deployment '{deployment}' is rate limiting requests{said}",
            retry_after=1.0,
            code="upstream_rate_limited",
        )
    if kind == "timeout_error":
        return UpstreamTimeout(f"Deployment '{deployment}' timed out{said}")
    if kind in ("invalid_request_error", "request_too_large"):
        return UpstreamRejected(
            str(text or "The upstream rejected the request."),
            status=413 if kind == "request_too_large" else 400,
            type="invalid_request_error",
        )
    return UpstreamError(f"Deployment '{deployment}' failed ({kind or 'unknown error'}){said}")
