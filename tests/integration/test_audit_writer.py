"""AuditLog: the queue, the writer thread, drops, refuse mode, close, and submit's cost."""

from __future__ import annotations

import asyncio
import resource
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from sluicegate.audit import AuditError, AuditLog, verify, verify_all
from sluicegate.audit.files import chain_files, head_path, read_lines

KEY = b"k" * 32


def request(i: int) -> dict[str, object]:
    return {
        "request_id": f"req_{i}",
        "org": "acme",
        "key_id": "k_1",
        "route": "chat",
        "model": "gpt-oss",
        "served_model": "gpt-oss-20b",
        "deployment": "vllm-a",
        "data_level": "confidential",
        "decisions": {"pii": "redacted:EMAIL_ADDRESS=2", "route": "self-hosted-only"},
        "prompt_tokens": 512,
        "completion_tokens": 80,
        "status": 200,
        "prompt": "mail <EMAIL_1>",
    }


def records(directory: Path, replica: str | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for file in chain_files(directory, replica):
        out.extend(orjson.loads(line) for line in read_lines(file.path)[0])
    return out


def test_batches_are_chained_checkpointed_and_verify(tmp_path):
    async def scenario() -> AuditLog:
        audit = AuditLog(tmp_path, signing_key=KEY, batch_size=400, checkpoint_every=1000)
        await audit.start()
        for i in range(2500):
            assert audit.submit(request(i))
        assert await audit.flush()
        assert audit.written == 2500 and audit.pending == 0
        assert audit.last_checkpoint is not None and audit.last_checkpoint.seq == 2000
        await audit.close()
        return audit

    audit = asyncio.run(scenario())
    assert audit.submitted == 2500 and audit.dropped == 0
    found = records(tmp_path)
    entries = [r for r in found if "seq" in r]
    assert [r["seq"] for r in entries] == list(range(1, 2501))
    assert entries[0]["request_id"] == "req_0" and "prompt" not in entries[0]
    assert [r["checkpoint"] for r in found if "checkpoint" in r] == [1000, 2000, 2500]
    report = verify(tmp_path, KEY)
    assert report.ok and report.last_seq == 2500 and report.signed_through == 2500


def test_a_full_queue_drops_and_counts(tmp_path):
    async def scenario() -> AuditLog:
        audit = AuditLog(tmp_path, signing_key=KEY, capacity=5)
        results = [audit.submit(request(i)) for i in range(8)]  # the writer is not running
        assert results == [True] * 5 + [False] * 3
        await audit.start()
        await audit.close()
        assert not audit.submit(request(9))  # closed
        return audit

    audit = asyncio.run(scenario())
    assert (audit.submitted, audit.written, audit.dropped) == (9, 5, 4)
    assert verify(tmp_path, KEY).last_seq == 5


def test_refuse_mode_stops_accepting_before_the_queue_is_full(tmp_path):
    async def scenario() -> None:
        audit = AuditLog(tmp_path, signing_key=KEY, capacity=10, reserve=3, on_full="refuse")
        drop = AuditLog(tmp_path, signing_key=KEY, replica="b", capacity=10)
        for i in range(7):
            assert audit.accepting
            audit.submit(request(i))
            drop.submit(request(i))
        assert not audit.accepting  # 7 queued: the last 3 slots are for calls in flight
        assert drop.accepting  # drop mode never asks the gateway to refuse
        assert all(audit.submit(request(i)) for i in range(3))
        assert not audit.submit(request(99)) and audit.dropped == 1
        await audit.start()
        assert await audit.flush()
        assert audit.accepting
        await audit.close()
        assert not audit.accepting

    asyncio.run(scenario())
    assert verify(tmp_path, KEY, replica=None).last_seq == 10


def test_close_writes_the_final_checkpoint_and_the_head(tmp_path):
    async def scenario() -> AuditLog:
        audit = AuditLog(tmp_path, signing_key=KEY, checkpoint_every=1000)
        await audit.start()
        for i in range(7):
            audit.submit(request(i))
        await audit.close()
        return audit

    audit = asyncio.run(scenario())
    assert audit.last_checkpoint is not None and audit.last_checkpoint.seq == 7
    last_line = read_lines(chain_files(tmp_path, None)[-1].path)[0][-1]
    assert orjson.loads(last_line)["checkpoint"] == 7
    head = orjson.loads(head_path(tmp_path, None).read_bytes())
    assert head["checkpoint"] == 7 and head["hash"] == audit.last_checkpoint.hash
    report = verify(tmp_path, KEY)
    assert report.ok and not report.warnings


def test_an_idle_log_checkpoints_on_time(tmp_path):
    async def scenario() -> None:
        audit = AuditLog(tmp_path, signing_key=KEY, flush_interval=0.02, checkpoint_seconds=0.1)
        await audit.start()
        audit.submit(request(1))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if audit.last_checkpoint is not None:
                break
        assert audit.last_checkpoint is not None and audit.last_checkpoint.seq == 1
        await audit.close()

    asyncio.run(scenario())


def test_prompts_are_kept_only_when_configured(tmp_path):
    async def scenario() -> None:
        audit = AuditLog(tmp_path, signing_key=KEY, record_prompts=True)
        await audit.start()
        audit.submit(request(1))
        audit.submit({"kind": "admin", "action": "keys.create", "key_id": "k_admin"})
        await audit.close()

    asyncio.run(scenario())
    first, second = (r for r in records(tmp_path) if "seq" in r)
    assert first["prompt"] == "mail <EMAIL_1>"
    assert second["kind"] == "admin" and second["action"] == "keys.create"
    assert second["target"] is None


def test_a_restarted_log_continues_its_chain(tmp_path):
    async def run(n: int) -> None:
        audit = AuditLog(tmp_path, signing_key=KEY)
        await audit.start()
        for i in range(n):
            audit.submit(request(i))
        await audit.close()

    asyncio.run(run(3))
    asyncio.run(run(4))
    report = verify(tmp_path, KEY)
    assert report.ok and report.last_seq == 7


def test_one_writer_per_chain_one_chain_per_replica(tmp_path):
    async def scenario() -> None:
        first = AuditLog(tmp_path, signing_key=KEY, replica="host-1")
        await first.start()
        second = AuditLog(tmp_path, signing_key=KEY, replica="host-1")
        with pytest.raises(AuditError, match="in use"):
            await second.start()
        await second.close()
        other = AuditLog(tmp_path, signing_key=KEY, replica="host-2")
        await other.start()
        for i in range(3):
            first.submit(request(i))
            other.submit(request(i))
        await first.close()
        await other.close()

    asyncio.run(scenario())
    reports = verify_all(tmp_path, KEY)
    assert [(r.replica, r.ok, r.last_seq) for r in reports] == [
        ("host-1", True, 3),
        ("host-2", True, 3),
    ]


def test_submit_is_constant_time_and_about_a_microsecond(tmp_path):
    async def scenario() -> tuple[float, float]:
        audit = AuditLog(tmp_path, signing_key=KEY, capacity=400_000)
        fields = request(0)
        n = 100_000

        def timed() -> float:
            started = time.perf_counter()
            for _ in range(n):
                audit.submit(fields)
            return (time.perf_counter() - started) / n

        empty = timed()  # the writer is not running: the queue only grows
        for _ in range(2):
            timed()
        full = timed()  # 300,000 already queued
        assert audit.pending == 4 * n
        return empty, full

    empty, full = asyncio.run(scenario())
    print(f"submit: {empty * 1e6:.2f} µs (empty queue), {full * 1e6:.2f} µs (300k queued)")
    assert empty < 5e-6 and full < 5e-6
    assert full < max(empty * 3, 2e-6)


def test_a_failing_disk_keeps_entries_queued_until_it_recovers(tmp_path):
    async def scenario() -> AuditLog:
        audit = AuditLog(tmp_path, signing_key=KEY, flush_interval=0.02)
        await audit.start()
        for i in range(3):
            audit.submit(request(i))
        assert await audit.flush()
        size = chain_files(tmp_path, None)[-1].path.stat().st_size
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, hard))  # EFBIG: a full disk
        try:
            for i in range(5):
                audit.submit(request(i))
            for _ in range(200):
                await asyncio.sleep(0.01)
                if audit.write_failures:
                    break
            assert audit.write_failures and audit.written == 3 and audit.pending == 5
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, previous)
        for _ in range(300):  # the writer retries after its backoff
            await asyncio.sleep(0.01)
            if audit.written == 8:
                break
        assert audit.written == 8 and audit.dropped == 0
        await audit.close()
        return audit

    asyncio.run(scenario())
    assert [r["seq"] for r in records(tmp_path) if "seq" in r] == list(range(1, 9))
    assert verify(tmp_path, KEY).ok
