"""Usage events: one per call, queued in memory, written to SQL in batches.

The request path only appends to a bounded deque (``UsageLog.submit``); it never
waits on the database. One writer task drains the deque in batches of at most
``batch_size`` rows on the database's thread pool. When the database fails, the
batch stays queued and the writer retries with capped exponential backoff; while
the queue is full, new events are dropped and counted, never the older ones, so
an outage loses the newest events rather than leaving holes in the past.

Counters (future Prometheus metrics) keep ``submitted == written + dropped +
pending`` at every await point; events still queued when ``close`` gives up are
logged and count as neither written nor dropped.

A batch the database refuses for its content (a value it will never accept)
would block the queue forever, so on such an error the batch is written row by
row and only the rows refused again are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, fields
from itertools import islice
from typing import Any

from sqlalchemy import String, insert
from sqlalchemy.exc import DataError, IntegrityError

from sluicegate.storage.database import Database
from sluicegate.storage.tables import usage_events
from sluicegate.tasks import cancel_all

__all__ = ["UsageEvent", "UsageLog"]

log = logging.getLogger("sluicegate.usage")

#: Backoff between failed writes, in seconds.
RETRY_MIN = 0.5
RETRY_MAX = 10.0


@dataclass(slots=True)
class UsageEvent:
    """One call as ``usage_events`` stores it (``ts`` in epoch seconds)."""

    ts: float
    request_id: str
    endpoint: str
    org: str | None
    team: str | None
    key_id: str | None
    model: str | None
    served_model: str | None
    deployment: str | None
    status: int
    outcome: str  # ok | refused | failed | failed_over
    error: str | None
    attempts: int
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_micros: int
    gpu_seconds: float
    latency_ms: float


_FIELDS = tuple(field.name for field in fields(UsageEvent))
#: String columns and their lengths: longer values are cut rather than refused,
#: since PostgreSQL rejects them and SQLite would keep them.
_LENGTHS = {
    column.name: column.type.length
    for column in usage_events.columns
    if isinstance(column.type, String) and column.type.length is not None
}


def _row(event: UsageEvent) -> dict[str, Any]:
    row = {name: getattr(event, name) for name in _FIELDS}
    for name, length in _LENGTHS.items():
        value = row[name]
        if isinstance(value, str) and len(value) > length:
            row[name] = value[:length]
    return row


class UsageLog:
    """A bounded queue of usage events and the task that writes them."""

    def __init__(
        self,
        database: Database,
        *,
        capacity: int = 50_000,
        batch_size: int = 500,
        flush_interval: float = 0.5,
    ) -> None:
        if capacity < 1 or batch_size < 1 or flush_interval <= 0:
            raise ValueError("capacity and batch_size must be >= 1, flush_interval > 0")
        self.database = database
        self.capacity = capacity
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.submitted = 0
        self.written = 0
        self.dropped = 0
        self.write_failures = 0
        self.backpressure = 0
        self._pending: deque[UsageEvent] = deque()
        self._sql: tuple[str, tuple[str, ...] | None] | None = None
        # Submits that find at least this many events queued count as back-pressure.
        self._high_water = max(1, (capacity * 4 + 4) // 5)
        self._wake = asyncio.Event()
        # One writer at a time: the batch stays at the head of the deque until
        # it is written, so two concurrent drains would write it twice.
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._failing = False
        self._failures_in_outage = 0
        self._dropped_seen = 0
        self._dropping = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- the request path ---------------------------------------------------

    def submit(self, event: UsageEvent) -> bool:
        """Queue ``event``; False when it was dropped (queue full or log closed).

        Call it on the event loop's thread: it never blocks and never awaits.
        """
        self.submitted += 1
        size = len(self._pending)
        if size >= self._high_water:
            self.backpressure += 1
        if size >= self.capacity or self._closed:
            self.dropped += 1
            return False
        self._pending.append(event)
        if size + 1 >= self.batch_size and not self._wake.is_set():
            self._wake.set()
        return True

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name="sluicegate-usage-writer")

    async def flush(self) -> bool:
        """Write everything queued now; False if a write failed (the rest stays queued)."""
        async with self._lock:
            return await self._drain()

    async def close(self, timeout: float = 5.0) -> None:
        """Stop taking events, write what can be written within ``timeout``, stop the writer."""
        self._closed = True
        try:
            async with asyncio.timeout(timeout):
                # Holding the lock, the writer is between writes: cancelling it
                # cannot leave a batch committed but still queued.
                async with self._lock:
                    await self._stop_writer()
                    await self._drain()
        except TimeoutError:
            pass
        finally:
            await self._stop_writer()
        if self._pending:
            log.warning("usage log closed with %d events unwritten", len(self._pending))

    async def _stop_writer(self) -> None:
        task, self._task = self._task, None
        await cancel_all([task])

    # -- the writer ---------------------------------------------------------

    async def _run(self) -> None:
        delay = 0.0
        while True:
            if delay:
                # During an outage a full batch is no reason to hammer the database.
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.flush_interval):
                        await self._wake.wait()
            self._wake.clear()
            async with self._lock:
                ok = await self._drain()
            delay = 0.0 if ok else min(max(delay * 2, RETRY_MIN), RETRY_MAX)
            self._report_drops()

    async def _drain(self) -> bool:
        """Write queued batches until the queue is empty or a write fails; lock held."""
        while self._pending:
            batch = list(islice(self._pending, self.batch_size))
            try:
                written, refused = await self.database.run(self._write, batch)
            except Exception as exc:  # any database error: the writer must outlive it
                self._failed(exc)
                return False
            for _ in batch:
                self._pending.popleft()
            self.written += written
            self.dropped += refused
            # Logged apart, in _write: not a sign of a full queue.
            self._dropped_seen += refused
            self._recovered()
        return True

    def _statement(self) -> tuple[str, tuple[str, ...] | None]:
        """The INSERT as the driver's own SQL, and its parameter order if positional.

        Sent with ``exec_driver_sql``: executemany straight through the driver costs
        less than half the CPU per row of a Core ``insert`` (its bind processing is
        per row), and this runs for every call the gateway serves.
        """
        if self._sql is None:
            compiled = insert(usage_events).compile(
                dialect=self.database.engine.dialect, column_keys=list(_FIELDS)
            )
            order = tuple(compiled.positiontup) if compiled.positiontup is not None else None
            self._sql = (str(compiled), order)
        return self._sql

    def _write(self, batch: list[UsageEvent]) -> tuple[int, int]:
        """On a database thread: insert ``batch``; (rows written, rows refused)."""
        sql, order = self._statement()
        dicts = [_row(event) for event in batch]
        rows: list[Any] = (
            [tuple(row[name] for name in order) for row in dicts] if order is not None else dicts
        )
        try:
            with self.database.begin() as connection:
                connection.exec_driver_sql(sql, rows)
            return len(rows), 0
        except (DataError, IntegrityError):
            pass
        written = 0
        first_error: Exception | None = None
        for row in rows:
            try:
                with self.database.begin() as connection:
                    connection.exec_driver_sql(sql, row)
                written += 1
            except (DataError, IntegrityError) as exc:
                first_error = first_error or exc
        if first_error is not None:
            log.warning(
                "usage database refused %d of %d events; dropped them: %s",
                len(rows) - written,
                len(rows),
                str(first_error).splitlines()[0],
            )
        return written, len(rows) - written

    def _failed(self, exc: Exception) -> None:
        self.write_failures += 1
        self._failures_in_outage += 1
        if not self._failing:
            self._failing = True
            log.warning(
                "usage writes failing (%s: %s); holding %d events, retrying",
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
                len(self._pending),
            )

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.info(
                "usage writes resumed after %d failed attempts; %d events still queued",
                self._failures_in_outage,
                len(self._pending),
            )
            self._failures_in_outage = 0

    def _report_drops(self) -> None:
        # One warning when the queue starts to overflow, one info when it stops.
        new = self.dropped - self._dropped_seen
        self._dropped_seen = self.dropped
        if new and not self._dropping:
            self._dropping = True
            log.warning("usage queue full (%d events): dropping new events", self.capacity)
        elif not new and self._dropping:
            self._dropping = False
            log.info("usage queue has room again; %d events dropped in all", self.dropped)
