"""A fake Anthropic Messages API, as a real server.

Its behaviour is picked by the first path segment, so one server plays many
deployments: ``{base}/{mode}/v1/messages``. Modes:

- ``ok``: echoes the last user text (streams it word by word when asked); when
  tools are given and the last user turn is not a tool result, calls the first
  tool with ``{"location": "Paris"}`` (streamed as ``input_json_delta`` pieces)
- ``status-NNN``: answers HTTP NNN with an Anthropic error body (429 carries
  Retry-After: 7; 529 is ``overloaded_error``)
- ``cut``: streams the start of an answer, then drops the connection
- ``overloaded``: streams the start of an answer, then an ``event: error`` overloaded_error

Usage is always 13 fresh input tokens plus 4 read from the cache, and one
output token per word. Every request's path, headers and body are kept in
``SEEN`` for assertions.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["SEEN", "TOOL_INPUT", "app"]

SEEN: list[dict[str, Any]] = []

TOOL_INPUT = {"location": "Paris"}

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _error(status: int, message: str) -> Response:
    body = {
        "type": "error",
        "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message},
    }
    headers = {"retry-after": "7"} if status == 429 else None
    return JSONResponse(body, status, headers)


def _usage(output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": 13,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 4,
        "output_tokens": output_tokens,
    }


def _last_user_turn(body: dict[str, Any]) -> list[dict[str, Any]]:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message["content"]
            return [{"type": "text", "text": content}] if isinstance(content, str) else content
    return []


def _answer(body: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """(text, tool call or None) for this request."""
    turn = _last_user_turn(body)
    results = [b for b in turn if b.get("type") == "tool_result"]
    if body.get("tools") and not results:
        tool = body["tools"][0]["name"]
        return "Let me check.", {"id": "toolu_01FakeFakeFake", "name": tool}
    if results:
        content = results[0].get("content", "")
        if isinstance(content, list):
            content = " ".join(b.get("text", "") for b in content)
        return f"echo: {content}", None
    text = " ".join(b.get("text", "") for b in turn if b.get("type") == "text")
    return f"echo: {text}", None


def _message(body: dict[str, Any]) -> dict[str, Any]:
    text, tool = _answer(body)
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    if tool is not None:
        content.append({"type": "tool_use", **tool, "input": TOOL_INPUT})
    return {
        "id": "msg_01FakeFakeFake",
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": content,
        "stop_reason": "tool_use" if tool else "end_turn",
        "stop_sequence": None,
        "usage": _usage(len(text.split())),
    }


def _event(payload: dict[str, Any]) -> bytes:
    return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()


async def _stream(body: dict[str, Any], mode: str) -> AsyncIterator[bytes]:
    text, tool = _answer(body)
    start = {**_message(body), "content": [], "stop_reason": None, "usage": _usage(1)}
    yield _event({"type": "message_start", "message": start})
    yield _event(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    )
    yield _event({"type": "ping"})
    words = text.split(" ")
    for index, word in enumerate(words):
        delta = {"type": "text_delta", "text": word if index == 0 else " " + word}
        data = _event({"type": "content_block_delta", "index": 0, "delta": delta})
        # Split one event across two writes, as real servers and proxies sometimes do.
        yield data[:9]
        yield data[9:]
        if index == 1 and mode == "cut":
            raise ConnectionResetError("fake upstream drops the stream")
        if index == 1 and mode == "overloaded":
            yield _event(
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            )
            return
    yield _event({"type": "content_block_stop", "index": 0})
    if tool is not None:
        yield _event(
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", **tool, "input": {}},
            }
        )
        encoded = json.dumps(TOOL_INPUT)
        for piece in ("", encoded[:5], encoded[5:14], encoded[14:]):
            yield _event(
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": piece},
                }
            )
        yield _event({"type": "content_block_stop", "index": 1})
    yield _event(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": len(text.split())},
        }
    )
    yield _event({"type": "message_stop"})


async def messages(request: Request) -> Response:
    mode = request.path_params["mode"]
    body = json.loads(await request.body())
    SEEN.append({"path": request.url.path, "headers": dict(request.headers), "body": body})
    if mode.startswith("status-"):
        return _error(int(mode.split("-")[1]), f"fake upstream says {mode}")
    if body.get("stream"):
        return StreamingResponse(_stream(body, mode), media_type="text/event-stream")
    return JSONResponse(_message(body))


async def models(request: Request) -> Response:
    mode = request.path_params["mode"]
    if mode.startswith("status-"):
        return _error(int(mode.split("-")[1]), "down")
    return JSONResponse(
        {
            "data": [{"type": "model", "id": "claude-fake", "display_name": "Claude Fake"}],
            "has_more": False,
        }
    )


app = Starlette(
    routes=[
        Route("/{mode}/v1/messages", messages, methods=["POST"]),
        Route("/{mode}/v1/models", models, methods=["GET"]),
    ]
)
