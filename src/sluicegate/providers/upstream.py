"""One HTTP upstream as providers see it: a pooled origin plus our error mapping and timeouts.

Both HTTP providers (OpenAI-compatible and Anthropic) send through this, so the
connect / first-byte / stream-idle / total rules and the mapping of transport
failures to ``sluicegate.errors`` are written once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson

from sluicegate import __version__
from sluicegate.config.schema import Timeouts
from sluicegate.errors import UpstreamError, UpstreamTimeout
from sluicegate.protocol.sse import EventBuffer
from sluicegate.providers.transport import (
    ConnectError,
    Pool,
    ReadTimeout,
    Response,
    TransportError,
)
from sluicegate.providers.upstream_errors import from_status

__all__ = ["Upstream", "UpstreamProvider", "is_event_stream"]


class Upstream:
    def __init__(
        self,
        base_url: str,
        *,
        headers: Sequence[tuple[str, str]],
        timeouts: Timeouts,
        max_connections: int,
    ) -> None:
        self.base_url = base_url
        self.timeouts = timeouts
        self.max_connections = max_connections
        lines = [
            ("Content-Type", "application/json"),
            ("Accept-Encoding", "identity"),
            ("User-Agent", f"sluicegate/{__version__}"),
            *headers,
        ]
        self._headers = "".join(f"{k}: {v}\r\n" for k, v in lines).encode("latin-1")
        self._pool: Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        # Held once: asyncio.get_running_loop() costs a getpid() syscall per call on 3.11.
        self._loop = asyncio.get_running_loop()
        self._pool = Pool(
            self.base_url,
            max_connections=self.max_connections,
            connect_timeout=self.timeouts.connect,
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def deadline(self) -> float:
        """The loop time by which the whole call must be done."""
        loop = self._loop or asyncio.get_running_loop()
        return loop.time() + self.timeouts.total

    async def healthy(self, path: str, timeout: float = 5.0, *, on_origin: bool = False) -> bool:
        """True when ``GET path`` answers below 500 in time. ``path`` follows the base URL's
        path, or, with ``on_origin``, stands alone (vLLM's ``/health`` sits outside ``/v1``)."""
        if self._pool is None:
            return False
        try:
            resp = await self._pool.request(
                "GET", path, self._headers, b"", first_byte=timeout, on_origin=on_origin
            )
            await resp.read(timeout)
        except TransportError:
            return False
        return resp.status < 500

    async def post(self, path: str, payload: bytes, name: str, extra: bytes = b"") -> Response:
        """Send; return once a 200's headers are in. Anything else raises our error.
        ``extra`` holds this call's own header lines (a traceparent), CRLF-terminated."""
        if self._pool is None:
            raise UpstreamError("The provider is not started.")
        first_byte = min(self.timeouts.first_byte, self.timeouts.total)
        try:
            resp = await self._pool.request(
                "POST",
                path,
                self._headers + extra if extra else self._headers,
                payload,
                first_byte=first_byte,
            )
        except ReadTimeout as exc:
            raise UpstreamTimeout(
                f"Deployment '{name}' sent no response within {first_byte:g}s."
            ) from exc
        except ConnectError as exc:
            raise UpstreamError(
                f"Cannot connect to deployment '{name}'.", code="upstream_unreachable"
            ) from exc
        except TransportError as exc:
            raise UpstreamError(f"Deployment '{name}' failed before answering ({exc}).") from exc
        if resp.status != 200:
            try:
                body = await resp.read(self.timeouts.stream_idle)
            except TransportError:
                body = b""
            raise from_status(name, resp.status, body, resp.header(b"retry-after"))
        return resp

    async def read_json(self, resp: Response, name: str, deadline: float) -> tuple[bytes, Any]:
        """The body and its decoded JSON object; 502/504 when it is not one in time."""
        try:
            body = await resp.read(self.timeouts.stream_idle, deadline)
        except ReadTimeout as exc:
            raise UpstreamTimeout(
                f"Deployment '{name}' did not finish its answer in time."
            ) from exc
        except TransportError as exc:
            raise UpstreamError(f"Deployment '{name}' broke off its answer.") from exc
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(f"Deployment '{name}' answered with invalid JSON.") from exc
        if not isinstance(decoded, dict):
            raise UpstreamError(f"Deployment '{name}' answered with a non-object JSON body.")
        return body, decoded

    async def events(self, resp: Response, name: str, deadline: float) -> AsyncIterator[bytes]:
        """The stream cut into whole SSE events; stalls, breaks and overruns raise."""
        buffer = EventBuffer()
        loop = asyncio.get_running_loop()
        try:
            async for chunk in resp.iter_chunks(self.timeouts.stream_idle, deadline):
                events = buffer.feed(chunk)
                if events:
                    yield events
        except ReadTimeout as exc:
            if loop.time() >= deadline:
                raise UpstreamTimeout(
                    f"Deployment '{name}' did not finish within {self.timeouts.total:g}s."
                ) from exc
            raise UpstreamTimeout(
                f"Deployment '{name}' stalled: no data for {self.timeouts.stream_idle:g}s."
            ) from exc
        except TransportError as exc:
            raise UpstreamError(f"Deployment '{name}' broke off the stream.") from exc
        finally:
            resp.close()


class UpstreamProvider:
    """Start, close and probe for a provider that speaks HTTP through one ``Upstream``.

    Subclasses build ``self.upstream`` and say where their API lists its models
    (``model_list``, after the base URL's path), the default health probe.
    """

    upstream: Upstream
    model_list: str

    async def start(self) -> None:
        await self.upstream.start()

    async def close(self) -> None:
        await self.upstream.close()

    async def healthy(self, path: str | None = None, timeout: float = 5.0) -> bool:
        if path is None:
            return await self.upstream.healthy(self.model_list, timeout)
        return await self.upstream.healthy(path, timeout, on_origin=True)


def is_event_stream(resp: Response) -> bool:
    return (resp.header(b"content-type") or "").startswith("text/event-stream")
