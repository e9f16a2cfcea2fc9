"""Where the gateway's CPU goes: sample it with py-spy under load and sum the stacks.

py-spy (``pip install py-spy``; not a project dependency) writes collapsed stacks,
one ``frame;frame;...;leaf count`` line per distinct stack. Each sample is charged
to the *layer* of its innermost Python frame, so C work (orjson, a socket write, a
syscall) counts against the Python code that asked for it; samples inside the event
loop's own C code (under ``Runner.run``) and in the garbage collector get layers of
their own. With ``--native`` the leaf may be a C function, listed separately.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.markdown import brief, table

__all__ = ["find_pyspy", "profile_sections", "record_argv", "summarise"]

# (pattern on the frame's file, category); the first that matches names the layer. py-spy
# writes Python files relative to their site-packages/src root ("aiohttp/client.py:900");
# native frames (--native) carry a shared-object or C file name instead.
_LAYERS: list[tuple[str, str]] = [
    (r"^asyncio/runners\.py", "event loop: uvloop/libuv polling, socket I/O, dispatch (C)"),
    (r"^uvicorn/", "uvicorn (HTTP server, httptools callbacks)"),
    (r"^starlette/", "starlette (middleware, routing, Request, Response)"),
    (r"^(aiohttp|multidict|yarl|propcache|aiohappyeyeballs)/", "aiohttp client (upstream call)"),
    (r"^logging/|^sluicegate/observability/logs\.py", "logging (access-log line)"),
    (r"^sluicegate/providers/", "sluicegate providers"),
    (r"^sluicegate/server/", "sluicegate server (routes, body, middleware, render)"),
    (r"^sluicegate/", "sluicegate pipeline (stages, router, protocol)"),
    (r"^(asyncio|concurrent)/", "asyncio (tasks, futures, timeouts, locks)"),
    (r"^<frozen |^<string>$|^\w+\.py$", "Python standard library"),
]
_GC = "CPython garbage collector"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<where>.*?)(?::\d+)?\)$")


def find_pyspy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record_argv(
    pyspy: str, pid: int, seconds: float, out: Path, rate: int, native: bool
) -> list[str]:
    """py-spy sampling ``pid`` for ``seconds`` into collapsed stacks at ``out``."""
    argv = [pyspy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
    argv += ["--rate", str(rate), "--format", "raw", "--output", str(out)]
    if native:
        argv.append("--native")
    return argv


def _where(frame: str) -> str:
    match = _FRAME.match(frame)
    return match.group("where") if match else frame


def _is_python(where: str) -> bool:
    # C frames name a .c/.h/.so file; the console script's root frame names no file at all.
    return where.endswith(".py") or where.startswith("<") or "." not in where


def _layer(frames: list[str]) -> str:
    if any(f.startswith(("gc_collect", "collect_with_callback")) for f in frames):
        return _GC
    for frame in reversed(frames):
        where = _where(frame)
        if not _is_python(where):
            continue
        for pattern, name in _LAYERS:
            if re.search(pattern, where):
                return name
        return "other: " + where.split("/", 1)[0][-40:]
    return "other: native only"


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    return f"{match.group('func')} ({match.group('where')})" if match else frame


def summarise(raw: Path, cpu_us_per_request: float | None, top: int = 25) -> dict[str, Any]:
    """Samples by layer, own time by function (and by C function), inclusive time."""
    own_layer: Counter[str] = Counter()
    own_func: Counter[str] = Counter()
    own_native: Counter[str] = Counter()
    incl_func: Counter[str] = Counter()
    detail: dict[str, Counter[str]] = {}
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
        layer = _layer(frames)
        own_layer[layer] += count
        own_func[_short(leaf)] += count
        # Within a layer: the innermost Python frame, and the C function it was in, if any.
        python = next((f for f in reversed(frames) if _is_python(_where(f))), leaf)
        key = _short(python)
        if leaf is not python:
            own_native[_short(leaf)] += count
            key += " → " + _FRAME.sub(r"\g<func>()", leaf)
        detail.setdefault(layer, Counter())[key] += count
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
        "own_by_native_function": rows(own_native, top),
        "layer_detail": {name: rows(counter, 8) for name, counter in detail.items()},
        "inclusive_by_function": rows(incl_func, 150),
    }


def profile_sections(results: dict[str, Any]) -> list[str]:
    """RESULTS.md sections for the gateway phases that were profiled."""
    lines: list[str] = []
    for m, p in results["gateway"].items():
        prof = p.get("profile")
        if not prof or "error" in prof:
            continue
        lines += [
            f"### Where the CPU goes (py-spy, log {m}, c={prof['concurrency']}, "
            f"{prof['samples']} samples{', native frames' if prof['native'] else ''})",
            "",
            "Each sample is charged to the layer of its innermost Python frame (so a C call "
            "such as orjson or a socket write counts against the code that made it), scaled "
            f"to the {prof['cpu_us_per_request']} µs per request measured without the "
            f"profiler at that concurrency. Raw stacks: `{prof['raw']}`.",
            "",
        ]
        lines += table(
            ["layer (innermost Python frame)", "share", "µs/request"],
            [
                [r["name"], f"{r['share']:.1%}", r.get("us_per_request", "-")]
                for r in prof["own_by_layer"]
            ],
        )
        lines += [
            "Inside each layer, the innermost Python frames (→ the C function they were in):",
            "",
        ]
        for layer in prof["own_by_layer"][:10]:
            parts = [
                f"`{brief(r['name'])}` {r.get('us_per_request', '-')}"
                for r in prof.get("layer_detail", {}).get(layer["name"], [])[:6]
            ]
            lines.append(
                f"- **{layer['name']}** ({layer.get('us_per_request', '-')} µs): "
                + "; ".join(parts)
            )
        lines.append("")
        if prof.get("own_by_native_function"):
            lines += table(
                ["C function (own time)", "share", "µs/request"],
                [
                    [f"`{r['name']}`", f"{r['share']:.1%}", r.get("us_per_request", "-")]
                    for r in prof["own_by_native_function"][:10]
                ],
            )
        ours = [
            r
            for r in prof["inclusive_by_function"]
            if "(sluicegate/" in r["name"] and "sluicegate/cli/" not in r["name"]
        ]
        lines += table(
            ["Sluicegate function (inclusive: itself and all it calls)", "share", "µs/request"],
            [
                [f"`{r['name']}`", f"{r['share']:.1%}", r.get("us_per_request", "-")]
                for r in ours[:15]
            ],
        )
    return lines
