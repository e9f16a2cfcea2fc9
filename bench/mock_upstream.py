"""A mock OpenAI-compatible upstream that costs as little CPU as it can.

The benchmark measures the gateway, so the upstream must stay out of the way:
a raw asyncio Protocol on uvloop, httptools parsing, keep-alive, and answers
serialised once at start-up. It serves

- ``POST /v1/chat/completions``: a fixed ~600-byte chat completion, or, when the
  body asks for ``"stream": true``, an SSE stream (chunked transfer encoding) of
  ``--chunks`` content chunks ``--interval-ms`` apart, then a usage chunk and
  ``[DONE]``. The first chunk (the role) goes out at once, as vLLM does;
- ``GET /v1/models``: the model list (the gateway's readiness probe);
- ``GET /_stats``: requests served and the most streams open at once
  (``/_stats?reset=1`` zeroes them), so the bench can prove how many streams overlapped.

Run it as its own process: ``python bench/mock_upstream.py --port 9100``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import time
from typing import cast

import httptools
import orjson
import uvloop

MODEL = "bench-model"
_STREAM_TRUE = re.compile(rb'"stream"\s*:\s*true')


def _completion_body() -> bytes:
    text = (
        "A sluice gate controls the flow of water in a channel: raised, it lets water "
        "through; lowered, it holds it back. Gateways for language models borrow the "
        "idea, deciding which requests pass, where they go, and how fast they flow."
    )
    return orjson.dumps(
        {
            "id": "chatcmpl-bench0000000000000000000000",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": MODEL,
            "system_fingerprint": "fp_bench",
            "service_tier": "default",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 42, "completion_tokens": 48, "total_tokens": 90},
        }
    )


def _event(payload: dict[str, object]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    return _event(
        {
            "id": "chatcmpl-bench0000000000000000000000",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
    )


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Answers:
    """Every byte the mock sends, built once."""

    def __init__(self, chunks: int) -> None:
        body = _completion_body()
        self.completion = (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        models = orjson.dumps(
            {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]}
        )
        self.models = (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(models), models)
        )
        self.not_found = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
        self.stream_head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        self.first = _chunked(_chunk({"role": "assistant", "content": ""}))
        self.middle = _chunked(_chunk({"content": " token"}))
        usage = {"prompt_tokens": 42, "completion_tokens": chunks, "total_tokens": 42 + chunks}
        last = _chunk({}, "stop")
        tail = _event(
            {
                "id": "chatcmpl-bench0000000000000000000000",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": MODEL,
                "choices": [],
                "usage": usage,
            }
        )
        self.last = _chunked(last + tail + b"data: [DONE]\n\n") + b"0\r\n\r\n"


class Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.streams_open = 0
        self.streams_peak = 0
        self.streams_done = 0

    def body(self) -> bytes:
        return orjson.dumps(
            {
                "requests": self.requests,
                "streams_open": self.streams_open,
                "streams_peak": self.streams_peak,
                "streams_done": self.streams_done,
            }
        )

    def reset(self) -> None:
        self.requests = 0
        self.streams_peak = self.streams_open
        self.streams_done = 0


class MockProtocol(asyncio.Protocol):
    """One connection: parse requests with httptools, answer from pre-built bytes."""

    def __init__(self, answers: Answers, stats: Stats, chunks: int, interval: float) -> None:
        self.answers = answers
        self.stats = stats
        self.chunks = chunks
        self.interval = interval
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.streaming = False
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass, though it behaves as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.streaming:
            self._stream_ended()
        self.transport = None

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        transport = self.transport
        if transport is None:
            return
        self.stats.requests += 1
        self.keep_alive = self.parser.should_keep_alive()
        method = self.parser.get_method()
        url = self.url
        if method == b"POST" and url == b"/v1/chat/completions":
            if _STREAM_TRUE.search(b"".join(self.body)):
                self._start_stream(transport)
                return
            transport.write(self.answers.completion)
        elif method == b"GET" and url == b"/v1/models":
            transport.write(self.answers.models)
        elif method == b"GET" and url.startswith(b"/_stats"):
            if url.endswith(b"reset=1"):
                self.stats.reset()
            body = self.stats.body()
            transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
        else:
            transport.write(self.answers.not_found)
        if not self.keep_alive:
            transport.close()

    def _start_stream(self, transport: asyncio.Transport) -> None:
        stats = self.stats
        stats.streams_open += 1
        stats.streams_peak = max(stats.streams_peak, stats.streams_open)
        self.streaming = True
        transport.write(self.answers.stream_head + self.answers.first)
        loop = asyncio.get_running_loop()
        # One timer per chunk, scheduled on an absolute clock so chunk times do not drift.
        start = loop.time()
        for index in range(1, self.chunks + 1):
            loop.call_at(start + index * self.interval, self._send_chunk, index)

    def _send_chunk(self, index: int) -> None:
        transport = self.transport
        if transport is None or not self.streaming:
            return
        if index < self.chunks:
            transport.write(self.answers.middle)
            return
        transport.write(self.answers.last)
        self._stream_ended()
        self.stats.streams_done += 1
        if not self.keep_alive:
            transport.close()

    def _stream_ended(self) -> None:
        self.streaming = False
        self.stats.streams_open -= 1


async def serve(port: int, chunks: int, interval: float) -> None:
    loop = asyncio.get_running_loop()
    answers = Answers(chunks)
    stats = Stats()
    server = await loop.create_server(
        lambda: MockProtocol(answers, stats, chunks, interval),
        "127.0.0.1",
        port,
        backlog=4096,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"mock upstream on http://127.0.0.1:{port}/v1 ({time.strftime('%X')})", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per stream")
    parser.add_argument("--interval-ms", type=float, default=10.0, help="gap between chunks")
    args = parser.parse_args()
    uvloop.run(serve(args.port, max(1, args.chunks), args.interval_ms / 1000))


if __name__ == "__main__":
    main()
