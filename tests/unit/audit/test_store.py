"""ChainStore: numbering, checkpoints, the head file, resuming, locking."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from sluicegate.audit.chain import HmacSigner
from sluicegate.audit.files import chain_files, head_path, read_lines
from sluicegate.audit.store import AuditError, ChainStore, Rotation
from sluicegate.audit.verify import verify

KEY = b"k" * 32


def store(tmp_path, **options) -> ChainStore:
    options.setdefault("checkpoint_seconds", 3600.0)
    chain = ChainStore(tmp_path, HmacSigner(KEY), **options)
    chain.open()
    return chain


def items(n: int, **fields: object) -> list[tuple[float, dict[str, object]]]:
    return [(1_700_000_000.0, {"request_id": f"r{i}", **fields}) for i in range(n)]


def records(tmp_path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for file in chain_files(tmp_path, None):
        lines, _ = read_lines(file.path)
        out.extend(orjson.loads(line) for line in lines)
    return out


def crash(chain: ChainStore) -> None:
    """Let go of the files the way a killed process does: no final checkpoint."""
    assert chain._fd is not None and chain._lock_fd is not None
    os.close(chain._fd)
    os.close(chain._lock_fd)
    chain._fd = chain._lock_fd = None


def test_entries_are_numbered_from_one_without_gaps(tmp_path):
    chain = store(tmp_path)
    chain.append(items(3))
    chain.append(items(2))
    chain.close()
    seqs = [r["seq"] for r in records(tmp_path) if "seq" in r]
    assert seqs == [1, 2, 3, 4, 5]


def test_checkpoints_every_n_entries_and_the_head_holds_the_latest(tmp_path):
    chain = store(tmp_path, checkpoint_every=4)
    written = chain.append(items(10))
    assert [c.seq for c in written] == [4, 8]
    head = orjson.loads(head_path(tmp_path, None).read_bytes())
    assert head["checkpoint"] == 8 and head["hash"] == written[-1].hash
    assert chain.close() is not None  # signs 9..10
    assert orjson.loads(head_path(tmp_path, None).read_bytes())["checkpoint"] == 10


def test_a_second_writer_on_the_same_chain_is_refused(tmp_path):
    first = store(tmp_path)
    with pytest.raises(AuditError, match="in use"):
        store(tmp_path)
    other = store(tmp_path, replica="pod-b")  # another replica writes its own chain
    other.close()
    first.close()


def test_reopening_continues_the_chain(tmp_path):
    chain = store(tmp_path)
    chain.append(items(3))
    chain.close()
    chain = store(tmp_path)
    assert chain.seq == 3
    chain.append(items(1))
    chain.close()
    assert verify(tmp_path, KEY).ok and verify(tmp_path, KEY).last_seq == 4


def test_a_torn_last_line_is_cut_on_reopen(tmp_path):
    chain = store(tmp_path)
    chain.append(items(2))
    chain.close()
    path = chain_files(tmp_path, None)[-1].path
    with open(path, "ab") as stream:
        stream.write(b'{"seq":3,"ts":"half a li')
    report = verify(tmp_path, KEY)
    assert report.ok and any("torn" in w for w in report.warnings)
    chain = store(tmp_path)
    chain.append(items(1))
    chain.close()
    report = verify(tmp_path, KEY)
    assert report.ok and report.last_seq == 3 and not report.warnings


def test_unsigned_entries_found_on_reopen_are_recorded(tmp_path):
    chain = store(tmp_path, checkpoint_every=100)
    chain.append(items(3))
    crash(chain)
    chain = store(tmp_path)
    chain.close()
    resume = [r for r in records(tmp_path) if r.get("action") == "audit.resume"]
    assert resume and resume[0]["detail"] == {"first_seq": 1, "last_seq": 3, "reason": "restart"}
    assert verify(tmp_path, KEY).ok


def test_a_damaged_newest_file_is_not_appended_to(tmp_path):
    chain = store(tmp_path)
    chain.append(items(3, org="acme"))
    chain.close()
    path = chain_files(tmp_path, None)[-1].path
    path.write_bytes(path.read_bytes().replace(b'"acme"', b'"evil"', 1))
    with pytest.raises(AuditError, match="hash mismatch at seq 1"):
        store(tmp_path)


def test_files_rotate_by_size_and_each_closed_file_ends_signed(tmp_path):
    chain = store(tmp_path, rotation=Rotation(max_bytes=2000))
    for _ in range(6):
        chain.append(items(5))
    chain.close()
    files = chain_files(tmp_path, None)
    assert len(files) > 2
    for file in files:
        lines, _ = read_lines(file.path)
        assert "checkpoint" in orjson.loads(lines[-1])
    assert verify(tmp_path, KEY).ok


def test_a_new_day_starts_a_new_file(tmp_path):
    now = [1_700_000_000.0]
    chain = store(tmp_path, clock=lambda: now[0])
    chain.append(items(2))
    now[0] += 86_400
    chain.append(items(2))
    chain.close()
    assert [f.day for f in chain_files(tmp_path, None)] == ["20231114", "20231115"]
    assert verify(tmp_path, KEY).ok


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Writes past ``limit`` bytes fail with EFBIG, as on a full disk."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_a_failed_write_leaves_nothing_behind_and_the_batch_can_be_retried(tmp_path):
    chain = store(tmp_path)
    chain.append(items(3))
    path = chain_files(tmp_path, None)[-1].path
    size = path.stat().st_size
    batch = items(5)
    with file_size_limit(size + 300), pytest.raises(OSError):
        chain.append(batch)  # 300 bytes of it get out before the error
    assert path.stat().st_size == size and chain.seq == 3
    chain.append(batch)
    chain.close()
    seqs = [r["seq"] for r in records(tmp_path) if "seq" in r]
    assert seqs == list(range(1, 9))
    assert verify(tmp_path, KEY).ok


def test_a_head_without_files_is_not_silently_replaced_by_a_new_chain(tmp_path):
    chain = store(tmp_path)
    chain.append(items(3))
    chain.close()
    for file in chain_files(tmp_path, None):
        file.path.unlink()
    with pytest.raises(AuditError, match="no audit files remain"):
        store(tmp_path)
