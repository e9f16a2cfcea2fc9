"""One replica's chain on disk: append-only JSON-lines files, rotated, checkpointed.

Not thread-safe: one thread owns a ``ChainStore`` (``AuditLog`` runs it on its
writer thread). Every file starts with a signed header naming the log and the last
seq and hash of the file before it, so the chain runs on across files and a
verifier can start at any file. A file is closed with a checkpoint when it
rotates (size, or a new UTC day), so every closed file is covered by a signature.

Durability: each batch is one ``write`` (flushed to the OS, so a crash of the
process loses nothing written); ``fsync`` runs with each checkpoint, which bounds
what a power failure can lose to the entries since the last checkpoint — the same
entries no signature covers yet — without paying a disk flush per batch. After a
checkpoint is on disk its record is copied to the head file (write, fsync, rename).

On start the store reopens the newest file: it cuts a torn last line (a crash in
the middle of a write), re-checks that file's hash links (refusing to append to a
damaged chain), and, when entries after the last checkpoint were never signed,
appends an ``audit.resume`` entry saying which, before signing anything new.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from sluicegate.audit.chain import FORMAT, Checkpoint, Signer, entry_hash, genesis, seal, sign
from sluicegate.audit.entry import canonical, format_ts, make_entry, payload
from sluicegate.audit.files import (
    AuditFile,
    chain_files,
    file_name,
    head_path,
    lock_path,
    read_lines,
    replica_name,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["AuditError", "ChainStore", "Rotation", "system_entry"]

log = logging.getLogger("sluicegate.audit")

Item = tuple[float, Mapping[str, Any]]


class AuditError(Exception):
    """The log cannot be written: locked by another writer, or its newest file is damaged."""


@dataclass(frozen=True, slots=True)
class Rotation:
    #: A file rotates once it holds about this many bytes (checked per batch).
    max_bytes: int = 64 * 1024 * 1024
    #: Files older than this many days (by their name's UTC day) are gzipped to archive/.
    hot_days: int | None = 7
    #: Files older than this many days are deleted; None keeps them forever.
    archive_days: int | None = 30

    def __post_init__(self) -> None:
        if self.max_bytes < 1024:
            raise ValueError("max_bytes must be at least 1024")
        if any(days is not None and days < 0 for days in (self.hot_days, self.archive_days)):
            raise ValueError("hot_days and archive_days must be >= 0 (or None)")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class ChainStore:
    def __init__(
        self,
        directory: str | os.PathLike[str],
        signer: Signer,
        *,
        replica: str | None = None,
        rotation: Rotation = Rotation(),
        checkpoint_every: int = 1000,
        checkpoint_seconds: float = 60.0,
        record_prompts: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if checkpoint_every < 1 or checkpoint_seconds <= 0:
            raise ValueError("checkpoint_every must be >= 1 and checkpoint_seconds > 0")
        self.directory = Path(directory)
        self.signer = signer
        self.replica = replica_name(replica)
        self.rotation = rotation
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self.record_prompts = record_prompts
        self.clock = clock
        self.log_id = ""
        self.seq = 0
        self.last_hash = ""
        self.checkpoint_seq = 0
        self.last_checkpoint: Checkpoint | None = None
        self.active_path: Path | None = None
        self._fd: int | None = None
        self._day = ""
        self._size = 0
        self._lock_fd: int | None = None
        self._broken = False
        self._due = time.monotonic() + checkpoint_seconds

    @property
    def checkpoint_due(self) -> float:
        """When (``time.monotonic``) the time-based checkpoint is due."""
        return self._due

    def today(self) -> str:
        return time.strftime("%Y%m%d", time.gmtime(self.clock()))

    # -- opening ------------------------------------------------------------

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock()
        try:
            unsigned = self._open_chain()
            if unsigned is not None:
                first, last = unsigned
                log.warning("audit entries %d..%d were never signed before a restart", first, last)
                fields = {"first_seq": first, "last_seq": last, "reason": "restart"}
                self.append([(self.clock(), system_entry("audit.resume", fields))])
        except BaseException:
            self.close()
            raise

    def _lock(self) -> None:
        fd = os.open(lock_path(self.directory, self.replica), os.O_RDWR | os.O_CREAT, 0o600)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                raise AuditError(
                    f"audit log {self.directory} (replica {self.replica}) is in use by another"
                    " writer; give each gateway process its own replica id"
                ) from exc
        self._lock_fd = fd

    def _open_chain(self) -> tuple[int, int] | None:
        """Resume the newest file or start a chain; the unsigned range found, if any."""
        files = chain_files(self.directory, self.replica)
        while files and self._drop_if_empty(files[-1]):
            files.pop()
        if not files:
            head = head_path(self.directory, self.replica)
            if head.exists():
                # The head is all that is left of a chain whose files are gone.
                raise AuditError(
                    f"{head} records a checkpoint but no audit files remain: the log was"
                    " deleted. Move the head file away to start a new chain"
                )
            self.log_id = secrets.token_hex(16)
            self.last_hash = genesis(self.log_id)
            self._new_file(self.today())
            return None
        self._resume(files[-1])
        if self.seq > self.checkpoint_seq:
            return self.checkpoint_seq + 1, self.seq
        return None

    def _drop_if_empty(self, file: AuditFile) -> bool:
        # A crash between creating a file and writing its header leaves it empty.
        if file.archived or file.path.stat().st_size:
            return False
        log.warning("removing empty audit file %s", file.path)
        file.path.unlink()
        return True

    def _resume(self, file: AuditFile) -> None:
        lines, torn = read_lines(file.path)
        if torn and not file.archived:
            log.warning("cutting %d torn bytes off the end of %s", len(torn), file.path)
            with open(file.path, "r+b") as stream:
                stream.truncate(file.path.stat().st_size - len(torn))
                os.fsync(stream.fileno())
        self._replay(file, lines)
        if file.archived:
            self._new_file(max(self.today(), file.day))
            return
        self._fd = os.open(file.path, os.O_WRONLY | os.O_APPEND)
        self.active_path = file.path
        self._day = file.day
        self._size = file.path.stat().st_size

    def _replay(self, file: AuditFile, lines: list[bytes]) -> None:
        """Re-check the newest file's links; set the chain state from its end."""

        def damaged(why: str) -> AuditError:
            return AuditError(
                f"{file.path}: {why}; the audit log is damaged or was altered. Run `sluicegate"
                f" audit verify {self.directory}`; to start a new chain, move its files away"
            )

        try:
            records = [orjson.loads(line) for line in lines]
        except orjson.JSONDecodeError as exc:
            raise damaged("unreadable line") from exc
        if not records or not isinstance(records[0], dict) or records[0].get("audit") != FORMAT:
            raise damaged("no header")
        header = records[0]
        prev_seq, prev_hash = header.get("prev_seq"), header.get("prev_hash")
        if type(prev_seq) is not int or type(prev_hash) is not str or "log" not in header:
            raise damaged("bad header")
        self.log_id = str(header["log"])
        self.seq = self.checkpoint_seq = prev_seq
        self.last_hash = prev_hash
        for record in records[1:]:
            if not isinstance(record, dict):
                raise damaged(f"not an object after seq {self.seq}")
            if "seq" in record:
                prev, digest = record.pop("prev", None), record.pop("hash", None)
                if record["seq"] != self.seq + 1 or prev != self.last_hash:
                    raise damaged(f"broken link at seq {self.seq + 1}")
                if entry_hash(self.last_hash, canonical(record)) != digest:
                    raise damaged(f"hash mismatch at seq {self.seq + 1}")
                self.seq, self.last_hash = self.seq + 1, digest
            elif "checkpoint" in record:
                if record["checkpoint"] != self.seq or record.get("hash") != self.last_hash:
                    raise damaged(f"checkpoint out of place after seq {self.seq}")
                self.checkpoint_seq = self.seq
            else:
                raise damaged(f"unknown line after seq {self.seq}")

    def _new_file(self, day: str) -> None:
        taken = [f.number for f in chain_files(self.directory, self.replica) if f.day == day]
        path = self.directory / file_name(self.replica, day, max(taken, default=0) + 1)
        header = {
            "audit": FORMAT,
            "log": self.log_id,
            "replica": self.replica,
            "prev_seq": self.seq,
            "prev_hash": self.last_hash,
            "created": format_ts(self.clock()),
        }
        line = canonical(sign(header, self.signer)) + b"\n"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            _write_all(fd, line)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        fsync_dir(self.directory)
        self._fd, self.active_path, self._day, self._size = fd, path, day, len(line)

    # -- writing ------------------------------------------------------------

    def append(self, items: Sequence[Item]) -> list[Checkpoint]:
        """Chain and write ``items`` (submit time, fields); the checkpoints written.

        On an error nothing of the batch counts: the file is cut back and the chain
        state is unchanged, so the caller can retry the same batch.
        """
        self._ensure_writable()
        if self._size >= self.rotation.max_bytes or self.today() > self._day:
            self._rotate()
        seq, digest, cp_seq = self.seq, self.last_hash, self.checkpoint_seq
        parts: list[bytes] = []
        checkpoints: list[Checkpoint] = []
        for epoch, fields in items:
            seq += 1
            entry = make_entry(seq, epoch, fields, keep_prompt=self.record_prompts)
            digest, line = seal(digest, payload(entry))
            parts.append(line)
            if seq - cp_seq >= self.checkpoint_every:
                checkpoints.append(self._checkpoint(seq, digest))
                parts.append(checkpoints[-1].line())
                cp_seq = seq
        if seq > cp_seq and time.monotonic() >= self._due:
            checkpoints.append(self._checkpoint(seq, digest))
            parts.append(checkpoints[-1].line())
            cp_seq = seq
        self._write(b"".join(parts))
        self.seq, self.last_hash, self.checkpoint_seq = seq, digest, cp_seq
        if checkpoints:
            self._synced(checkpoints[-1])
        return checkpoints

    def checkpoint(self) -> Checkpoint | None:
        """Sign the chain's end now (if anything is unsigned), fsync, update the head."""
        self._ensure_writable()
        if self.seq <= self.checkpoint_seq:
            self._due = time.monotonic() + self.checkpoint_seconds
            return None
        checkpoint = self._checkpoint(self.seq, self.last_hash)
        self._write(checkpoint.line())
        self.checkpoint_seq = self.seq
        self._synced(checkpoint)
        return checkpoint

    def tick(self) -> Checkpoint | None:
        """The time-based checkpoint, when it is due."""
        if time.monotonic() < self._due:
            return None
        return self.checkpoint()

    def close(self) -> Checkpoint | None:
        """Sign the end, fsync, close the file and give up the lock."""
        checkpoint = None
        try:
            if self._fd is not None and not self._broken:
                checkpoint = self.checkpoint()
        finally:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # closing releases the flock
                self._lock_fd = None
        return checkpoint

    def _checkpoint(self, seq: int, digest: str) -> Checkpoint:
        return Checkpoint.make(seq, digest, self.log_id, format_ts(self.clock()), self.signer)

    def _rotate(self) -> None:
        self.checkpoint()  # every closed file ends signed
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        # Never an earlier day than the file before: a clock stepped back must
        # not put a file ahead of its predecessor in the sort order.
        self._new_file(max(self.today(), self._day))

    def _ensure_writable(self) -> None:
        if self._broken:
            # After a failed write, take the state from the disk again.
            self._broken = False
            files = chain_files(self.directory, self.replica)
            self._resume(files[-1])
        if self._fd is None:
            raise AuditError("audit store is not open")

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        try:
            _write_all(self._fd, data)
        except BaseException:
            # Cut back what part of the batch got out, so a retry does not duplicate it.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
            self._broken = True
            raise
        self._size += len(data)

    def _synced(self, checkpoint: Checkpoint) -> None:
        self.last_checkpoint = checkpoint
        self._due = time.monotonic() + self.checkpoint_seconds
        assert self._fd is not None
        try:
            os.fsync(self._fd)
            self._write_head(checkpoint)
        except OSError as exc:
            # The batch is written; a failed fsync or head must not make the caller retry it.
            log.error("audit checkpoint %d not made durable: %s", checkpoint.seq, exc)

    def _write_head(self, checkpoint: Checkpoint) -> None:
        head = head_path(self.directory, self.replica)
        tmp = head.with_name(head.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, checkpoint.line())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, head)
        fsync_dir(self.directory)


def system_entry(action: str, detail: dict[str, Any]) -> dict[str, Any]:
    """The fields of an admin entry the log writes about itself."""
    return {"kind": "admin", "action": action, "detail": detail}
