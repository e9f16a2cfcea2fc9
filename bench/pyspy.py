"""Where the gateway's CPU goes: sample it with py-spy under load and sum the stacks.

py-spy (``pip install py-spy``; not a project dependency) writes collapsed stacks,
one ``frame;frame;...;leaf count`` line per distinct stack. Own time is charged to
the leaf frame; with ``--native`` the leaf may be a C function (orjson, httptools,
uvloop, the kernel boundary), which is then charged to the library it lives in.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["find_pyspy", "record_argv", "summarise"]

# (pattern on the frame text, category); the first that matches names the layer.
_LAYERS: list[tuple[str, str]] = [
    (r"orjson", "orjson (C)"),
    (r"httptools", "httptools parser (C)"),
    (r"/uvicorn/", "uvicorn (HTTP server, ASGI glue)"),
    (r"/starlette/", "starlette (routing, Request, Response)"),
    (r"/aiohttp/|_http_parser|_websocket|/multidict/|/yarl/|/propcache/", "aiohttp client"),
    (r"/sluicegate/observability/logs\.py|/logging/", "logging (access-log line)"),
    (r"/sluicegate/", "sluicegate (routes, pipeline, provider)"),
    (r"uvloop|libuv|\buv_", "uvloop / libuv (event loop, sockets)"),
    (r"/asyncio/", "asyncio (tasks, futures, timeouts)"),
    (r"libc\.so|libpthread|\bsyscall\b|__libc|epoll|\bsend\b|\brecv\b", "libc / syscalls"),
    (r"libpython|python3\.\d+|Python/|Objects/|\bPy[A-Z_]\w*|\b_Py\w*", "CPython interpreter"),
]
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<where>.*)\)$")


def find_pyspy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record_argv(pyspy: str, pid: int, seconds: float, out: Path, rate: int, native: bool) -> list[str]:
    """py-spy sampling ``pid`` for ``seconds`` into collapsed stacks at ``out``."""
    argv = [pyspy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
    argv += ["--rate", str(rate), "--format", "raw", "--output", str(out)]
    if native:
        argv.append("--native")
    return argv


def _layer(frame: str) -> str:
    for pattern, name in _LAYERS:
        if re.search(pattern, frame):
            return name
    match = _FRAME.match(frame)
    return "other: " + (match.group("where").split(":")[0] if match else frame)[-60:]


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    where = match.group("where")
    for marker in ("site-packages/", "/src/", "/lib/python3."):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{match.group('func')} ({where.rsplit(':', 1)[0]})"


def summarise(raw: Path, cpu_us_per_request: float | None, top: int = 25) -> dict[str, Any]:
    """Own time by layer and by function; inclusive time of the biggest functions."""
    own_layer: Counter[str] = Counter()
    own_func: Counter[str] = Counter()
    incl_func: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        # Thread and process labels py-spy puts at the root are not code.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        own_layer[_layer(leaf)] += count
        own_func[_short(leaf)] += count
        for name in {_short(f) for f in frames}:
            incl_func[name] += count

    def rows(counter: Counter[str], limit: int) -> list[dict[str, Any]]:
        out = []
        for name, count in counter.most_common(limit):
            share = count / total if total else 0.0
            row: dict[str, Any] = {"name": name, "samples": count, "share": round(share, 4)}
            if cpu_us_per_request is not None:
                row["us_per_request"] = round(share * cpu_us_per_request, 1)
            out.append(row)
        return out

    return {
        "samples": total,
        "cpu_us_per_request": cpu_us_per_request,
        "own_by_layer": rows(own_layer, 40),
        "own_by_function": rows(own_func, top),
        "inclusive_by_function": rows(incl_func, top * 2),
    }
