"""A lean, pooled HTTP/1.1 client for upstream calls: asyncio protocols and httptools.

Why not aiohttp or httpx: on the gateway's hot path the client was the largest
single cost. Measured on the bench (bench/RESULTS.md), aiohttp spent about
190 µs of CPU per proxied request; this client, which does only what an
upstream call needs, spends a fraction of that. It uses the same C parser
(httptools) as the gateway's own server.

What it does: keep-alive connections per origin, bounded (callers beyond the
limit wait in FIFO order); Content-Length and chunked responses; TLS; a connect
timeout, a first-byte timeout and a per-read idle timeout, each an event-loop
timer rather than a task; back-pressure on streamed bodies. A request that dies
on a reused connection before any byte of the answer arrived was never seen by
the upstream (it had closed the idle connection), so it is sent once more on a
fresh one.

What it does not: redirects, proxies, cookies, compression, HTTP/2.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httptools

__all__ = [
    "ConnectError",
    "ConnectionLost",
    "Pool",
    "ProtocolError",
    "ReadTimeout",
    "Response",
    "TransportError",
]

_HIGH_WATER = 1 << 20  # pause reading a stream the consumer has not drained


class TransportError(Exception):
    """Any failure to get an answer from the upstream."""


class ConnectError(TransportError):
    """The connection could not be opened (refused, unresolvable, TLS, timeout)."""


class ConnectionLost(TransportError):
    """The upstream closed the connection before the answer was complete."""

    def __init__(self, message: str, *, received_any: bool) -> None:
        super().__init__(message)
        self.received_any = received_any


class ProtocolError(TransportError):
    """The upstream's bytes are not valid HTTP."""


class ReadTimeout(TransportError, TimeoutError):
    """Nothing arrived within the allowed time."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection, carrying one request at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.headers_done = False
        self.keep_alive = False
        self.complete = False
        self.received_any = False
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the upstream tried to upgrade the connection"))
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"invalid HTTP from the upstream: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            if self.headers_done and self._until_close():
                self.complete = True
                self._wake()
            else:
                self._fail(
                    ConnectionLost(
                        "the upstream closed the connection", received_any=self.received_any
                    )
                )
        self.pool._forget(self)

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        # httptools answers should_keep_alive() correctly only until the message ends.
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # used by Pool and Response

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self._reset()
        self.transport.write(data)

    def take(self) -> bytes:
        data = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks.clear()
        self.buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def wait(self, idle: float) -> None:
        """Until the next event (headers, body, end, failure), or ReadTimeout after ``idle`` s."""
        if self.error is not None:
            raise self.error
        waiter: asyncio.Future[None] = self.loop.create_future()
        self._waiter = waiter
        timer = self.loop.call_later(idle, _expire, waiter, idle)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _until_close(self) -> bool:
        # A response framed by neither length nor chunks ends when the connection does.
        for name, value in self.headers:
            if name == b"content-length" or (
                name == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                return False
        return True

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()


def _expire(waiter: asyncio.Future[None], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(ReadTimeout(f"no data within {timeout:g}s"))


class Response:
    """An upstream answer whose headers have arrived; read or stream its body once."""

    __slots__ = ("_conn", "_done", "headers", "status")

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self._done = False
        self.status = conn.status
        self.headers = conn.headers

    def header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    async def read(self, idle: float, deadline: float | None = None) -> bytes:
        """The whole body; ``idle`` bounds each wait, ``deadline`` (loop time) the whole read."""
        conn = self._conn
        try:
            while not conn.complete:
                if deadline is not None:
                    left = deadline - conn.loop.time()
                    if left <= 0:
                        raise ReadTimeout("the answer did not finish before the deadline")
                    await conn.wait(min(idle, left))
                else:
                    await conn.wait(idle)
            return conn.take()
        finally:
            self.close()

    async def iter_chunks(self, idle: float, deadline: float | None = None) -> AsyncIterator[bytes]:
        """The body as it arrives; ReadTimeout if a gap exceeds ``idle`` seconds or the
        ``deadline`` (loop time) passes, so nothing that arrives late is handed on."""
        conn = self._conn
        try:
            while True:
                if deadline is not None and conn.loop.time() >= deadline:
                    raise ReadTimeout("the answer did not finish before the deadline")
                if conn.chunks:
                    yield conn.take()
                    continue
                if conn.complete:
                    return
                if deadline is not None:
                    await conn.wait(min(idle, deadline - conn.loop.time()))
                else:
                    await conn.wait(idle)
        finally:
            self.close()

    def close(self) -> None:
        """Hand the connection back if the answer was read whole, else drop it."""
        if self._done:
            return
        self._done = True
        conn = self._conn
        if conn.complete and conn.error is None and conn.keep_alive and not conn.closed:
            self._conn.pool._release(conn)
        else:
            conn.abort()


class Pool:
    """Keep-alive connections to one origin (scheme, host, port)."""

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int,
        connect_timeout: float,
        keepalive: float = 30.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url}")
        self.loop = asyncio.get_running_loop()
        self.host = parts.hostname
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.path_prefix = parts.path.rstrip("/")
        default_port = self.port == (443 if self.tls else 80)
        host_header = self.host if default_port else f"{self.host}:{self.port}"
        self._host_line = b"Host: " + host_header.encode("idna") + b"\r\n"
        self._ssl = ssl.create_default_context() if self.tls else None
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._closed = False

    def head(
        self, method: str, path: str, headers: bytes, length: int, on_origin: bool = False
    ) -> bytes:
        """The request line and headers; ``headers`` is pre-built ``Name: value\\r\\n`` lines.
        ``path`` follows the base URL's path unless ``on_origin``."""
        prefix = "" if on_origin else self.path_prefix
        return (
            f"{method} {prefix}{path} HTTP/1.1\r\n".encode()
            + self._host_line
            + b"Content-Length: "
            + str(length).encode()
            + b"\r\n"
            + headers
            + b"\r\n"
        )

    async def request(
        self,
        method: str,
        path: str,
        headers: bytes,
        body: bytes,
        *,
        first_byte: float,
        on_origin: bool = False,
    ) -> Response:
        """Send a request; return once the response headers are in."""
        data = self.head(method, path, headers, len(body), on_origin) + body
        conn, reused = await self._acquire()
        try:
            return await self._exchange(conn, data, first_byte)
        except ConnectionLost as exc:
            if not reused or exc.received_any:
                raise
        # The idle connection had been closed by the upstream under us; try a fresh one.
        conn = await self._connect_counted()
        return await self._exchange(conn, data, first_byte)

    async def _exchange(self, conn: _Connection, data: bytes, first_byte: float) -> Response:
        try:
            conn.send(data)
            while not conn.headers_done:
                await conn.wait(first_byte)
        except BaseException:
            conn.abort()
            raise
        return Response(conn)

    async def _acquire(self) -> tuple[_Connection, bool]:
        if self._closed:
            raise ConnectError("the connection pool is closed")
        now = self.loop.time()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < self.keepalive:
                return conn, True
            conn.abort()
        if self._open >= self.max_connections:
            waiter: asyncio.Future[_Connection | None] = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                handed = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    # We were handed something while being cancelled: pass it on.
                    passed = waiter.result()
                    if passed is not None:
                        self._release(passed)
                    else:
                        self._open -= 1
                        self._hand_permit()
                raise
            if handed is not None:
                return handed, True
            # A permit to open a new connection; the slot was kept for us.
            return await self._connect_reserved(), False
        return await self._connect_counted(), False

    async def _connect_counted(self) -> _Connection:
        self._open += 1
        return await self._connect_reserved()

    async def _connect_reserved(self) -> _Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await self.loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self.tls else None,
                )
        except TimeoutError as exc:
            self._slot_freed()
            raise ConnectError(f"connect timed out after {self.connect_timeout:g}s") from exc
        except OSError as exc:
            self._slot_freed()
            raise ConnectError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        except BaseException:
            self._slot_freed()
            raise
        return protocol

    def _release(self, conn: _Connection) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if self._closed:
            conn.abort()
            return
        conn.idle_since = self.loop.time()
        self._idle.append(conn)

    def _forget(self, conn: _Connection) -> None:
        """A connection closed; its slot goes to a waiter or back to the pool."""
        if conn in self._idle:
            self._idle.remove(conn)
        self._slot_freed()

    def _slot_freed(self) -> None:
        self._open -= 1
        self._hand_permit()

    def _hand_permit(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._open += 1
                waiter.set_result(None)
                return

    async def close(self) -> None:
        self._closed = True
        for conn in self._idle:
            conn.abort()
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectError("the connection pool is closed"))
