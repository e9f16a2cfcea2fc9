"""Server-sent event framing for OpenAI-style streams."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

__all__ = [
    "DONE",
    "EventBuffer",
    "aclose",
    "choice_text",
    "count_finish_reasons",
    "data_payloads",
    "error_event",
    "event",
    "has_finish_reason",
    "json_chunks",
    "rewrite_chunks",
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


def choice_text(choice: dict[str, Any]) -> tuple[dict[str, Any] | None, str, str | None]:
    """Where a streamed choice carries its text: (object, key, text) — ``delta.content``
    for chat, ``text`` for completions; the text is None when there is none."""
    delta = choice.get("delta")
    holder = delta if isinstance(delta, dict) else choice
    field = "content" if isinstance(delta, dict) else "text"
    text = holder.get(field)
    return holder, field, text if isinstance(text, str) else None


async def rewrite_chunks(
    stream: AsyncIterator[bytes], rewrite: Callable[[dict[str, Any]], Awaitable[None]]
) -> AsyncIterator[bytes]:
    """``stream`` with each JSON chunk handed to ``rewrite`` (which changes it in place)
    and encoded again; ``[DONE]`` and anything that is not a JSON object pass as they came."""
    try:
        async for events in stream:
            out: list[bytes] = []
            for payload in data_payloads(events):
                if payload == b"[DONE]":
                    out.append(DONE)
                    continue
                try:
                    chunk = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    out.append(b"data: " + payload + b"\n\n")
                    continue
                if isinstance(chunk, dict):
                    await rewrite(chunk)
                out.append(event(chunk))
            yield b"".join(out)
    finally:
        await aclose(stream)
