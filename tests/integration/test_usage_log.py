"""Usage events through the bounded queue into a real SQLite file and a real PostgreSQL
database, and the usage report over them.

Every scenario runs on both databases. The outage runs against a PostgreSQL port
where nothing listens; the recovery starts the writer on a database whose tables
do not exist yet (a real write failure), then migrates it and watches the queued
events arrive.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from sluicegate.governance.usage_log import UsageEvent, UsageLog
from sluicegate.governance.usage_report import Period, parse_period, usage_report
from sluicegate.storage.database import Database, database_url
from sluicegate.storage.tables import usage_events
from tests.fakes.databases import fresh_postgres, sqlite_url

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
MARCH = parse_period("2026-03", NOW)
#: A PostgreSQL URL where nothing listens.
NOWHERE = "postgresql+psycopg://postgres@127.0.0.1:1/sluicegate"

BASE = UsageEvent(
    ts=NOW.timestamp(),
    request_id="req-0",
    endpoint="chat",
    org="acme",
    team="search",
    key_id="k1",
    model="gpt-4o-mini",
    served_model="gpt-4o-mini-2024-07-18",
    deployment="openai-1",
    status=200,
    outcome="ok",
    error=None,
    attempts=1,
    stream=False,
    prompt_tokens=10,
    completion_tokens=5,
    cached_tokens=0,
    reasoning_tokens=0,
    cost_micros=100,
    gpu_seconds=0.0,
    latency_ms=12.5,
)


def events(count: int, **changes: Any) -> list[UsageEvent]:
    return [replace(BASE, request_id=f"req-{i}", **changes) for i in range(count)]


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The SQLAlchemy URL of an empty database, not migrated."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
    else:
        with fresh_postgres() as url:
            yield database_url(url, str(tmp_path))


@pytest.fixture
def db(fresh_url: str) -> Iterator[Database]:
    database = Database(fresh_url)
    database.upgrade()
    try:
        yield database
    finally:
        database.close()


def stored_rows(db: Database) -> list[dict[str, Any]]:
    with db.begin() as connection:
        rows = connection.execute(select(usage_events).order_by(usage_events.c.id))
        return [dict(row._mapping) for row in rows]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


# -- the queue and the writer ---------------------------------------------------


def test_flush_writes_every_event_in_batches(db: Database) -> None:
    sent = events(1234)

    async def scenario() -> UsageLog:
        usage = UsageLog(db, batch_size=100)
        assert all(usage.submit(event) for event in sent)
        assert usage.pending == 1234
        assert await usage.flush()
        return usage

    usage = asyncio.run(scenario())
    assert (usage.submitted, usage.written, usage.dropped, usage.pending) == (1234, 1234, 0, 0)
    rows = stored_rows(db)
    assert [row["request_id"] for row in rows] == [event.request_id for event in sent]
    first = rows[0]
    del first["id"]
    assert first == {name: getattr(sent[0], name) for name in first}


def test_writer_wakes_on_a_full_batch_and_on_the_interval(db: Database) -> None:
    async def scenario() -> None:
        # A long interval: only a full batch can wake the writer in time.
        usage = UsageLog(db, batch_size=50, flush_interval=30.0)
        await usage.start()
        for event in events(50):
            usage.submit(event)
        await until(lambda: usage.written == 50)
        await usage.close()

        usage = UsageLog(db, batch_size=50, flush_interval=0.05)
        await usage.start()
        usage.submit(replace(BASE, request_id="lonely"))
        await until(lambda: usage.written == 1)
        await usage.close()

    asyncio.run(scenario())
    assert len(stored_rows(db)) == 51


def test_close_writes_what_is_queued_and_refuses_later_events(db: Database) -> None:
    async def scenario() -> UsageLog:
        usage = UsageLog(db, batch_size=100, flush_interval=30.0)
        await usage.start()
        for event in events(30):
            usage.submit(event)
        await usage.close()
        assert not usage.submit(BASE)
        return usage

    usage = asyncio.run(scenario())
    assert (usage.submitted, usage.written, usage.dropped, usage.pending) == (31, 30, 1, 0)
    assert len(stored_rows(db)) == 30


def test_capacity_bounds_the_queue_and_counts_drops(db: Database) -> None:
    async def scenario() -> UsageLog:
        usage = UsageLog(db, capacity=100, batch_size=40)
        accepted = [usage.submit(event) for event in events(150)]
        assert accepted == [True] * 100 + [False] * 50
        assert (usage.pending, usage.dropped) == (100, 50)
        # Submits that found 80..99 queued, then the 50 that found it full.
        assert usage.backpressure == 20 + 50
        assert await usage.flush()
        return usage

    usage = asyncio.run(scenario())
    assert (usage.submitted, usage.written, usage.dropped, usage.pending) == (150, 100, 50, 0)
    # The oldest are kept, the newest dropped.
    assert [row["request_id"] for row in stored_rows(db)] == [f"req-{i}" for i in range(100)]


def test_a_row_the_database_refuses_is_dropped_alone(db: Database) -> None:
    batch = events(10)
    batch[4] = replace(batch[4], endpoint=None)  # type: ignore[arg-type]  # NOT NULL
    batch[7] = replace(batch[7], request_id="r" * 100)  # longer than the column: cut

    async def scenario() -> UsageLog:
        usage = UsageLog(db)
        for event in batch:
            usage.submit(event)
        assert await usage.flush()
        return usage

    usage = asyncio.run(scenario())
    assert (usage.written, usage.dropped, usage.pending, usage.write_failures) == (9, 1, 0, 0)
    ids = [row["request_id"] for row in stored_rows(db)]
    assert "req-4" not in ids and "r" * 64 in ids and len(ids) == 9


def test_outage_keeps_submit_fast_and_events_queued(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sluicegate.usage")
    nowhere = Database(NOWHERE, connect_timeout=1.0)

    async def scenario() -> UsageLog:
        usage = UsageLog(nowhere, capacity=1000, batch_size=100, flush_interval=0.05)
        await usage.start()
        sent = events(1500)
        for event in sent[:600]:
            usage.submit(event)
        await until(lambda: usage.write_failures >= 2)
        for event in sent[600:]:
            usage.submit(event)
        assert not await usage.flush()
        closing = time.perf_counter()
        await usage.close(timeout=1.0)
        assert time.perf_counter() - closing < 2.0
        return usage

    try:
        usage = asyncio.run(scenario())
    finally:
        nowhere.close()
    assert usage.written == 0
    assert (usage.submitted, usage.pending, usage.dropped) == (1500, 1000, 500)
    assert usage.backpressure >= 500
    assert usage.write_failures >= 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("usage writes failing" in message for message in warnings) == 1
    assert sum("usage queue full" in message for message in warnings) <= 1
    assert any("closed with 1000 events unwritten" in message for message in warnings)


def test_submit_costs_microseconds_while_the_database_is_down() -> None:
    nowhere = Database(NOWHERE, connect_timeout=1.0)

    async def scenario() -> float:
        usage = UsageLog(nowhere, capacity=200_000, batch_size=500, flush_interval=0.01)
        await usage.start()
        usage.submit(BASE)
        await until(lambda: usage.write_failures >= 1)
        sent = events(100_000)
        seconds = 0.0
        for chunk in range(0, len(sent), 1000):
            started = time.perf_counter()
            for event in sent[chunk : chunk + 1000]:
                usage.submit(event)
            seconds += time.perf_counter() - started
            # Let the failing writer run between chunks, as requests would.
            await asyncio.sleep(0)
        assert usage.pending == 100_001 and usage.write_failures >= 1
        await usage.close(timeout=0.5)
        return seconds

    try:
        seconds = asyncio.run(scenario())
    finally:
        nowhere.close()
    # Generous for slow CI machines: 20 µs per event; a deque append takes well under 1.
    assert seconds < 2.0


def test_writes_resume_when_the_database_comes_back(
    fresh_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sluicegate.usage")
    database = Database(fresh_url)  # no migrations yet: usage_events does not exist

    async def scenario() -> UsageLog:
        usage = UsageLog(database, batch_size=20, flush_interval=0.05)
        await usage.start()
        for event in events(50):
            usage.submit(event)
        await until(lambda: usage.write_failures >= 1)
        assert usage.pending == 50 and usage.written == 0
        await database.run(database.upgrade)
        await until(lambda: usage.written == 50)
        await usage.close()
        return usage

    try:
        usage = asyncio.run(scenario())
        rows = stored_rows(database)
    finally:
        database.close()
    assert (usage.pending, usage.dropped) == (0, 0)
    assert usage.write_failures >= 1
    assert sorted(row["request_id"] for row in rows) == sorted(f"req-{i}" for i in range(50))
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    failing = [m for level, m in messages if level == logging.WARNING and "failing" in m]
    resumed = [m for level, m in messages if level == logging.INFO and "resumed" in m]
    assert len(failing) == 1 and len(resumed) == 1


# -- the report -----------------------------------------------------------------


def random_events(count: int, seed: int = 7) -> list[UsageEvent]:
    rng = random.Random(seed)
    start = datetime(2026, 2, 20, tzinfo=UTC).timestamp()
    end = datetime(2026, 4, 10, tzinfo=UTC).timestamp()
    made = []
    for i in range(count):
        model = rng.choice(["gpt-4o-mini", "claude-haiku", "local-qwen", None])
        made.append(
            replace(
                BASE,
                ts=rng.uniform(start, end),
                request_id=f"rnd-{i}",
                org=rng.choice(["acme", "globex", None]),
                key_id=rng.choice(["k1", "k2", "k3", None]),
                model=model,
                served_model=rng.choice([None, f"{model}-v2"]) if model else None,
                outcome=rng.choice(["ok", "ok", "ok", "refused", "failed", "failed_over"]),
                prompt_tokens=rng.randrange(0, 100_000),
                completion_tokens=rng.randrange(0, 10_000),
                cached_tokens=rng.randrange(0, 1000),
                reasoning_tokens=rng.randrange(0, 1000),
                # Large enough that the sums pass 2**53, where a float would round.
                cost_micros=rng.randrange(0, 2**45),
                gpu_seconds=round(rng.uniform(0, 3), 3),
            )
        )
    # The bounds: the first instant is in, the end is out.
    made.append(replace(BASE, ts=MARCH.start.timestamp(), request_id="edge-in", cost_micros=7))
    made.append(replace(BASE, ts=MARCH.end.timestamp(), request_id="edge-out", cost_micros=9))
    return made


def expected_figures(chosen: list[UsageEvent]) -> dict[str, Any]:
    micros = sum(event.cost_micros for event in chosen)
    figures: dict[str, Any] = {"requests": len(chosen)}
    for outcome in ("ok", "refused", "failed", "failed_over"):
        figures[outcome] = sum(event.outcome == outcome for event in chosen)
    for name in ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens"):
        figures[name] = sum(getattr(event, name) for event in chosen)
    figures["cost_usd"] = str((Decimal(micros) / 1_000_000).quantize(Decimal("0.000001")))
    figures["cost_micros"] = micros
    figures["gpu_seconds"] = pytest.approx(sum(event.gpu_seconds for event in chosen), abs=1e-5)
    return figures


def expected_report(
    sent: list[UsageEvent], period: Period, org: str | None = None, key_id: str | None = None
) -> dict[str, Any]:
    lo, hi = period.start.timestamp(), period.end.timestamp()
    chosen = [
        event
        for event in sent
        if lo <= event.ts < hi
        and (org is None or event.org == org)
        and (key_id is None or event.key_id == key_id)
    ]

    def grouped(name: str, of: Callable[[UsageEvent], str | None]) -> list[dict[str, Any]]:
        groups: dict[str | None, list[UsageEvent]] = {}
        for event in chosen:
            groups.setdefault(of(event), []).append(event)
        rows = [{name: value, **expected_figures(group)} for value, group in groups.items()]
        rows.sort(key=lambda row: (-row["cost_micros"], -row["requests"], row[name] or ""))
        return rows

    return {
        "object": "usage_report",
        "period": {
            "label": period.label,
            "start": period.start.isoformat().replace("+00:00", "Z"),
            "end": period.end.isoformat().replace("+00:00", "Z"),
        },
        "org": org,
        "key_id": key_id,
        "totals": expected_figures(chosen),
        "by_model": grouped("model", lambda event: event.served_model or event.model),
        "by_key": grouped("key_id", lambda event: event.key_id),
    }


def test_report_sums_exactly_and_filters(db: Database) -> None:
    sent = random_events(3000)

    async def load() -> None:
        usage = UsageLog(db, capacity=10_000)
        for event in sent:
            usage.submit(event)
        assert await usage.flush()

    asyncio.run(load())
    last_week = parse_period("last-7d", NOW)
    cases: list[tuple[Period, str | None, str | None]] = [
        (MARCH, None, None),
        (MARCH, "acme", None),
        (MARCH, None, "k2"),
        (MARCH, "globex", "k3"),
        (last_week, None, None),
        (parse_period("2026-03-01", NOW), None, None),
        (parse_period("2025-01", NOW), None, None),  # nothing in it
        (MARCH, "nobody", None),
    ]
    with db.begin() as connection:
        for period, org, key_id in cases:
            report = usage_report(connection, period=period, org=org, key_id=key_id)
            assert report == expected_report(sent, period, org, key_id), (period.label, org, key_id)

    with db.begin() as connection:
        report = usage_report(connection, period=MARCH)
        in_db = connection.execute(select(func.count()).select_from(usage_events)).scalar_one()
    totals = report["totals"]
    assert in_db == 3002
    assert totals["cost_micros"] > 2**53
    assert totals["requests"] == sum(totals[o] for o in ("ok", "refused", "failed", "failed_over"))
    assert totals["requests"] > 1000 and min(totals["refused"], totals["failed_over"]) > 100
    assert None in [row["model"] for row in report["by_model"]]
    empty = usage_report_of(db, parse_period("2025-01", NOW))["totals"]
    assert empty["requests"] == 0 and empty["cost_usd"] == "0.000000"


def usage_report_of(db: Database, period: Period) -> dict[str, Any]:
    with db.begin() as connection:
        return usage_report(connection, period=period)


def test_report_names_the_served_model_and_exact_dollars(db: Database) -> None:
    sent = [
        replace(BASE, request_id="a", served_model=None, model="alias", cost_micros=1),
        replace(BASE, request_id="b", served_model="real", model="alias", cost_micros=2_500_000),
        replace(BASE, request_id="c", served_model="real", model="other", cost_micros=1_000_001),
        replace(BASE, request_id="d", served_model=None, model="alias", outcome="refused"),
    ]

    async def load() -> None:
        usage = UsageLog(db)
        for event in sent:
            usage.submit(event)
        assert await usage.flush()

    asyncio.run(load())
    report = usage_report_of(db, MARCH)
    assert [(row["model"], row["requests"], row["cost_usd"]) for row in report["by_model"]] == [
        ("real", 2, "3.500001"),
        ("alias", 2, "0.000101"),
    ]
    assert report["totals"]["cost_usd"] == "3.500102"
    assert (report["totals"]["ok"], report["totals"]["refused"]) == (3, 1)
    assert report["period"] == {
        "label": "2026-03",
        "start": "2026-03-01T00:00:00Z",
        "end": "2026-04-01T00:00:00Z",
    }
