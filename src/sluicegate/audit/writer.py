"""The audit log as the gateway uses it: a bounded queue and a writer off the event loop.

``AuditLog.submit`` only appends to a bounded deque: O(1), no await, no I/O. One
writer task takes batches from the deque's head and hands them to a dedicated
thread that numbers, chains and writes them (``ChainStore``); a batch leaves the
deque only once it is written, so a failed write is retried, never skipped.

When the deque is full, ``submit`` drops the entry, counts it and returns False.
With ``on_full="refuse"`` the gateway must not serve a call it could not audit:
it checks ``accepting`` before the call and answers 503 while it is False.
``accepting`` turns False ``reserve`` entries before the deque is full, so calls
admitted a moment earlier still find room when they finish (as long as fewer than
``reserve`` are in flight).

Replicas: a chain has exactly one writer (a lock file enforces it). Each gateway
process passes its own ``replica`` id (pod name, or hostname-pid for several
workers on one host); its files carry that id, so replicas sharing a directory
write separate chains, each verified on its own.

Each checkpoint is logged (logger ``sluicegate.audit``, fields ``audit_seq``,
``audit_hash``, ``audit_log``): shipped off the host, those lines are the
"expected last" a verifier needs to detect a cut-off end of the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Any, Literal, TypeVar

from sluicegate.audit.chain import Checkpoint, signer_for
from sluicegate.audit.retention import apply_retention
from sluicegate.audit.store import ChainStore, Rotation
from sluicegate.tasks import cancel_all

__all__ = ["AuditLog"]

log = logging.getLogger("sluicegate.audit")

T = TypeVar("T")
RETRY_MIN = 0.5
RETRY_MAX = 10.0
RETENTION_EVERY = 3600.0


class AuditLog:
    """A bounded queue of audit entries and the thread that chains and writes them."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        signing_key: bytes,
        replica: str | None = None,
        capacity: int = 100_000,
        batch_size: int = 1000,
        flush_interval: float = 0.2,
        checkpoint_every: int = 1000,
        checkpoint_seconds: float = 60.0,
        on_full: Literal["drop", "refuse"] = "drop",
        reserve: int | None = None,
        record_prompts: bool = False,
        rotation: Rotation | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if capacity < 1 or batch_size < 1 or flush_interval <= 0:
            raise ValueError("capacity and batch_size must be >= 1, flush_interval > 0")
        if on_full not in ("drop", "refuse"):
            raise ValueError("on_full must be 'drop' or 'refuse'")
        self.store = ChainStore(
            directory,
            signer_for(signing_key),
            replica=replica,
            rotation=rotation or Rotation(),
            checkpoint_every=checkpoint_every,
            checkpoint_seconds=checkpoint_seconds,
            record_prompts=record_prompts,
            clock=clock,
        )
        self.capacity = capacity
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.on_full = on_full
        reserve = capacity // 10 if reserve is None else reserve
        self._refuse_at = max(1, capacity - reserve)
        self.clock = clock
        self.submitted = 0
        self.written = 0
        self.dropped = 0
        self.write_failures = 0
        self.checkpoints = 0
        self.last_checkpoint: Checkpoint | None = None
        # Two deques rather than one of (time, fields) tuples: no allocation per
        # submit, and nothing new for the garbage collector to track.
        self._pending: deque[Mapping[str, Any]] = deque()
        self._times: deque[float] = deque()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._opened = False
        self._closed = False
        self._failing = False
        self._dropped_seen = 0
        self._dropping = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def accepting(self) -> bool:
        """False when, with ``on_full="refuse"``, the gateway should refuse new calls."""
        if self.on_full == "drop":
            return True
        return not self._closed and len(self._pending) < self._refuse_at

    # -- the request path ---------------------------------------------------

    def submit(self, fields: Mapping[str, Any]) -> bool:
        """Queue one entry's fields; False when it was dropped (queue full or log closed).

        Call it on the event loop's thread. The log takes ``fields`` over: neither it
        nor what it holds may change afterwards (it is serialised on another thread).
        """
        self.submitted += 1
        size = len(self._pending)
        if size >= self.capacity or self._closed:
            self.dropped += 1
            return False
        self._times.append(self.clock())
        self._pending.append(fields)
        if size + 1 >= self.batch_size and not self._wake.is_set():
            self._wake.set()
        return True

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        """Open the chain (raises ``AuditError`` if it is locked or damaged), start writing."""
        if self._task is not None or self._closed:
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sluicegate-audit")
        await self._in_thread(self.store.open)
        self._opened = True
        self._task = asyncio.create_task(self._run(), name="sluicegate-audit-writer")

    async def flush(self) -> bool:
        """Write everything queued now; False if a write failed."""
        async with self._lock:
            return await self._drain()

    async def close(self, timeout: float = 10.0) -> None:
        """Stop taking entries, write the queue, sign the end (final checkpoint), stop."""
        self._closed = True
        try:
            async with asyncio.timeout(timeout), self._lock:
                await self._stop_writer()
                if self._opened:
                    await self._drain()
                    self._opened = False
                    self._checkpointed(await self._in_thread(self.store.close))
        except TimeoutError:
            log.warning("audit log: close timed out with %d entries unwritten", self.pending)
        except Exception as exc:  # the log must not stop a shutdown
            log.error("audit log: close failed: %s", exc)
        finally:
            await self._stop_writer()
            if self._executor is not None:
                self._executor.shutdown(wait=False)
        if self._pending:
            log.warning("audit log closed with %d entries unwritten", len(self._pending))

    async def _stop_writer(self) -> None:
        task, self._task = self._task, None
        await cancel_all([task])

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- the writer ---------------------------------------------------------

    async def _run(self) -> None:
        delay = 0.0
        next_retention = time.monotonic()
        while True:
            if delay:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.flush_interval):
                        await self._wake.wait()
            self._wake.clear()
            async with self._lock:
                ok = await self._drain()
                if ok and time.monotonic() >= self.store.checkpoint_due:
                    ok = await self._step(self.store.tick)
                if ok and time.monotonic() >= next_retention:
                    next_retention = time.monotonic() + RETENTION_EVERY
                    ok = await self._step(apply_retention, self.store)
            delay = 0.0 if ok else min(max(delay * 2, RETRY_MIN), RETRY_MAX)
            self._report_drops()

    async def _step(self, fn: Callable[..., object], *args: Any) -> bool:
        try:
            result = await self._in_thread(fn, *args)
        except Exception as exc:  # the writer must outlive any disk error
            self._failed(exc)
            return False
        if isinstance(result, Checkpoint):
            self._checkpointed(result)
        return True

    async def _drain(self) -> bool:
        """Write queued batches until the queue is empty or a write fails; lock held."""
        while self._pending:
            n = self.batch_size
            batch = list(zip(islice(self._times, n), islice(self._pending, n), strict=True))
            try:
                checkpoints = await self._in_thread(self.store.append, batch)
            except Exception as exc:  # the writer must outlive any disk error
                self._failed(exc)
                return False
            for _ in batch:
                self._pending.popleft()
                self._times.popleft()
            self.written += len(batch)
            for checkpoint in checkpoints:
                self._checkpointed(checkpoint)
            if self._failing:
                self._failing = False
                log.info("audit writes resumed; %d entries queued", len(self._pending))
        return True

    def _checkpointed(self, checkpoint: Checkpoint | None) -> None:
        if checkpoint is None:
            return
        self.checkpoints += 1
        self.last_checkpoint = checkpoint
        log.info(
            "audit checkpoint",
            extra={
                "audit_log": checkpoint.log_id,
                "audit_replica": self.store.replica,
                "audit_seq": checkpoint.seq,
                "audit_hash": checkpoint.hash,
            },
        )

    def _failed(self, exc: Exception) -> None:
        self.write_failures += 1
        if not self._failing:
            self._failing = True
            log.error(
                "audit writes failing (%s: %s); holding %d entries, retrying",
                type(exc).__name__,
                exc,
                len(self._pending),
            )

    def _report_drops(self) -> None:
        # One warning when the queue starts to overflow, one when it stops.
        new = self.dropped - self._dropped_seen
        self._dropped_seen = self.dropped
        if new and not self._dropping:
            self._dropping = True
            log.warning("audit queue full (%d entries): dropping new entries", self.capacity)
        elif not new and self._dropping:
            self._dropping = False
            log.warning("audit queue has room again; %d entries dropped in all", self.dropped)
