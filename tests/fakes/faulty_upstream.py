"""A fake OpenAI-compatible upstream that fails on cue, as a raw asyncio HTTP/1.1 server.

Raw sockets rather than an ASGI app, because some faults live below HTTP: a reset
before any header, a connection that goes silent, a stream cut without its last
chunk. One server plays many deployments; each test scripts its own under a
unique path prefix, so counters never leak between tests::

    upstream = FaultyUpstream()
    with serving(upstream):
        flaky = upstream.deployment(Fail(429, retry_after="2"), Answer(), label="flaky")
        flaky.base_url          # http://127.0.0.1:PORT/flaky-3/v1
        ...                     # point a gateway at it, make calls
        flaky.attempts          # each chat call that arrived: monotonic time and body

Attempt *n* follows step *n* of the script, the last step repeating; a test may
swap ``script`` while the server runs (an outage that ends). Tokens of an answer
are ``t0 t1 t2 ...``. A streamed request that offers tools gets a call of the first
one instead, its arguments ``{"q": "t0 t1 ... "}`` streamed a token at a time. A
request whose last message is an assistant prefill with ``continue_final_message``
gets the tokens after those already in it, as vLLM would continue.

Run as ``python -m tests.fakes.faulty_upstream --tokens N --gap S`` it serves one
slow streamed answer on every path and prints ``ready <url>`` once listening: an
upstream *process* a test can kill.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "Answer",
    "Attempt",
    "Fail",
    "FaultyUpstream",
    "Reset",
    "Scripted",
    "Silent",
    "serving",
    "text_of",
]

_MALFORMED = b'data: {"choices": [{"ind\n\n'  # a chunk cut off mid-JSON
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}


def text_of(start: int, stop: int) -> str:
    """The text of tokens ``start`` to ``stop - 1`` of any answer of this fake."""
    return "".join(f"t{i} " for i in range(start, stop))


@dataclass(frozen=True)
class Answer:
    """A successful answer of ``tokens`` tokens (streamed if the request asks), with faults.

    ``head_delay`` before the response headers; streams: ``first_delay`` between the
    headers and the first chunk (the role chunk too, unless ``role_at_once``), ``gap``
    between tokens, a connection closed without the final chunk after ``cut_after``
    tokens, ``stall`` seconds of silence after ``stall_after`` tokens, one malformed
    event after ``malformed_after`` tokens, ``done`` whether ``[DONE]`` ends it and
    ``hold`` seconds the response stays open after its last event.
    """

    tokens: int = 5
    prompt_tokens: int = 10
    head_delay: float = 0.0
    first_delay: float = 0.0
    role_at_once: bool = False
    gap: float = 0.0
    cut_after: int | None = None
    stall_after: int | None = None
    stall: float = 30.0
    malformed_after: int | None = None
    done: bool = True
    hold: float = 0.0


@dataclass(frozen=True)
class Fail:
    """An HTTP error answer with an OpenAI error body."""

    status: int
    code: str | None = None
    message: str = "the fake upstream fails on cue"
    retry_after: str | None = None


@dataclass(frozen=True)
class Reset:
    """Read the request, then reset the connection (RST) before any response byte."""


@dataclass(frozen=True)
class Silent:
    """Read the request, then send nothing for ``seconds`` and close."""

    seconds: float = 30.0


Step = Answer | Fail | Reset | Silent


@dataclass(frozen=True)
class Attempt:
    at: float  # time.monotonic() when the request had fully arrived
    path: str
    body: dict[str, Any]


class Scripted:
    """One fake deployment: its base URL, what it does on each attempt, what it saw."""

    def __init__(self, base_url: str, script: list[Step]) -> None:
        self.base_url = base_url
        self.script = script
        self.attempts: list[Attempt] = []

    def next_step(self, body: dict[str, Any], path: str) -> Step:
        script = self.script
        step = script[min(len(self.attempts), len(script) - 1)]
        self.attempts.append(Attempt(time.monotonic(), path, body))
        return step

    def gaps(self) -> list[float]:
        """Seconds between consecutive attempts."""
        times = [a.at for a in self.attempts]
        return [b - a for a, b in itertools.pairwise(times)]

    def config(self, deployment_id: str, **fields: Any) -> dict[str, Any]:
        """A gateway deployment entry for this fake (health checks off unless given)."""
        return {
            "provider": "openai",
            "id": deployment_id,
            "base_url": self.base_url,
            "health": {"enabled": False},
            **fields,
        }


class FaultyUpstream:
    def __init__(self, default: Scripted | None = None) -> None:
        self.url = ""
        self.default = default  # serves every path when set (the subprocess mode)
        self._deployments: dict[str, Scripted] = {}
        self._ids = itertools.count(1)

    def deployment(self, *script: Step, label: str = "d") -> Scripted:
        assert self.url, "start the server first (serving(upstream))"
        key = f"{label}-{next(self._ids)}"
        scripted = Scripted(f"{self.url}/{key}/v1", list(script or [Answer()]))
        self._deployments[key] = scripted
        return scripted

    def _find(self, path: str) -> Scripted | None:
        if self.default is not None:
            return self.default
        return self._deployments.get(path.split("/", 2)[1] if path.count("/") >= 2 else "")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._exchange(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection must end."""
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        length = 0
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        raw = await reader.readexactly(length) if length else b""
        scripted = self._find(path)
        if scripted is None:
            await _json(writer, 404, {"error": {"message": f"no fake at {path}"}})
            return True
        if method == "GET":  # health checks and readiness probes: always up
            await _json(writer, 200, {"object": "list", "data": [{"id": "fake"}]})
            return True
        body = orjson.loads(raw)
        step = scripted.next_step(body, path)
        if isinstance(step, Fail):
            error = {"message": step.message, "type": "invalid_request_error", "code": step.code}
            extra = {"Retry-After": step.retry_after} if step.retry_after else {}
            await _json(writer, step.status, {"error": {**error, "param": None}}, extra)
            return True
        if isinstance(step, Reset):
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if isinstance(step, Silent):
            await asyncio.sleep(step.seconds)
            return False
        await asyncio.sleep(step.head_delay)
        if body.get("stream"):
            return await _stream(writer, body, step)
        start, stop = _span(body, step)
        text = text_of(start, stop)
        await _json(
            writer,
            200,
            {
                "id": "chatcmpl-faulty",
                "object": "chat.completion",
                "created": 1700000000,
                "model": body.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": _usage(step, stop - start),
            },
        )
        return True


def _span(body: dict[str, Any], step: Answer) -> tuple[int, int]:
    """Which tokens to send: all, or those after an assistant prefill being continued."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    if body.get("continue_final_message") and last.get("role") == "assistant":
        return min(len(str(last.get("content") or "").split()), step.tokens), step.tokens
    return 0, step.tokens


def _usage(step: Answer, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": step.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": step.prompt_tokens + completion,
    }


async def _json(
    writer: asyncio.StreamWriter,
    status: int,
    payload: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> None:
    data = orjson.dumps(payload)
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)
    await writer.drain()


def _event(payload: Any) -> bytes:
    data = b"[DONE]" if payload == "[DONE]" else orjson.dumps(payload)
    event = b"data: " + data + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


def _chunk(body: dict[str, Any], delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-faulty",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": body.get("model"),
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _tool_name(body: dict[str, Any]) -> str | None:
    """The first tool's name when the request offers tools: the answer is then a call of it."""
    tools = body.get("tools") or []
    return str(tools[0]["function"]["name"]) if tools else None


def _piece(tool: str | None, text: str) -> dict[str, Any]:
    """A delta carrying ``text``: answer content, or a piece of the tool call's arguments."""
    if tool:
        return {"tool_calls": [{"index": 0, "function": {"arguments": text}}]}
    return {"content": text}


async def _stream(writer: asyncio.StreamWriter, body: dict[str, Any], step: Answer) -> bool:
    """Send a chunked SSE answer with the step's faults; False when the connection must end."""
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    await writer.drain()
    tool = _tool_name(body)
    opening: dict[str, Any] = {"role": "assistant", "content": ""}
    if tool:
        call = {"index": 0, "id": "call_1", "type": "function"}
        function = {"name": tool, "arguments": '{"q": "'}
        opening = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{**call, "function": function}],
        }
    role = _event(_chunk(body, opening, None))
    if step.role_at_once:
        writer.write(role)
        await writer.drain()
    await asyncio.sleep(step.first_delay)
    if not step.role_at_once:
        writer.write(role)
    start, stop = _span(body, step)
    for index in range(start, stop):
        if step.malformed_after is not None and index == step.malformed_after:
            writer.write(b"%x\r\n%s\r\n" % (len(_MALFORMED), _MALFORMED))
        writer.write(_event(_chunk(body, _piece(tool, f"t{index} "), None)))
        await writer.drain()
        if step.cut_after is not None and index + 1 == step.cut_after:
            writer.close()  # FIN after the data: the chunked body never ends
            return False
        if step.stall_after is not None and index + 1 == step.stall_after:
            await asyncio.sleep(step.stall)
        if step.gap:
            await asyncio.sleep(step.gap)
    if tool:
        writer.write(_event(_chunk(body, _piece(tool, '"}'), None)))
    writer.write(_event(_chunk(body, {}, "tool_calls" if tool else "stop")))
    if (body.get("stream_options") or {}).get("include_usage"):
        final = _chunk(body, {}, None)
        final["choices"] = []
        final["usage"] = _usage(step, stop - start)
        writer.write(_event(final))
    if step.done:
        writer.write(_event("[DONE]"))
    await writer.drain()
    await asyncio.sleep(step.hold)
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    return True


@contextmanager
def serving(upstream: FaultyUpstream, port: int = 0) -> Iterator[str]:
    """Serve ``upstream`` on 127.0.0.1 in a background thread until the block ends."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Future[None] | None = None
    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            # Cancelled only when the server stops; ending quietly keeps asyncio from
            # logging the cancellation as an error of the connection callback.
            with suppress(asyncio.CancelledError):
                await upstream.handle(reader, writer)
        finally:
            tasks.discard(task)

    async def main() -> None:
        nonlocal stop
        stop = loop.create_future()
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        upstream.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        ready.set()
        try:
            await stop
        finally:
            server.close()
            # Silent and stalled answers would otherwise outlive the test.
            for task in list(tasks):
                task.cancel()
            if tasks:
                await asyncio.wait(list(tasks))
            await server.wait_closed()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the faulty upstream did not start")
    try:
        yield upstream.url
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set_result, None)
        thread.join(timeout=10)
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--gap", type=float, default=0.05)
    args = parser.parse_args()
    upstream = FaultyUpstream(Scripted("", [Answer(tokens=args.tokens, gap=args.gap)]))
    with serving(upstream, args.port) as url:
        print(f"ready {url}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
