"""How fast the bundled SmolLM2 answers through the gateway: first token, then per token.

Starts a gateway on 127.0.0.1 with the given local deployment settings, streams
completions with the openai SDK and prints the figures as a Markdown table.

    .venv/bin/python bench/local_chat.py                         # defaults: 1 slot
    .venv/bin/python bench/local_chat.py --concurrency 2 --clients 2
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import threading
import time
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sluicegate.config.schema import Config  # noqa: E402
from sluicegate.server.app import create_app  # noqa: E402
from sluicegate.server.gateway import MasterKey  # noqa: E402
from tests.fakes.servers import running  # noqa: E402

KEY = "sk-bench-local-chat-0123456789"
#: SmolLM2's end-of-generation tokens, biased away so every answer has the same length.
NEVER_STOP = {"0": -100, "2": -100, "4": -100}


def one_stream(base: str, tokens: int, out: list[tuple[float, list[float]]]) -> None:
    with openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0) as client:
        started = time.perf_counter()
        stamps: list[float] = []
        stream = client.chat.completions.create(
            model="smollm2-135m",
            messages=[{"role": "user", "content": "Tell me a long story about a lighthouse."}],
            max_tokens=tokens,
            logit_bias=NEVER_STOP,
            temperature=0.7,
            stream=True,
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                stamps.append(time.perf_counter())
        out.append((stamps[0] - started, [b - a for a, b in itertools.pairwise(stamps)]))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=1, help="max_concurrency (instances)")
    parser.add_argument("--clients", type=int, default=1, help="streams at once")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    deployment = {
        "provider": "local",
        "path": "builtin:smollm2",
        "max_concurrency": args.concurrency,
        "preload": True,
    }
    config = Config.model_validate(
        {"models": [{"name": "smollm2-135m", "deployments": [deployment]}]}
    )
    results: list[tuple[float, list[float]]] = []
    with running(create_app(config, MasterKey(KEY, "bench"))) as base:
        one_stream(base, 8, [])  # warm-up
        started = time.perf_counter()
        for _ in range(args.rounds):
            threads = [
                threading.Thread(target=one_stream, args=(base, args.tokens, results))
                for _ in range(args.clients)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        wall = time.perf_counter() - started
    gaps = sorted(gap * 1000 for _, between in results for gap in between)
    firsts = sorted(first * 1000 for first, _ in results)
    generated = args.rounds * args.clients * args.tokens  # never stopped early: NEVER_STOP
    print(
        "| instances | clients | first token p50 (ms) | per token p50 / p90 (ms) | tokens/s, all |"
    )
    print("|---:|---:|---:|---:|---:|")
    print(
        f"| {args.concurrency} | {args.clients} | {statistics.median(firsts):.0f} | "
        f"{statistics.median(gaps):.1f} / {gaps[int(0.9 * (len(gaps) - 1))]:.1f} | "
        f"{generated / wall:.0f} |"
    )
    print(f"load average {Path('/proc/loadavg').read_text().split()[0]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
