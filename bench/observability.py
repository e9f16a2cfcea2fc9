"""What per-call metrics and the request log cost: one gateway, toggled, in alternating rounds.

Separate runs on a shared machine drift by ±10 % in CPU per request (frequency, other
tenants), more than the effect measured here. So one gateway process serves every
round, and a signal flips what its ``record`` stage does between rounds:

- ``on``:  Prometheus per-call metrics and the JSON request log (the default config);
- ``off``: neither (the ``record`` stage still counts in-flight calls).

Rounds alternate on, off, on, off… under the same wrk load (non-streaming chat,
16 connections, gateway pinned to CPU 0, wrk and the mock upstream to CPU 1); the
gateway's CPU per request is read from /proc for each round. Reported: the median
of each mode and their difference. A benchmark, not a test::

    .venv/bin/python -m bench.observability [--rounds 8] [--seconds 6]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.processes import Managed, cpu_seconds, free_port, pinned, wait_http
from bench.run import _gateway_config
from bench.wrk import run_wrk, write_script

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-bench-observability-0123456789"


def serve(config: str) -> None:
    """The gateway, with SIGUSR1 switching metrics and the request log off and on."""
    import uvicorn

    from sluicegate.config import load_config
    from sluicegate.pipeline.record import Record
    from sluicegate.server.app import create_app
    from sluicegate.server.gateway import resolve_master_key

    loaded = load_config(config)
    app = create_app(loaded, resolve_master_key(loaded))
    gw = app.state.gateway
    record = next(s for s in gw.pipeline.stages if isinstance(s, Record))
    kept = (record.metrics, record.access_log)

    def flip(signum: int, frame: object) -> None:
        if record.metrics is None:
            record.metrics, record.access_log = kept
        else:
            record.metrics = record.access_log = None

    signal.signal(signal.SIGUSR1, flip)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=loaded.server.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        server_header=False,
        date_header=False,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="rounds per mode")
    parser.add_argument("--seconds", type=float, default=6.0, help="wrk seconds per round")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    out = Path(tempfile.mkdtemp(prefix="bench-observability-"))
    mock_port, port = free_port(), free_port()
    _gateway_config(out / "gateway.yaml", port, mock_port, True, out / "data")
    script = write_script(out / "chat.lua", KEY)
    mock_argv = [sys.executable, str(ROOT / "bench" / "mock_upstream.py"), "--port", str(mock_port)]
    gateway_argv = [
        sys.executable,
        "-m",
        "bench.observability",
        "--serve",
        str(out / "gateway.yaml"),
    ]
    env = {**os.environ, "SLUICEGATE_MASTER_KEY": KEY}
    base = f"http://127.0.0.1:{port}"
    cpu: dict[str, list[float]] = {"on": [], "off": []}
    with (
        Managed("mock", pinned("1", mock_argv), out / "mock.log") as mock,
        Managed("gateway", pinned("0", gateway_argv), out / "gateway.log", env) as gw,
    ):
        wait_http(f"http://127.0.0.1:{mock_port}/v1/models", mock)
        wait_http(base + "/ready", gw)
        run_wrk(base, script, args.connections, 3.0, "1")  # warm up
        mode = "on"
        for _ in range(2 * args.rounds):
            time.sleep(0.5)
            before = cpu_seconds(gw.pid)
            result = run_wrk(base, script, args.connections, args.seconds, "1")
            per_request = (cpu_seconds(gw.pid) - before) * 1e6 / max(1, result.requests)
            cpu[mode].append(per_request)
            print(
                f"  {mode:3}  {result.rps:7.0f} rps  {per_request:6.1f} CPU µs/request", flush=True
            )
            os.kill(gw.pid, signal.SIGUSR1)
            mode = "off" if mode == "on" else "on"
        gw.check_alive()
    on, off = statistics.median(cpu["on"]), statistics.median(cpu["off"])
    print(
        f"median CPU per request: metrics and request log on {on:.1f} µs, off {off:.1f} µs: "
        f"{on - off:+.1f} µs ({(on - off) / off * 100:+.1f} %)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
