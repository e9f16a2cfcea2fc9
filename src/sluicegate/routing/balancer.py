"""Which of a group's available deployments serves this call: the balancing strategies.

The caller has already filtered the candidates (available, with capacity, not yet
tried) and passes them in config order. ``pick`` runs on every request, so each
strategy is a single pass over a handful of candidates with no per-call objects
beyond what the strategy needs:

- ``round_robin``: nginx's smooth weighted round-robin (weights 5:1:1 → a a b a c a a),
  over whichever candidates are given, so a deployment leaving and coming back keeps
  its place.
- ``least_outstanding``: the lowest outstanding/weight; ties go to the deployment
  picked least recently, so an idle group is served in turn.
- ``latency``: the lowest latency EWMA * (outstanding + 1) / weight; see ``Latency``.

Where a deployment's engine reports its own queue (``engine_metrics``) and the
figures are fresh, both count the larger of the engine's waiting + running
requests and the calls this gateway has out (``DeploymentState.load``): the
engine's queue includes every other gateway replica's calls. Deployments without
engine figures cost one attribute check more.
- ``prefix_affinity``: calls sharing a leading prompt go to the same replica (its
  prefix cache stays warm) by rendezvous hashing, bounded by load; see ``PrefixAffinity``.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from math import log
from typing import TYPE_CHECKING, Any, Protocol

from sluicegate.config.routing import RoutingConfig
from sluicegate.types import Endpoint

if TYPE_CHECKING:
    from sluicegate.pipeline.call import Call
    from sluicegate.routing.router import Target

__all__ = [
    "Balancer",
    "Latency",
    "LeastOutstanding",
    "PrefixAffinity",
    "RoundRobin",
    "build_balancer",
    "prefix_key",
]

_INV_2_30 = 2.0**-30
_UNTRIED_BUSY = 1e9  # seconds: an untried deployment with its trial call still out


class Balancer(Protocol):
    def pick(self, candidates: Sequence[Target], call: Call) -> Target | None:
        """One of ``candidates`` (already filtered, in config order); None only if empty."""


class RoundRobin:
    """Smooth weighted round-robin: each pick adds every candidate's weight to its
    running score, takes the highest and takes the candidates' total weight off it."""

    def __init__(self) -> None:
        self._current: dict[str, int] = {}

    def pick(self, candidates: Sequence[Target], call: Call) -> Target | None:
        current = self._current
        best: Target | None = None
        best_score = 0
        total = 0
        for target in candidates:
            weight = target.weight
            total += weight
            score = current.get(target.deployment_id, 0) + weight
            current[target.deployment_id] = score
            if best is None or score > best_score:
                best, best_score = target, score
        if best is not None:
            current[best.deployment_id] = best_score - total
        return best


class LeastOutstanding:
    """Fewest calls in flight per unit of weight; ties to the least recently picked."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self._turn = 0

    def pick(self, candidates: Sequence[Target], call: Call) -> Target | None:
        last = self._last
        best: Target | None = None
        best_load = 0.0
        best_last = 0
        for target in candidates:
            state = target.state
            load = state.load() / target.weight
            seen = last.get(target.deployment_id, -1)
            if best is None or load < best_load or (load == best_load and seen < best_last):
                best, best_load, best_last = target, load, seen
        if best is not None:
            self._turn += 1
            last[best.deployment_id] = self._turn
        return best


class Latency:
    """The fastest deployment, judged by latency EWMA (time to first token for streams).

    The cost is EWMA * (load + 1) / weight, load being the calls out (or the engine's
    queue, see the module docstring): the EWMA only moves when calls finish, so
    without the load factor a burst would pile onto one deployment before its
    latency shows it. A deployment never measured goes first while it has
    no call in flight, one trial call at a time (so a cold start spreads out, and an
    untried deployment that is slow to answer does not collect every call until its
    first answer); with its trial out it waits behind the measured ones.

    Exploration: one pick in ``explore_every`` goes to the candidate picked least
    recently, whatever its cost, so a deployment that was slow keeps getting an
    occasional call and its EWMA notices a recovery; nothing else would refresh it.
    """

    def __init__(self, explore_every: int = 20) -> None:
        self.explore_every = explore_every
        self._last: dict[str, int] = {}
        self._turn = 0

    def pick(self, candidates: Sequence[Target], call: Call) -> Target | None:
        last = self._last
        self._turn += 1
        explore = self._turn % self.explore_every == 0
        best: Target | None = None
        best_cost = 0.0
        best_last = 0
        stale: Target | None = None
        stale_last = 0
        for target in candidates:
            seen = last.get(target.deployment_id, -1)
            if stale is None or seen < stale_last:
                stale, stale_last = target, seen
            state = target.state
            ewma = state.latency_ewma
            busy = state.load() + 1
            if ewma is not None:
                cost = ewma * busy / target.weight
            elif busy == 1:
                cost = -1.0  # untried and idle: before every measured one
            else:
                cost = _UNTRIED_BUSY * busy / target.weight  # its trial call is still out
            if best is None or cost < best_cost or (cost == best_cost and seen < best_last):
                best, best_cost, best_last = target, cost, seen
        chosen = stale if explore else best
        if chosen is not None:
            last[chosen.deployment_id] = self._turn
        return chosen


class PrefixAffinity:
    """Rendezvous hashing of the prompt's leading characters, with bounded load.

    Each candidate scores hash(key, deployment_id); the best score serves, so when a
    replica comes or goes only the keys that scored best on it move. A weight scales
    a replica's share (weighted rendezvous: score = weight / -ln(u)). A replica whose
    outstanding calls exceed ``load_factor`` * its weighted share of the group's
    outstanding calls, plus one, is skipped for the next in rendezvous order; some
    candidate is always within the bound, since not all can be above the mean.

    Cost: the key is hashed once per call with CRC-32 (5x faster than blake2b on a
    4 KiB prefix; bench/balancer.py), then each candidate's score is a simple
    tabulation hash of those 32 bits (four lookups in random tables seeded by the
    deployment id, XORed): independent scores per deployment at a few operations
    each, where 64-bit integer mixing costs about a microsecond per candidate in
    Python. Everything is seeded from ids, so every gateway replica agrees.
    A call without a prompt has no affinity and goes to the least loaded candidate.
    """

    def __init__(self, prefix_chars: int, load_factor: float) -> None:
        self.prefix_chars = prefix_chars
        self.load_factor = load_factor
        self._tables: dict[str, list[int]] = {}
        self._fallback = LeastOutstanding()

    def pick(self, candidates: Sequence[Target], call: Call) -> Target | None:
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        key = prefix_key(call, self.prefix_chars)
        if not key:
            return self._fallback.pick(candidates, call)
        hashed = zlib.crc32(key.encode("utf-8", "surrogatepass"))
        # Offsets of the key's four bytes in a deployment's 4 x 256 table.
        i0 = hashed & 255
        i1 = 256 + ((hashed >> 8) & 255)
        i2 = 512 + ((hashed >> 16) & 255)
        i3 = 768 + (hashed >> 24)
        slots = (i0, i1, i2, i3)
        tables = self._tables
        best = candidates[0]
        best_bits = -1
        total_load = 0
        total_weight = 0
        first_weight = best.weight
        mixed = False
        for target in candidates:
            table = tables.get(target.deployment_id) or self._table(target.deployment_id)
            bits = table[i0] ^ table[i1] ^ table[i2] ^ table[i3]
            weight = target.weight
            total_load += target.state.outstanding
            total_weight += weight
            mixed = mixed or weight != first_weight
            if bits > best_bits:
                best, best_bits = target, bits
        if mixed:
            # Equal weights rank by the raw bits; unequal ones need the weighted score.
            best = max(candidates, key=lambda t: self._score(slots, t))
        per_weight = self.load_factor * total_load / total_weight
        if best.state.outstanding <= per_weight * best.weight + 1:
            return best
        # Rare: the affine replica is overloaded; walk the rendezvous order.
        ranked = sorted(candidates, key=lambda t: self._score(slots, t), reverse=True)
        for target in ranked[1:]:
            if target.state.outstanding <= per_weight * target.weight + 1:
                return target
        return best  # unreachable: the least loaded candidate is always within the bound

    def _score(self, slots: tuple[int, int, int, int], target: Target) -> float:
        """Weighted rendezvous score; monotonic in the raw bits ``pick`` compares inline."""
        table = self._tables.get(target.deployment_id) or self._table(target.deployment_id)
        bits = table[slots[0]] ^ table[slots[1]] ^ table[slots[2]] ^ table[slots[3]]
        return target.weight / -log((bits + 0.5) * _INV_2_30)

    def _table(self, deployment_id: str) -> list[int]:
        # random.Random seeded with a str gives the same numbers in every process.
        rng = random.Random(f"sluicegate-rendezvous:{deployment_id}")
        table = self._tables[deployment_id] = [rng.getrandbits(30) for _ in range(1024)]
        return table


def prefix_key(call: Call, limit: int) -> str:
    """The first ``limit`` characters of the call's prompt ("" when it has none).

    Chat: every message's role and text in order (text parts of content lists), so
    a shared system prompt and conversation history give a shared key. Completions:
    the prompt. Embeddings: the input.
    """
    body = call.body
    if call.endpoint is Endpoint.CHAT:
        return _chat_key(body.get("messages"), limit)
    if call.endpoint is Endpoint.COMPLETIONS:
        return _text_key(body.get("prompt"), limit)
    if call.endpoint is Endpoint.EMBEDDINGS:
        return _text_key(body.get("input"), limit)
    return ""


def _chat_key(messages: Any, limit: int) -> str:
    if not isinstance(messages, list):
        return ""
    # role, text, role, text... joined by a separator no prompt contains, so the
    # boundaries between messages are part of the key.
    parts: list[str] = []
    size = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        content = message.get("content")
        if isinstance(content, str):
            text = content
        elif isinstance(content, list):
            text = "\x1e".join(
                part["text"]
                for part in content
                if isinstance(part, dict)
                and part.get("type") == "text"
                and isinstance(part.get("text"), str)
            )
        else:
            text = ""
        parts.append(role if isinstance(role, str) else "")
        parts.append(text)
        size += len(text)
        if size >= limit:
            break
    return "\x1f".join(parts)[:limit]


def _text_key(value: Any, limit: int) -> str:
    if isinstance(value, str):
        return value[:limit]
    if isinstance(value, list) and value:
        first = value[0]
        if isinstance(first, str):
            return first[:limit]  # a batch of prompts: the first one decides
        if isinstance(first, int):  # token ids
            return ",".join(map(str, value[:limit]))[:limit]
        if isinstance(first, list):  # a batch of token-id lists
            return ",".join(map(str, first[:limit]))[:limit]
    return ""


def build_balancer(config: RoutingConfig) -> Balancer:
    """A fresh balancer (with its own state) for one model group."""
    strategy = config.strategy
    if strategy == "round_robin":
        return RoundRobin()
    if strategy == "least_outstanding":
        return LeastOutstanding()
    if strategy == "latency":
        return Latency()
    if strategy == "prefix_affinity":
        return PrefixAffinity(config.prefix_chars, config.load_factor)
    raise ValueError(f"unknown routing strategy {strategy!r}")
