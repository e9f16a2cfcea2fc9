"""The measuring phases: wrk runs, concurrent streams, and a py-spy profile.

Each phase measures one server (the mock directly, or the gateway): its CPU time
and RSS from /proc, and the CPU the rest of the machine used meanwhile.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import uvloop

from bench import pyspy
from bench.processes import OtherLoad, RssSampler, cpu_seconds
from bench.streams import run_streams
from bench.wrk import run_wrk

__all__ = ["ROOT", "ints", "nonstreaming", "profile", "streaming"]

ROOT = Path(__file__).resolve().parents[1]


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def nonstreaming(
    name: str,
    base: str,
    pids: list[int],
    script: Path,
    args: argparse.Namespace,
    cpus: str | None,
) -> list[dict[str, Any]]:
    """wrk at each concurrency; CPU and RSS are those of ``pids[0]``, the server measured."""
    pid = pids[0]
    rows = []
    if args.warmup > 0:
        run_wrk(base, script, 16, args.warmup, cpus)
    for conns in ints(args.concurrency):
        time.sleep(args.settle)
        before = cpu_seconds(pid)
        with RssSampler(pid) as rss, OtherLoad(pids) as other:
            result = run_wrk(base, script, conns, args.duration, cpus)
        used = cpu_seconds(pid) - before
        row = result.as_dict()
        row["cpu_s"] = round(used, 3)
        row["cpu_us_per_request"] = round(used * 1e6 / max(1, result.requests), 1)
        row["rss_max_kib"] = rss.max_kib
        row["other_load_pct"] = round(other.share * 100, 1)
        rows.append(row)
        lat = result.latency_us
        print(
            f"  {name:8} c={conns:<4} {result.rps:>9.0f} rps  p50 {lat['p50']:>7.0f} µs  "
            f"p99 {lat['p99']:>7.0f} µs  cpu {row['cpu_us_per_request']:>6.1f} µs/req  "
            f"errors {result.errors}  other load {row['other_load_pct']}%",
            flush=True,
        )
    return rows


def streaming(
    name: str, base: str, key: str, pids: list[int], mock: str, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Each stream count in turn; CPU and RSS are those of ``pids[0]``, the server measured."""
    pid = pids[0]
    rows = []
    for count in ints(args.streams):
        time.sleep(args.settle)
        _get_json(mock + "/_stats?reset=1")
        before = cpu_seconds(pid)
        with RssSampler(pid) as rss, OtherLoad(pids) as other:
            stats = uvloop.run(run_streams(base, key, count, args.stall_ms / 1000))
        used = cpu_seconds(pid) - before
        row = stats.as_dict()
        row["upstream_peak_open"] = _get_json(mock + "/_stats")["streams_peak"]
        row["cpu_s"] = round(used, 3)
        row["cpu_us_per_stream"] = round(used * 1e6 / count, 1)
        events = count * stats.events_per_stream.get("p50", 0)
        row["cpu_us_per_event"] = round(used * 1e6 / max(1, events), 1)
        row["rss_max_kib"] = rss.max_kib
        row["other_load_pct"] = round(other.share * 100, 1)
        rows.append(row)
        print(
            f"  {name:8} streams={count:<5} ttfb p50 {stats.ttfb_ms.get('p50')} ms "
            f"p99 {stats.ttfb_ms.get('p99')} ms  max gap {stats.max_gap_ms.get('max')} ms  "
            f"stalled {stats.stalled}  errors {stats.errors}  [DONE] {stats.ended_with_done}  "
            f"peak open {stats.peak_open}/{row['upstream_peak_open']} (client/upstream)",
            flush=True,
        )
    return rows


def profile(
    pid: int,
    base: str,
    script: Path,
    args: argparse.Namespace,
    cpus: str | None,
    phase: dict[str, Any],
) -> dict[str, Any]:
    """Sample the gateway with py-spy during one more wrk run; native frames when py-spy can."""
    tool = pyspy.find_pyspy()
    if tool is None:
        print("  py-spy not found; `.venv/bin/pip install py-spy` to profile", flush=True)
        return {"error": "py-spy not installed"}
    raw = args.out / f"profile-log-{phase['access_log']}-{time.strftime('%Y%m%dT%H%M%S')}.txt"
    error = ""
    for native in (False,) if args.profile_python_only else (True, False):
        sampler = subprocess.Popen(
            pyspy.record_argv(tool, pid, args.profile, raw, 250, native),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(max(0.5, args.settle))
        run_wrk(base, script, args.profile_concurrency, args.profile, cpus)
        _, err = sampler.communicate(timeout=args.profile + 60)
        if sampler.returncode == 0:
            break
        error = err.decode(errors="replace")[-500:]
        print(f"  py-spy failed (native={native}): {error.strip()[-200:]}", flush=True)
    else:
        return {"error": error}
    unprofiled = next(
        (r for r in phase["nonstreaming"] if r["connections"] == args.profile_concurrency), None
    )
    cpu = unprofiled["cpu_us_per_request"] if unprofiled else None
    summary = pyspy.summarise(raw, cpu)
    summary["concurrency"] = args.profile_concurrency
    summary["native"] = native
    summary["raw"] = str(raw.relative_to(ROOT)) if raw.is_relative_to(ROOT) else str(raw)
    print(f"  profiled {summary['samples']} samples into {summary['raw']}", flush=True)
    return summary
