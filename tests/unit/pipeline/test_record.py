"""pipeline/record: every call is counted once, when it ends, streams included."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import orjson
import pytest

from sluicegate.errors import AuthenticationFailed
from sluicegate.observability.access_log import AccessLog
from sluicegate.observability.counters import Counters
from sluicegate.pipeline.call import Call, Reply
from sluicegate.pipeline.record import Record
from sluicegate.types import Endpoint


def recorder() -> tuple[Counters, Record, io.BytesIO]:
    out = io.BytesIO()
    counters = Counters()
    return counters, Record(counters, AccessLog(out=out)), out


def logged(record: Record, out: io.BytesIO) -> list[tuple[str, str, int]]:
    """(endpoint, model, status) of each access-log line: one per finished call."""
    assert record.access_log is not None
    record.access_log.flush()
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    return [(e["endpoint"], e["model"], e["status"]) for e in lines]


def call(model: str | None = "m") -> Call:
    return Call(request_id="r", endpoint=Endpoint.CHAT, body={}, raw=None, model=model)


async def chunks() -> AsyncIterator[bytes]:
    yield b"data: [DONE]\n\n"


def test_body_reply_is_counted_at_once() -> None:
    counters, record, out = recorder()

    async def terminal(c: Call) -> Reply:
        assert counters.in_flight == 1
        return Reply(body=b"{}")

    asyncio.run(record(call(), terminal))
    assert counters.in_flight == 0
    assert logged(record, out) == [("chat", "m", 200)]


def test_stream_is_counted_when_it_ends() -> None:
    counters, record, out = recorder()

    async def terminal(c: Call) -> Reply:
        return Reply(stream=chunks())

    reply = asyncio.run(record(call(), terminal))
    assert counters.in_flight == 1
    assert logged(record, out) == []
    reply.end("upstream_error")
    reply.end(None)  # a second end is ignored
    assert counters.in_flight == 0
    assert logged(record, out) == [("chat", "m", 200)]
    assert reply.error == "upstream_error"


def test_refusal_is_counted_with_its_status() -> None:
    counters, record, out = recorder()

    async def terminal(c: Call) -> Reply:
        raise AuthenticationFailed("no")

    with pytest.raises(AuthenticationFailed):
        asyncio.run(record(call(None), terminal))
    assert counters.in_flight == 0
    assert logged(record, out) == [("chat", "-", 401)]


def test_unexpected_error_is_counted_as_500() -> None:
    counters = Counters()
    out = io.BytesIO()
    log = AccessLog(out=out)

    async def terminal(c: Call) -> Reply:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        asyncio.run(Record(counters, log)(call(), terminal))
    log.flush()
    assert counters.in_flight == 0
    entry = orjson.loads(out.getvalue())
    assert {k: entry[k] for k in ("request_id", "endpoint", "model", "status", "error")} == {
        "request_id": "r",
        "endpoint": "chat",
        "model": "m",
        "status": 500,
        "error": "internal_error",
    }
