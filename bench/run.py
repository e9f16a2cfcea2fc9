"""The gateway's overhead and throughput, measured against a fast mock upstream.

``make bench`` (or ``.venv/bin/python -m bench.run --help``). It starts the mock
(bench/mock_upstream.py) and a one-worker ``sluicegate serve`` whose only model
points at it, then measures, each against the mock directly and through the gateway:

- non-streaming chat with wrk at several concurrencies: RPS, latency percentiles,
  and the gateway's CPU time per request (utime+stime from /proc, children included);
- N concurrent SSE streams: time to first byte, gaps between reads, errors, [DONE];
- the gateway's RSS idle (before any API request) and under load.

It writes bench/RESULTS.md and raw JSON under bench/out/. On a 2-core machine the
gateway is pinned to CPU 0 and everything else (mock, wrk, stream client) to CPU 1.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import uvloop

from bench import pyspy
from bench.machine import describe
from bench.processes import (
    Managed,
    OtherLoad,
    RssSampler,
    cpu_seconds,
    free_port,
    memory_kib,
    pinned,
    wait_http,
)
from bench.report import write_results
from bench.streams import run_streams
from bench.wrk import require_wrk, run_wrk, write_script

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--duration", type=float, default=10.0, help="seconds per wrk run (default 10)")
    add("--warmup", type=float, default=2.0, help="seconds of wrk load before measuring")
    add("--concurrency", default="1,16,64,256", help="wrk connections, comma-separated")
    add("--streams", default="64,1000", help="concurrent streams, comma-separated")
    add("--chunks", type=int, default=30, help="content chunks per mock stream")
    add("--interval-ms", type=float, default=100.0, help="gap between mock stream chunks")
    add("--stall-ms", type=float, default=1000.0, help="a gap between reads above this stalls")
    add("--access-log", choices=("both", "on", "off"), default="both")
    add("--no-pin", action="store_true", help="do not pin processes to CPUs with taskset")
    add(
        "--profile",
        type=float,
        default=-1.0,
        help="seconds of py-spy sampling after the measurements (0: none; default: 8 when "
        "py-spy is installed)",
    )
    add("--profile-concurrency", type=int, default=16)
    add("--profile-python-only", action="store_true", help="py-spy without --native")
    add("--out", type=Path, default=ROOT / "bench" / "out")
    add("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    add(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to this long for other load on the machine to drop under 10%%",
    )
    add("--render", type=Path, metavar="JSON", help="only rewrite --results from a saved run")
    return parser.parse_args(argv)


def _ints(text: str) -> list[int]:
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
    for conns in _ints(args.concurrency):
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
    for count in _ints(args.streams):
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


def _gateway_config(path: Path, port: int, mock_port: int, access_log: bool, data: Path) -> None:
    path.write_text(
        f"""# Generated by bench/run.py: one model whose only deployment is the mock upstream.
server:
  host: 127.0.0.1
  port: {port}
  access_log: {"true" if access_log else "false"}
  data_dir: {data}
models:
  - name: bench-model
    kind: chat
    deployments:
      - provider: openai
        base_url: http://127.0.0.1:{mock_port}/v1
        max_concurrency: 4096
        self_hosted: true
""",
        encoding="utf-8",
    )


def gateway_phase(
    log_mode: str, key: str, mock: Managed, mock_port: int, script: Path, args: argparse.Namespace
) -> dict[str, Any]:
    pin = None if args.no_pin else "0"
    load_cpus = None if args.no_pin else "1"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = args.out / f"gateway-log-{log_mode}.yaml"
    _gateway_config(config, port, mock_port, log_mode == "on", args.out / "data")
    argv = pinned(pin, [str(BIN / "sluicegate"), "serve", "--config", str(config)])
    env = {**os.environ, "SLUICEGATE_MASTER_KEY": key}
    phase: dict[str, Any] = {"access_log": log_mode, "command": argv}
    with Managed(
        f"gateway (log {log_mode})", argv, args.out / f"gateway-log-{log_mode}.log", env
    ) as gw:
        phase["start_s"] = round(wait_http(base + "/health", gw), 3)
        time.sleep(1.0)
        phase["rss_idle_kib"] = memory_kib(gw.pid)["VmRSS"]
        wait_http(base + "/ready", gw)
        phase["rss_ready_kib"] = memory_kib(gw.pid)["VmRSS"]
        pids = [gw.pid, mock.pid]
        phase["nonstreaming"] = nonstreaming(f"gw/{log_mode}", base, pids, script, args, load_cpus)
        if log_mode == "on" or args.access_log == "off":
            mock_base = f"http://127.0.0.1:{mock_port}"
            phase["streaming"] = streaming(f"gw/{log_mode}", base, key, pids, mock_base, args)
        phase["rss_after_load_kib"] = memory_kib(gw.pid)
        if args.profile > 0 and (log_mode == "on" or args.access_log == "off"):
            phase["profile"] = profile(gw.pid, base, script, args, load_cpus, phase)
        gw.check_alive()
    return phase


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
    raw = args.out / f"profile-log-{phase['access_log']}.txt"
    error = ""
    for native in (False,) if args.profile_python_only else (True, False):
        sampler = subprocess.Popen(
            pyspy.record_argv(tool, pid, args.profile, raw, 250, native),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.5)
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


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if args.render is not None:
        write_results(json.loads(args.render.read_text(encoding="utf-8")), args.results)
        print(f"wrote {args.results} from {args.render}")
        return 0
    require_wrk()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.wait_quiet > 0:
        wait_quiet(args.wait_quiet)
    started = time.monotonic()
    if not args.no_pin:
        if (os.cpu_count() or 1) < 2:
            print("one CPU only: not pinning", flush=True)
            args.no_pin = True
        else:
            # This process runs the stream client; it shares CPU 1 with the mock and wrk.
            os.sched_setaffinity(0, {1})
    load_cpus = None if args.no_pin else "1"
    if args.profile < 0:
        args.profile = 8.0 if pyspy.find_pyspy() else 0.0
    key = "sk-bench-" + secrets.token_hex(16)
    script = write_script(args.out / "chat.lua", key)
    results: dict[str, Any] = {"machine": describe(), "args": _jsonable(vars(args))}
    results["command"] = "make bench" if argv is None and os.environ.get("MAKELEVEL") else None
    results["argv"] = [Path(sys.executable).name, "-m", "bench.run", *(sys.argv[1:])]

    mock_port = free_port()
    mock_argv = pinned(
        load_cpus,
        [
            sys.executable,
            str(ROOT / "bench" / "mock_upstream.py"),
            *("--port", str(mock_port), "--chunks", str(args.chunks)),
            *("--interval-ms", str(args.interval_ms)),
        ],
    )
    with Managed("mock upstream", mock_argv, args.out / "mock.log") as mock:
        mock_base = f"http://127.0.0.1:{mock_port}"
        wait_http(mock_base + "/v1/models", mock)
        print(f"mock upstream on {mock_base}; gateway phases follow the direct ones", flush=True)
        results["direct"] = {
            "nonstreaming": nonstreaming("direct", mock_base, [mock.pid], script, args, load_cpus),
            "streaming": streaming("direct", mock_base, key, [mock.pid], mock_base, args),
        }
        modes = ["on", "off"] if args.access_log == "both" else [args.access_log]
        results["gateway"] = {
            mode: gateway_phase(mode, key, mock, mock_port, script, args) for mode in modes
        }
    results["wall_s"] = round(time.monotonic() - started, 1)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    raw = args.out / f"results-{stamp}.json"
    raw.write_text(json.dumps(results, indent=2), encoding="utf-8")
    (args.out / "results-latest.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    write_results(results, args.results)
    print(f"wrote {args.results} and {raw} in {results['wall_s']} s", flush=True)
    return 0


def wait_quiet(limit: float) -> None:
    give_up = time.monotonic() + limit
    while True:
        with OtherLoad([]) as other:
            time.sleep(3)
        if other.share < 0.10 or time.monotonic() > give_up:
            print(f"other load {other.share:.0%}; starting", flush=True)
            return
        print(f"other load {other.share:.0%}; waiting for a quieter machine", flush=True)


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}


if __name__ == "__main__":
    sys.exit(main())
