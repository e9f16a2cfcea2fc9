"""What the numbers were measured on: CPUs, Python, library versions, commit, load."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["describe"]

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
