"""Cost of one balancer pick, per strategy, over 3 candidates (µs per pick).

Also compares three ways to score rendezvous candidates for prefix affinity, on
the same prompt key: blake2b of (key + deployment_id) per candidate; blake2b of
the key once, then ``copy()`` + deployment_id per candidate; blake2b of the key
once mixed with a per-deployment hash (splitmix64); and what ``PrefixAffinity``
uses, CRC-32 of the key once and a tabulation hash per deployment.
A micro-benchmark, not a test.

    .venv/bin/python -m bench.balancer
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import timeit
import zlib
from collections.abc import Callable

from sluicegate.config.routing import RoutingConfig
from sluicegate.config.schema import ModelConfig, OpenAIDeployment
from sluicegate.pipeline.call import Call
from sluicegate.providers import build_provider
from sluicegate.routing.balancer import PrefixAffinity, build_balancer, prefix_key
from sluicegate.routing.router import Target
from sluicegate.routing.state import DeploymentState
from sluicegate.types import Endpoint

_MASK = (1 << 64) - 1


def targets(count: int) -> list[Target]:
    made = []
    for index in range(count):
        dep = OpenAIDeployment(
            provider="openai", base_url="http://127.0.0.1:9/v1", id=f"replica-{index}"
        )
        model = ModelConfig(name="m", deployments=[dep])
        state = DeploymentState(dep)
        state.outstanding = index
        state.latency_ewma = 0.1 * (index + 1)
        made.append(
            Target(
                model="m",
                deployment_id=f"replica-{index}",
                upstream_model="m",
                self_hosted=True,
                provider=build_provider(model, dep),
                weight=1,
                accepts_prefill=False,
                config=dep,
                state=state,
            )
        )
    return made


def chat_call(system_chars: int) -> Call:
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "You are a careful assistant. " * (system_chars // 29)},
            {"role": "user", "content": "What is the capital of France?"},
        ],
    }
    return Call(request_id="b", endpoint=Endpoint.CHAT, body=body, model="m")


def per_call_us(fn: Callable[[], object], number: int) -> float:
    best = min(timeit.repeat(fn, number=number, repeat=5))
    return best / number * 1e6


def rendezvous_variants(key: str, ids: list[str]) -> dict[str, Callable[[], object]]:
    salts = [
        int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(), "little") for i in ids
    ]
    encoded_ids = [i.encode() for i in ids]

    def per_candidate() -> object:
        data = key.encode("utf-8", "surrogatepass")
        return max(
            range(len(ids)),
            key=lambda n: hashlib.blake2b(data + encoded_ids[n], digest_size=8).digest(),
        )

    def copy_per_candidate() -> object:
        base = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8)
        best, best_digest = 0, b""
        for n, ident in enumerate(encoded_ids):
            h = base.copy()
            h.update(ident)
            digest = h.digest()
            if digest > best_digest:
                best, best_digest = n, digest
        return best

    def once_and_mix() -> object:
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        hashed = int.from_bytes(digest, "little")
        best, best_z = 0, -1
        for n, salt in enumerate(salts):
            z = ((hashed ^ salt) + 0x9E3779B97F4A7C15) & _MASK
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
            z ^= z >> 31
            if z > best_z:
                best, best_z = n, z
        return best

    tables = [PrefixAffinity(16, 1.0)._table(i) for i in ids]

    def crc_and_tabulate() -> object:
        hashed = zlib.crc32(key.encode("utf-8", "surrogatepass"))
        i0, i1 = hashed & 255, 256 + ((hashed >> 8) & 255)
        i2, i3 = 512 + ((hashed >> 16) & 255), 768 + (hashed >> 24)
        best, best_bits = 0, -1
        for n, table in enumerate(tables):
            bits = table[i0] ^ table[i1] ^ table[i2] ^ table[i3]
            if bits > best_bits:
                best, best_bits = n, bits
        return best

    return {
        "blake2b(key + id) per candidate": per_candidate,
        "blake2b(key) once, copy() + id per candidate": copy_per_candidate,
        "blake2b(key) once, splitmix64 with per-id hash": once_and_mix,
        "crc32(key) once, tabulation per id (used)": crc_and_tabulate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000, help="picks per timing run")
    parser.add_argument("--candidates", type=int, default=3)
    args = parser.parse_args()

    group = targets(args.candidates)
    print(f"pick() over {args.candidates} candidates, best of 5 runs of {args.number} picks")
    for system_chars in (200, 4096):
        call = chat_call(system_chars)
        print(f"\nchat call with a {system_chars}-character system prompt:")
        for strategy in ("round_robin", "least_outstanding", "latency", "prefix_affinity"):
            balancer = build_balancer(RoutingConfig(strategy=strategy))
            us = per_call_us(functools.partial(balancer.pick, group, call), args.number)
            print(f"  {strategy:<20} {us:6.2f} µs")
        key = prefix_key(call, 4096)
        us = per_call_us(functools.partial(prefix_key, call, 4096), args.number)
        print(f"  {'(prefix key alone)':<20} {us:6.2f} µs  ({len(key)} chars)")
        print("  rendezvous scoring of that key:")
        ids = [t.deployment_id for t in group]
        for name, fn in rendezvous_variants(key, ids).items():
            print(f"    {name:<48} {per_call_us(fn, args.number):6.2f} µs")


if __name__ == "__main__":
    main()
