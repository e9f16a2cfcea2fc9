"""Many concurrent SSE streams at once: time to first byte, gaps between reads, errors, [DONE].

Each stream has its own connection (a client per user, as in production), all
opened together. A stream *stalls* when two reads are further apart than the
stall threshold; it is *clean* when it got 200, no error event, and ended with
``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from bench.wrk import CHAT_BODY

__all__ = ["StreamStats", "raise_fd_limit", "run_streams"]

_DONE = b"data: [DONE]\n\n"


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if max(soft, want) < needed:
        raise SystemExit(f"need {needed} open files, the hard limit is {hard}; raise `ulimit -Hn`")


@dataclass(slots=True)
class _One:
    ttfb: float | None = None
    total: float | None = None
    max_gap: float = 0.0
    events: int = 0
    done: bool = False
    error: str | None = None


@dataclass(slots=True)
class StreamStats:
    streams: int
    wall_s: float
    ttfb_ms: dict[str, float]
    total_ms: dict[str, float]
    max_gap_ms: dict[str, float]
    stalled: int
    errors: int
    error_kinds: dict[str, int]
    ended_with_done: int
    events_per_stream: dict[str, float]
    peak_open: int
    clean: int = field(default=0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pct(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * scale, 2)

    return {"p50": at(0.50), "p99": at(0.99), "max": round(ordered[-1] * scale, 2)}


class _Open:
    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def up(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def down(self) -> None:
        self.now -= 1


async def _one(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes, live: _Open
) -> _One:
    out = _One()
    start = time.perf_counter()
    opened = False
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            live.up()
            opened = True
            if resp.status != 200:
                out.error = f"http_{resp.status}"
                await resp.read()
                return out
            last = start
            tail = b""
            async for chunk in resp.content.iter_any():
                now = time.perf_counter()
                if out.ttfb is None:
                    out.ttfb = now - start
                else:
                    out.max_gap = max(out.max_gap, now - last)
                last = now
                out.events += chunk.count(b"data: ")
                if b'"error"' in chunk and out.error is None:
                    out.error = "error_event"
                tail = (tail + chunk)[-len(_DONE) :]
            out.total = time.perf_counter() - start
            out.done = tail == _DONE
            if not out.done and out.error is None:
                out.error = "no_done"
    except (aiohttp.ClientError, TimeoutError) as exc:
        out.error = type(exc).__name__
    finally:
        if opened:
            live.down()
    return out


async def run_streams(
    base: str, key: str, count: int, stall_s: float, timeout_s: float = 120.0
) -> StreamStats:
    """Open ``count`` streams at once against ``base`` and wait for all of them."""
    raise_fd_limit(count * 2 + 256)
    body = json.dumps({**CHAT_BODY, "stream": True, "stream_options": {"include_usage": True}})
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    url = base + "/v1/chat/completions"
    live = _Open()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        results = await asyncio.gather(
            *(_one(session, url, headers, body.encode(), live) for _ in range(count))
        )
        wall = time.perf_counter() - start
    kinds: dict[str, int] = {}
    for r in results:
        if r.error is not None:
            kinds[r.error] = kinds.get(r.error, 0) + 1
    stats = StreamStats(
        streams=count,
        wall_s=round(wall, 3),
        ttfb_ms=_pct([r.ttfb for r in results if r.ttfb is not None]),
        total_ms=_pct([r.total for r in results if r.total is not None]),
        max_gap_ms=_pct([r.max_gap for r in results]),
        stalled=sum(r.max_gap > stall_s for r in results),
        errors=sum(r.error is not None for r in results),
        error_kinds=kinds,
        ended_with_done=sum(r.done for r in results),
        events_per_stream=_pct([float(r.events) for r in results], scale=1.0),
        peak_open=live.peak,
    )
    stats.clean = sum(r.error is None and r.done and r.max_gap <= stall_s for r in results)
    return stats
