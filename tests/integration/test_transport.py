"""The pooled HTTP/1.1 client against real sockets on 127.0.0.1, misbehaving servers too."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from sluicegate.providers.transport import (
    ConnectError,
    ConnectionLost,
    Pool,
    ProtocolError,
    ReadTimeout,
)
from tests.fakes.servers import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, dict[str, Any]], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    return head + body


def _ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def _serve(handler: Handler, test: Callable[[str, dict[str, Any]], Awaitable[None]]) -> None:
    state: dict[str, Any] = {"connections": 0, "open": 0, "max_open": 0, "requests": []}

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state["connections"] += 1
        state["open"] += 1
        state["max_open"] = max(state["max_open"], state["open"])
        try:
            await handler(reader, writer, state)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            state["open"] -= 1
            writer.close()

    port = free_port()
    server = await asyncio.start_server(on_connect, "127.0.0.1", port)
    try:
        await test(f"http://127.0.0.1:{port}/v1", state)
    finally:
        server.close()


async def _echo_forever(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: dict[str, Any]
) -> None:
    while (request := await _read_request(reader)) is not None:
        state["requests"].append(request)
        writer.write(_ok(b'{"ok":true}'))
        await writer.drain()


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))


def test_keep_alive_reuses_one_connection_and_sends_a_proper_request() -> None:
    async def test(url: str, state: dict[str, Any]) -> None:
        pool = Pool(url, max_connections=4, connect_timeout=2)
        for _ in range(5):
            resp = await pool.request("POST", "/chat", b"X-Test: 1\r\n", b'{"a":1}', first_byte=5)
            assert resp.status == 200
            assert await resp.read(5) == b'{"ok":true}'
        await pool.close()
        assert state["connections"] == 1
        first = state["requests"][0]
        assert first.startswith(b"POST /v1/chat HTTP/1.1\r\n")
        assert f"Host: 127.0.0.1:{url.split(':')[2].split('/')[0]}".encode() in first
        assert b"Content-Length: 7\r\n" in first and b"X-Test: 1\r\n" in first
        assert first.endswith(b'\r\n\r\n{"a":1}')

    run(_serve(_echo_forever, test))


def test_pool_limit_holds_and_queued_callers_all_succeed() -> None:
    async def slow_echo(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: dict[str, Any]
    ) -> None:
        while await _read_request(reader) is not None:
            await asyncio.sleep(0.05)
            writer.write(_ok(b"x"))
            await writer.drain()

    async def test(url: str, state: dict[str, Any]) -> None:
        pool = Pool(url, max_connections=2, connect_timeout=2)

        async def one() -> bytes:
            resp = await pool.request("POST", "/x", b"", b"", first_byte=5)
            return await resp.read(5)

        results = await asyncio.gather(*(one() for _ in range(8)))
        await pool.close()
        assert results == [b"x"] * 8
        assert state["max_open"] <= 2
        assert state["connections"] == 2

    run(_serve(slow_echo, test))


def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    async def test(url: str, state: dict[str, Any]) -> None:
        pool = Pool(url, max_connections=1, connect_timeout=2)
        first = await pool.request("POST", "/x", b"", b"", first_byte=5)
        waiting = asyncio.create_task(pool.request("POST", "/x", b"", b"", first_byte=5))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await first.read(5)
        again = await pool.request("POST", "/x", b"", b"", first_byte=5)
        assert await again.read(5) == b'{"ok":true}'
        await pool.close()

    run(_serve(_echo_forever, test))


def test_idle_connection_closed_by_upstream_is_replaced_transparently() -> None:
    async def one_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: dict[str, Any]
    ) -> None:
        # Keep-alive advertised, but the server drops the idle connection right after.
        if await _read_request(reader) is not None:
            writer.write(_ok(b"fresh"))
            await writer.drain()

    async def test(url: str, state: dict[str, Any]) -> None:
        pool = Pool(url, max_connections=2, connect_timeout=2)
        for _ in range(3):
            resp = await pool.request("POST", "/x", b"", b"", first_byte=5)
            assert await resp.read(5) == b"fresh"
            await asyncio.sleep(0.05)
        await pool.close()
        assert state["connections"] == 3

    run(_serve(one_per_connection, test))


def test_chunked_body_streams_as_it_arrives() -> None:
    async def chunked(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: dict[str, Any]
    ) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"data: 1\n\n", b"data: 2\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await _read_request(reader)

    async def test(url: str, state: dict[str, Any]) -> None:
        pool = Pool(url, max_connections=1, connect_timeout=2)
        resp = await pool.request("POST", "/x", b"", b"", first_byte=5)
        pieces = [chunk async for chunk in resp.iter_chunks(5)]
        assert pieces == [b"data: 1\n\n", b"data: 2\n\n"]
        await pool.close()

    run(_serve(chunked, test))


def test_body_until_close_without_length() -> None:
    async def until_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: dict[str, Any]
    ) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()

    async def test(url: str, state: dict[str, Any]) -> None:
        pool = Pool(url, max_connections=1, connect_timeout=2)
        resp = await pool.request("POST", "/x", b"", b"", first_byte=5)
        assert await resp.read(5) == b"all of it"
        await pool.close()

    run(_serve(until_close, test))


def test_connection_dropped_mid_body_raises_and_is_not_retried() -> None:
    async def cut(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: dict[str, Any]
    ) -> None:
        await _read_request(reader)
        state["requests"].append(1)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()

    async def test(url: str, state: dict[str, Any]) -> None:
        pool = Pool(url, max_connections=1, connect_timeout=2)
        resp = await pool.request("POST", "/x", b"", b"", first_byte=5)
        with pytest.raises(ConnectionLost) as info:
            await resp.read(5)
        assert info.value.received_any
        await pool.close()
        assert state["requests"] == [1]

    run(_serve(cut, test))


def test_first_byte_and_idle_timeouts() -> None:
    async def silent_then_stall(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: dict[str, Any]
    ) -> None:
        request = await _read_request(reader)
        if request is not None and b"/silent" in request:
            await asyncio.sleep(5)
            return
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async def test(url: str, state: dict[str, Any]) -> None:
        pool = Pool(url, max_connections=2, connect_timeout=2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ReadTimeout):
            await pool.request("POST", "/silent", b"", b"", first_byte=0.2)
        assert loop.time() - started < 1.0
        resp = await pool.request("POST", "/stall", b"", b"", first_byte=2)
        got = []
        with pytest.raises(ReadTimeout):
            async for chunk in resp.iter_chunks(0.2):
                got.append(chunk)
        assert got == [b"hello"]
        await pool.close()

    run(_serve(silent_then_stall, test))


def test_invalid_http_is_a_protocol_error() -> None:
    async def garbage(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: dict[str, Any]
    ) -> None:
        await _read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async def test(url: str, state: dict[str, Any]) -> None:
        pool = Pool(url, max_connections=1, connect_timeout=2)
        with pytest.raises(ProtocolError):
            await pool.request("POST", "/x", b"", b"", first_byte=5)
        await pool.close()

    run(_serve(garbage, test))


def test_connection_refused_is_a_connect_error() -> None:
    async def test() -> None:
        pool = Pool(f"http://127.0.0.1:{free_port()}/v1", max_connections=1, connect_timeout=2)
        with pytest.raises(ConnectError):
            await pool.request("POST", "/x", b"", b"", first_byte=5)
        # The failed connect gave its slot back.
        with pytest.raises(ConnectError):
            await pool.request("POST", "/x", b"", b"", first_byte=5)
        await pool.close()

    run(test())


def test_connection_close_header_is_honoured() -> None:
    async def closing(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: dict[str, Any]
    ) -> None:
        while await _read_request(reader) is not None:
            writer.write(_ok(b"bye", b"Connection: close\r\n"))
            await writer.drain()

    async def test(url: str, state: dict[str, Any]) -> None:
        pool = Pool(url, max_connections=1, connect_timeout=2)
        for _ in range(2):
            resp = await pool.request("POST", "/x", b"", b"", first_byte=5)
            assert await resp.read(5) == b"bye"
        await pool.close()
        assert state["connections"] == 2

    run(_serve(closing, test))
