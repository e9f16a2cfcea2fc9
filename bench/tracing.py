"""CPU cost of tracing per request: the same calls with tracing off and on.

The gateway runs in this process (uvicorn on uvloop) in front of the mock upstream
(its own process); a client in this process sends ``-n`` sequential chat calls.
The CPU time of this process per call, tracing on minus tracing off, is what
tracing costs the gateway (spans of the request, its stages and its attempt,
batched for export by the SDK's own processor into an exporter that drops them).
A micro-benchmark, not a test:

    .venv/bin/python -m bench.tracing [-n 2000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence

import httpx2
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from sluicegate.config.schema import Config
from sluicegate.server.app import create_app
from sluicegate.server.gateway import MasterKey
from tests.fakes.servers import free_port, running

KEY = "sk-bench-0123456789abcdef"


class _Drop(SpanExporter):
    """Receives every span, as a real exporter would, and keeps none."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def _per_call_cpu_us(upstream: str, n: int, exporter: SpanExporter | None) -> float:
    config = Config.model_validate(
        {
            "server": {"access_log": False},
            "auth": {"master_key": KEY},
            "models": [
                {
                    "name": "m",
                    "deployments": [
                        {"provider": "openai", "base_url": upstream, "health": {"enabled": False}}
                    ],
                }
            ],
        }
    )
    app = create_app(config, MasterKey(KEY, "bench"), span_exporter=exporter)
    body = {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}
    headers = {"authorization": f"Bearer {KEY}"}
    with running(app) as url, httpx2.Client(base_url=url) as client:
        for _ in range(200):  # warm up connections and caches
            client.post("/v1/chat/completions", json=body, headers=headers)
        best = float("inf")
        for _ in range(3):
            start = time.process_time()
            for _ in range(n):
                client.post("/v1/chat/completions", json=body, headers=headers)
            best = min(best, time.process_time() - start)
    return best / n * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="calls per round (best of 3)")
    args = parser.parse_args(argv)
    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, "bench/mock_upstream.py", "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        base = f"http://127.0.0.1:{port}/v1"
        off = _per_call_cpu_us(base, args.n, None)
        dropped = _Drop()
        on = _per_call_cpu_us(base, args.n, dropped)
    finally:
        upstream.terminate()
        upstream.wait()
    print(f"tracing off: {off:7.1f} CPU µs per call (gateway and client in one process)")
    print(f"tracing on:  {on:7.1f} CPU µs per call ({dropped.spans} spans exported)")
    print(f"tracing costs {on - off:+.1f} CPU µs per call")


if __name__ == "__main__":
    main()
