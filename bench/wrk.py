"""Non-streaming load with wrk: POST a chat body, read RPS and latency percentiles back as JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["CHAT_BODY", "WrkResult", "require_wrk", "run_wrk", "write_script"]

# A small but realistic chat request (~350 bytes): a system prompt, one user turn, a few options.
CHAT_BODY: dict[str, Any] = {
    "model": "bench-model",
    "messages": [
        {"role": "system", "content": "You are a concise assistant for a water-works company."},
        {
            "role": "user",
            "content": "In two sentences, explain what a sluice gate does and why a gateway "
            "for language models might borrow its name.",
        },
    ],
    "max_tokens": 64,
    "temperature": 0.2,
    "user": "bench",
}

# wrk reports through a Lua `done` hook; the percentiles come from its full latency histogram (µs).
_LUA = """
wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
wrk.body = [==[%(body)s]==]

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"bytes":%%d,' ..
    '"errors":{"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d},' ..
    '"latency_us":{"min":%%d,"max":%%d,"mean":%%.1f,"stdev":%%.1f,' ..
    '"p50":%%d,"p90":%%d,"p99":%%d,"p999":%%d}}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev,
    latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
"""


def require_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit(
            "wrk is not installed. On Debian/Ubuntu: sudo apt-get install -y wrk "
            "(`make bench` does this itself when run as root)."
        )
    return found


def write_script(path: Path, key: str) -> Path:
    body = json.dumps(CHAT_BODY, separators=(",", ":"))
    path.write_text(_LUA % {"key": key, "body": body}, encoding="utf-8")
    return path


@dataclass(frozen=True, slots=True)
class WrkResult:
    connections: int
    seconds: float
    requests: int
    rps: float
    errors: int
    latency_us: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_wrk(
    base: str, script: Path, connections: int, seconds: float, cpus: str | None = None
) -> WrkResult:
    """One wrk run; wrk is pinned to ``cpus`` when given (a taskset list)."""
    argv = [
        require_wrk(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        base,
    ]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    duration = raw["duration_us"] / 1e6
    errors = sum(raw["errors"].values())
    return WrkResult(
        connections=connections,
        seconds=round(duration, 3),
        requests=raw["requests"],
        rps=round(raw["requests"] / duration, 1),
        errors=errors,
        latency_us={k: float(v) for k, v in raw["latency_us"].items()},
    )
