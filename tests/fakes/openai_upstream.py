"""A fake OpenAI-compatible upstream (vLLM-like), as a real server.

Its behaviour is picked by the first path segment, so one server plays many
deployments: ``{base}/{mode}/v1/chat/completions``. Modes:

- ``ok``: answers like vLLM (echoes the last user message; streams word by word)
- ``status-NNN``: answers HTTP NNN with an OpenAI error body (429 carries Retry-After: 7)
- ``context``: 400 ``context_length_exceeded``
- ``cut``: streams two chunks, then drops the connection without finishing
- ``short``: streams two chunks, then ends the response cleanly with no finish_reason or [DONE]
- ``nodone``: a complete stream (finish_reason, usage) but no ``[DONE]``
- ``stall``: streams one chunk, then sends nothing for 30 s
- ``slow``: waits 30 s before answering at all
- ``garbage``: 200 with a body that is not JSON
- ``nostream``: ignores stream=true and answers with one JSON body
- ``sleep-S``: like ``ok`` after waiting S seconds before answering (a ``slow`` that ends soon,
  so the server is not left holding a 30 s task when the tests finish)
- ``stall-S``: like ``stall`` but idles S seconds, then finishes the stream normally
- ``slowbody-S``: sends a non-streamed answer's headers and half its body, then the rest
  S seconds later
- ``late-S``: streams the first chunk, idles S seconds, then sends the rest of the answer
  and ``[DONE]`` in one write (so a reader gets the end of the stream in a single read)
- ``leak``: like ``ok``, and the answer goes on with PII the caller never sent (``LEAK``)
- any other mode (``ok2``...) behaves like ``ok``: a second deployment on the same server

Every request's path, headers, decoded body and raw body bytes are kept in ``seen``.
"""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

__all__ = ["SEEN", "app"]

SEEN: list[dict[str, Any]] = []
#: What mode ``leak`` adds to its answer: an email, an SSN and a card number.
LEAK = " Also write to jane.roe@example.org (SSN 536-90-4399, card 4111 1111 1111 1111)."


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


def _error(status: int, message: str, code: str | None = None) -> Response:
    headers = {"retry-after": "7"} if status == 429 else None
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }
    return _json(body, status, headers)


def _reply_text(body: dict[str, Any], mode: str = "ok") -> str:
    if mode == "leak":
        return _reply_text(body) + LEAK
    messages = body.get("messages") or []
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return f"echo: {content}"
    return f"echo: {body.get('prompt', '')}"


def _usage(text: str) -> dict[str, int]:
    completion = len(text.split())
    return {"prompt_tokens": 11, "completion_tokens": completion, "total_tokens": 11 + completion}


def _chunk(body: dict[str, Any], delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": body.get("model"),
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


async def _stream(body: dict[str, Any], mode: str) -> AsyncIterator[bytes]:
    text = _reply_text(body, mode)
    words = text.split(" ")
    yield (
        b"data: " + orjson.dumps(_chunk(body, {"role": "assistant", "content": ""}, None)) + b"\n\n"
    )
    for index, word in enumerate(words):
        piece = word if index == 0 else " " + word
        # Split one event across two writes, as real servers and proxies sometimes do.
        data = b"data: " + orjson.dumps(_chunk(body, {"content": piece}, None)) + b"\n\n"
        yield data[:7]
        yield data[7:]
        if mode == "cut" and index == 1:
            raise ConnectionResetError("fake upstream drops the stream")
        if mode == "short" and index == 1:
            return
        if mode == "stall" and index == 0:
            await asyncio.sleep(30)
        if mode.startswith("stall-") and index == 0:
            await asyncio.sleep(float(mode.removeprefix("stall-")))
    yield b"data: " + orjson.dumps(_chunk(body, {}, "stop")) + b"\n\n"
    options = body.get("stream_options") or {}
    if options.get("include_usage"):
        final = _chunk(body, {}, None)
        final["choices"] = []
        final["usage"] = _usage(text)
        yield b"data: " + orjson.dumps(final) + b"\n\n"
    if mode != "nodone":
        yield b"data: [DONE]\n\n"


async def _late(body: dict[str, Any], seconds: float) -> AsyncIterator[bytes]:
    whole = b"".join([event async for event in _stream(body, "ok")])
    first, rest = whole.split(b"\n\n", 1)
    yield first + b"\n\n"
    await asyncio.sleep(seconds)
    yield rest


async def chat(request: Request) -> Response:
    mode = request.path_params["mode"]
    raw = await request.body()
    body = orjson.loads(raw)
    SEEN.append(
        {"path": request.url.path, "headers": dict(request.headers), "body": body, "raw": raw}
    )
    if mode.startswith("status-"):
        return _error(int(mode.split("-")[1]), f"fake upstream says {mode}")
    if mode == "context":
        return _error(
            400, "This model's maximum context length is 8 tokens.", "context_length_exceeded"
        )
    if mode == "slow":
        await asyncio.sleep(30)
    if mode.startswith("sleep-"):
        await asyncio.sleep(float(mode.removeprefix("sleep-")))
    if mode == "garbage":
        return Response(b"<html>oops</html>", media_type="application/json")
    if body.get("stream") and mode.startswith("late-"):
        seconds = float(mode.removeprefix("late-"))
        return StreamingResponse(_late(body, seconds), media_type="text/event-stream")
    if body.get("stream") and mode != "nostream":
        return StreamingResponse(_stream(body, mode), media_type="text/event-stream")
    text = _reply_text(body, mode)
    message: dict[str, Any] = {"role": "assistant", "content": text}
    finish = "stop"
    if body.get("tools"):
        tool = body["tools"][0]["function"]["name"]
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": tool, "arguments": '{"city": "Paris"}'},
                }
            ],
        }
        finish = "tool_calls"
    answer = _json(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1700000000,
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": _usage(text),
        }
    )
    if mode.startswith("slowbody-"):
        seconds = float(mode.removeprefix("slowbody-"))
        return StreamingResponse(
            _halves(bytes(answer.body), seconds), media_type="application/json"
        )
    return answer


async def _halves(data: bytes, seconds: float) -> AsyncIterator[bytes]:
    yield data[: len(data) // 2]
    await asyncio.sleep(seconds)
    yield data[len(data) // 2 :]


async def completions(request: Request) -> Response:
    mode = request.path_params["mode"]
    raw = await request.body()
    body = orjson.loads(raw)
    SEEN.append(
        {"path": request.url.path, "headers": dict(request.headers), "body": body, "raw": raw}
    )
    if mode.startswith("status-"):
        return _error(int(mode.split("-")[1]), f"fake upstream says {mode}")
    text = _reply_text(body)
    return _json(
        {
            "id": "cmpl-fake",
            "object": "text_completion",
            "created": 1700000000,
            "model": body.get("model"),
            "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
            "usage": _usage(text),
        }
    )


def _vector(text: str) -> list[float]:
    seed = sum(text.encode()) or 1
    return [((seed * (i + 1)) % 97) / 97.0 for i in range(8)]


async def embeddings(request: Request) -> Response:
    mode = request.path_params["mode"]
    raw = await request.body()
    body = orjson.loads(raw)
    SEEN.append(
        {"path": request.url.path, "headers": dict(request.headers), "body": body, "raw": raw}
    )
    if mode.startswith("status-"):
        return _error(int(mode.split("-")[1]), f"fake upstream says {mode}")
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    data = []
    for index, text in enumerate(inputs):
        vector = _vector(str(text))
        embedding: Any = vector
        if body.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(len(str(t).split()) for t in inputs)
    return _json(
        {
            "object": "list",
            "data": data,
            "model": body.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


async def models(request: Request) -> Response:
    mode = request.path_params["mode"]
    if mode.startswith("status-"):
        return _error(int(mode.split("-")[1]), "down")
    return _json({"object": "list", "data": [{"id": "fake", "object": "model"}]})


app = Starlette(
    routes=[
        Route("/{mode}/v1/chat/completions", chat, methods=["POST"]),
        Route("/{mode}/v1/completions", completions, methods=["POST"]),
        Route("/{mode}/v1/embeddings", embeddings, methods=["POST"]),
        Route("/{mode}/v1/models", models, methods=["GET"]),
    ]
)
