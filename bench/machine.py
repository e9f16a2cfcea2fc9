"""What the numbers were measured on: CPUs, Python, library versions, commit, load."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["describe", "wakeup_latency"]

_PACKAGES = ("sluicegate", "uvicorn", "uvloop", "httptools", "starlette", "aiohttp", "orjson")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout or done.stderr).strip()


def describe() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    root = Path(__file__).resolve().parents[1]
    commit = _run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    dirty = bool(_run(["git", "-C", str(root), "status", "--porcelain", "--", "src"]))
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "wrk": _run(["wrk", "-v"]).splitlines()[0] if _run(["wrk", "-v"]) else None,
        "packages": versions,
        "commit": commit + (" (src modified)" if dirty else ""),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "date_utc": _run(["date", "-u", "+%Y-%m-%d %H:%M UTC"]),
    }


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def wakeup_latency(cpu_a: int, cpu_b: int, seconds: float = 2.0) -> dict[str, float]:
    """Round trips over a pipe between two processes on ``cpu_a`` and ``cpu_b``, with 250 µs
    of work between trips so the other side goes idle: the price of waking a sleeping CPU,
    which every proxied request pays several times when the gateway and the load generator
    sit on different CPUs. Percentiles in µs."""
    ping_r, ping_w = os.pipe()
    pong_r, pong_w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child only echoes
        os.sched_setaffinity(0, {cpu_b})
        while os.read(ping_r, 1) == b"x":
            os.write(pong_w, b"x")
        os._exit(0)
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu_a})
    trips: list[float] = []
    try:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            _spin(250e-6)
            start = time.perf_counter()
            os.write(ping_w, b"x")
            os.read(pong_r, 1)
            trips.append(time.perf_counter() - start)
    finally:
        os.write(ping_w, b"q")
        os.waitpid(child, 0)
        os.sched_setaffinity(0, old)
        for fd in (ping_r, ping_w, pong_r, pong_w):
            os.close(fd)
    trips.sort()

    def at(q: float) -> float:
        return round(trips[min(len(trips) - 1, int(q * len(trips)))] * 1e6, 1)

    return {"p50": at(0.5), "p99": at(0.99), "p999": at(0.999), "max": at(1.0)}
