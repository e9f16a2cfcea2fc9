"""Server-sent event framing for OpenAI-style streams."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import orjson

__all__ = [
    "DONE",
    "EventBuffer",
    "aclose",
    "count_finish_reasons",
    "data_payloads",
    "error_event",
    "event",
    "has_finish_reason",
    "json_chunks",
]

DONE = b"data: [DONE]\n\n"

_FINISH = re.compile(rb'"finish_reason"\s*:\s*"')


async def aclose(stream: AsyncIterator[bytes]) -> None:
    """Close a stream early (an async generator's ``aclose``), so its upstream is freed now."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


def event(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def error_event(error_body: dict[str, Any]) -> bytes:
    """The in-band error that ends a broken stream: OpenAI's error shape, and no [DONE]."""
    return event(error_body)


def has_finish_reason(events: bytes) -> bool:
    """True if any chunk in ``events`` carries a non-null finish_reason."""
    return _FINISH.search(events) is not None


def count_finish_reasons(events: bytes) -> int:
    """How many non-null finish_reasons ``events`` carry (one per finished choice)."""
    return len(_FINISH.findall(events)) if b"finish_reason" in events else 0


class EventBuffer:
    """Cuts an arbitrary byte stream at event boundaries, so only whole events travel on."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk if self._pending else chunk
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        cut = data.rfind(b"\n\n")
        if cut < 0:
            self._pending = data
            return b""
        self._pending = data[cut + 2 :]
        return data[: cut + 2]

    @property
    def pending(self) -> bytes:
        return self._pending


def json_chunks(events: bytes) -> list[dict[str, Any]]:
    """The JSON objects of whole events, in order; ``[DONE]`` and undecodable data skipped."""
    found = []
    for payload in data_payloads(events):
        if payload == b"[DONE]":
            continue
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        if isinstance(chunk, dict):
            found.append(chunk)
    return found


def data_payloads(events: bytes) -> list[bytes]:
    """The ``data:`` payloads of whole events, in order (comments and other fields dropped)."""
    out: list[bytes] = []
    for block in events.split(b"\n\n"):
        lines = [line[5:].lstrip(b" ") for line in block.split(b"\n") if line.startswith(b"data:")]
        if lines:
            out.append(b"\n".join(lines))
    return out
