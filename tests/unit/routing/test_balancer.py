"""routing/balancer: each strategy's choice among a group's available deployments."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from sluicegate.config.routing import RoutingConfig
from sluicegate.config.schema import ModelConfig, OpenAIDeployment
from sluicegate.pipeline.call import Call
from sluicegate.providers import build_provider
from sluicegate.routing.balancer import (
    Balancer,
    Latency,
    LeastOutstanding,
    PrefixAffinity,
    RoundRobin,
    build_balancer,
    prefix_key,
)
from sluicegate.routing.router import Target
from sluicegate.routing.state import DeploymentState
from sluicegate.types import Endpoint


def target(deployment_id: str, weight: int = 1, **settings: Any) -> Target:
    """A deployment of model "m" that is never called; ``settings`` go to its config."""
    dep = OpenAIDeployment(
        provider="openai",
        base_url="http://127.0.0.1:9/v1",
        id=deployment_id,
        weight=weight,
        **settings,
    )
    model = ModelConfig(name="m", deployments=[dep])
    return Target(
        model="m",
        deployment_id=deployment_id,
        upstream_model="m",
        self_hosted=True,
        provider=build_provider(model, dep),
        weight=weight,
        accepts_prefill=False,
        config=dep,
        state=DeploymentState(dep),
    )


def group(*specs: str | tuple[str, int]) -> list[Target]:
    return [target(s) if isinstance(s, str) else target(*s) for s in specs]


def chat(*contents: str, system: str | None = None) -> Call:
    messages: list[dict[str, Any]] = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    messages.extend({"role": "user", "content": c} for c in contents)
    return Call(
        request_id="t", endpoint=Endpoint.CHAT, body={"model": "m", "messages": messages}, model="m"
    )


CALL = chat("hello")


def picks(balancer: Balancer, candidates: Sequence[Target], count: int, call: Call = CALL) -> str:
    chosen = []
    for _ in range(count):
        picked = balancer.pick(candidates, call)
        assert picked is not None
        chosen.append(picked.deployment_id)
    return " ".join(chosen)


def test_build_balancer_names_each_strategy() -> None:
    kinds: dict[Any, type] = {
        "round_robin": RoundRobin,
        "least_outstanding": LeastOutstanding,
        "latency": Latency,
        "prefix_affinity": PrefixAffinity,
    }
    for strategy, kind in kinds.items():
        balancer = build_balancer(RoutingConfig(strategy=strategy))
        assert isinstance(balancer, kind)
    affinity = build_balancer(
        RoutingConfig(strategy="prefix_affinity", prefix_chars=64, load_factor=2.0)
    )
    assert isinstance(affinity, PrefixAffinity)
    assert (affinity.prefix_chars, affinity.load_factor) == (64, 2.0)
    # Each group gets its own state.
    assert build_balancer(RoutingConfig()) is not build_balancer(RoutingConfig())


@pytest.mark.parametrize(
    "strategy", ["round_robin", "least_outstanding", "latency", "prefix_affinity"]
)
def test_no_candidates_no_pick(strategy: Any) -> None:
    assert build_balancer(RoutingConfig(strategy=strategy)).pick([], CALL) is None


# round_robin


def test_round_robin_smooth_weighted_order() -> None:
    # nginx's smooth weighted round-robin: the heavy deployment is spread out.
    candidates = group(("a", 5), "b", "c")
    assert picks(RoundRobin(), candidates, 14) == "a a b a c a a a a b a c a a"


def test_round_robin_equal_weights_take_turns() -> None:
    assert picks(RoundRobin(), group("a", "b", "c"), 6) == "a b c a b c"


def test_round_robin_weighted_share() -> None:
    chosen = picks(RoundRobin(), group(("a", 3), ("b", 2), "c"), 600).split()
    assert Counter(chosen) == {"a": 300, "b": 200, "c": 100}


def test_round_robin_over_a_changing_candidate_set() -> None:
    a, b, c = group("a", "b", "c")
    balancer = RoundRobin()
    assert picks(balancer, [a, b, c], 2) == "a b"
    # c is busy (or excluded) for a while: the others keep taking turns.
    assert picks(balancer, [a, b], 4) == "a b a b"
    # Back: c has waited longest and goes first; then the cycle is even again.
    assert picks(balancer, [a, b, c], 6) == "c a b c a b"
    # Another change: the credit c kept from the unfinished cycle is worth one call at most.
    counts = Counter(picks(balancer, [a, c], 100).split())
    assert abs(counts["a"] - counts["c"]) <= 2


def test_round_robin_weights_hold_while_one_is_missing() -> None:
    a, b, c = group(("a", 2), "b", "c")
    balancer = RoundRobin()
    chosen = picks(balancer, [a, b], 300).split()
    assert Counter(chosen) == {"a": 200, "b": 100}
    chosen = picks(balancer, [a, b, c], 400).split()
    assert Counter(chosen) == {"a": 200, "b": 100, "c": 100}


# least_outstanding


def test_least_outstanding_picks_the_least_loaded() -> None:
    a, b, c = group("a", "b", "c")
    a.state.outstanding, b.state.outstanding, c.state.outstanding = 4, 1, 3
    assert picks(LeastOutstanding(), [a, b, c], 3) == "b b b"


def test_least_outstanding_divides_by_weight() -> None:
    a, b = group(("a", 4), "b")
    a.state.outstanding, b.state.outstanding = 6, 2  # 1.5 vs 2 per unit of weight
    assert picks(LeastOutstanding(), [a, b], 1) == "a"
    a.state.outstanding = 9  # 2.25 vs 2
    assert picks(LeastOutstanding(), [a, b], 1) == "b"


def test_least_outstanding_rotates_on_ties() -> None:
    a, b, c = group("a", "b", "c")
    balancer = LeastOutstanding()
    assert picks(balancer, [a, b, c], 6) == "a b c a b c"
    # Only a and b tie at the minimum: they alternate, c is never taken.
    c.state.outstanding = 2
    assert picks(balancer, [a, b, c], 4) == "a b a b"


def test_least_outstanding_follows_live_counts() -> None:
    candidates = group("a", "b", "c")
    balancer = LeastOutstanding()
    for _ in range(30):
        chosen = balancer.pick(candidates, CALL)
        assert chosen is not None
        chosen.state.started()
    assert [t.state.outstanding for t in candidates] == [10, 10, 10]
    candidates[1].state.finished()
    assert picks(balancer, candidates, 1) == "b"


# latency


def test_latency_prefers_the_fastest() -> None:
    a, b, c = group("a", "b", "c")
    a.state.latency_ewma, b.state.latency_ewma, c.state.latency_ewma = 0.5, 0.1, 0.3
    balancer = Latency(explore_every=1000)
    assert picks(balancer, [a, b, c], 20) == " ".join(["b"] * 20)
    assert picks(balancer, [a, c], 3) == "c c c"


def test_latency_tries_unmeasured_first() -> None:
    a, b, c = group("a", "b", "c")
    a.state.latency_ewma = 0.01
    balancer = Latency(explore_every=1000)
    # b and c have never been measured: they go before the fast a, in turn.
    assert picks(balancer, [a, b, c], 4) == "b c b c"
    b.state.latency_ewma, c.state.latency_ewma = 0.2, 0.3
    assert picks(balancer, [a, b, c], 2) == "a a"


def test_latency_sends_one_trial_call_at_a_time_to_the_untried() -> None:
    a, b, c = group("a", "b", "c")
    a.state.latency_ewma = 0.2
    balancer = Latency(explore_every=1000)
    b.state.outstanding = 1  # its first call has not answered yet
    assert picks(balancer, [a, b, c], 1) == "c"
    c.state.outstanding = 1
    assert picks(balancer, [a, b, c], 2) == "a a"
    # A cold group under a burst: every untried one takes a call, then the least busy.
    cold = group("x", "y", "z")
    for _ in range(9):
        chosen = balancer.pick(cold, CALL)
        assert chosen is not None
        chosen.state.started()
    assert [t.state.outstanding for t in cold] == [3, 3, 3]


def test_latency_weighs_calls_in_flight() -> None:
    a, b = group("a", "b")
    a.state.latency_ewma, b.state.latency_ewma = 0.1, 0.25
    balancer = Latency(explore_every=1000)
    assert picks(balancer, [a, b], 1) == "a"
    a.state.outstanding = 2  # 0.1 * 3 > 0.25 * 1: the fast one is busy enough
    assert picks(balancer, [a, b], 1) == "b"


def test_latency_explores_so_a_recovery_is_noticed() -> None:
    a, b, c = group("a", "b", "c")
    a.state.latency_ewma, b.state.latency_ewma, c.state.latency_ewma = 0.1, 5.0, 9.0
    balancer = Latency(explore_every=10)
    chosen = picks(balancer, [a, b, c], 100).split()
    # Every 10th pick goes to the one picked least recently: the slow ones get a few calls.
    assert Counter(chosen) == {"a": 90, "b": 5, "c": 5}
    assert chosen[9] in ("b", "c") and chosen[19] in ("b", "c") and chosen[9] != chosen[19]
    # b recovered: the exploring calls bring its average down, and it takes the traffic.
    for _ in range(15):
        b.state.observe_latency(0.01)
    assert picks(balancer, [a, b, c], 5) == "b b b b b"


# prefix_affinity


def random_prompt(rng: random.Random, length: int = 40) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(length))


def test_same_prefix_same_replica() -> None:
    candidates = group("r1", "r2", "r3")
    balancer = PrefixAffinity(prefix_chars=64, load_factor=1.25)
    system = "You are a helpful assistant for ACME support. " * 2
    first = balancer.pick(candidates, chat("q0", system=system))
    assert first is not None
    for n in range(1000):
        # Calls share the first 64 characters; the rest differs.
        assert balancer.pick(candidates, chat(f"question {n}", system=system)) is first


def test_affinity_is_the_same_in_every_gateway_replica() -> None:
    call = chat("the same prompt in two gateway processes")
    one = PrefixAffinity(4096, 1.25).pick(group("r1", "r2", "r3"), call)
    other = PrefixAffinity(4096, 1.25).pick(group("r1", "r2", "r3"), call)
    assert one is not None and other is not None
    assert one.deployment_id == other.deployment_id


def test_different_prefixes_spread_evenly() -> None:
    rng = random.Random(7)
    candidates = group("r1", "r2", "r3")
    balancer = PrefixAffinity(prefix_chars=64, load_factor=1.25)
    share = Counter(picks(balancer, candidates, 1, chat(random_prompt(rng))) for _ in range(3000))
    assert set(share) == {"r1", "r2", "r3"}
    assert all(0.2 <= n / 3000 <= 0.47 for n in share.values()), share


def test_weights_scale_a_replicas_share() -> None:
    rng = random.Random(11)
    candidates = group(("big", 2), "r1", "r2")
    balancer = PrefixAffinity(prefix_chars=64, load_factor=1.25)
    share = Counter(picks(balancer, candidates, 1, chat(random_prompt(rng))) for _ in range(4000))
    assert 0.43 <= share["big"] / 4000 <= 0.57, share
    assert all(0.18 <= share[r] / 4000 <= 0.32 for r in ("r1", "r2")), share


def test_removing_a_replica_moves_only_its_keys() -> None:
    rng = random.Random(3)
    r1, r2, r3 = group("r1", "r2", "r3")
    balancer = PrefixAffinity(prefix_chars=64, load_factor=1.25)
    calls = [chat(random_prompt(rng)) for _ in range(2000)]
    before = [balancer.pick([r1, r2, r3], call) for call in calls]
    after = [balancer.pick([r1, r3], call) for call in calls]
    kept = [(b, a) for b, a in zip(before, after, strict=True) if b is not r2]
    stayed = sum(1 for b, a in kept if a is b)
    assert stayed / len(kept) >= 0.95
    # And r2's keys spread over the remaining two.
    moved = Counter(a.deployment_id for b, a in zip(before, after, strict=True) if b is r2 and a)
    assert set(moved) == {"r1", "r3"}
    # Adding it back returns every key to where it was.
    assert [balancer.pick([r1, r2, r3], call) for call in calls] == before


def test_bounded_load_moves_to_the_next_in_rendezvous_order() -> None:
    candidates = group("r1", "r2", "r3")
    balancer = PrefixAffinity(prefix_chars=64, load_factor=1.25)
    call = chat("a popular shared prompt")
    order = sorted(candidates, key=lambda t: rendezvous_score(balancer, call, t), reverse=True)
    first, second, third = order
    assert balancer.pick(candidates, call) is first
    # Outstanding 3, 1, 1: mean 5/3, bound 1.25 * 5/3 + 1 = 3.08 → still first.
    first.state.outstanding, second.state.outstanding, third.state.outstanding = 3, 1, 1
    assert balancer.pick(candidates, call) is first
    # 4, 1, 1: mean 2, bound 3.5 → first is over it; the next in rendezvous order serves.
    first.state.outstanding = 4
    assert balancer.pick(candidates, call) is second
    # 4, 4, 0: mean 8/3, bound 4.33 → the first is within the bound again.
    second.state.outstanding, third.state.outstanding = 4, 0
    assert balancer.pick(candidates, call) is first
    # 7, 7, 0: mean 14/3, bound 6.83 → the first two are over it; the third serves.
    first.state.outstanding = second.state.outstanding = 7
    assert balancer.pick(candidates, call) is third


def test_bounded_load_keeps_shared_prefix_traffic_balanced() -> None:
    candidates = group("r1", "r2", "r3")
    balancer = PrefixAffinity(prefix_chars=64, load_factor=1.25)
    call = chat("everyone sends this same long system prompt")
    # 300 calls in flight at once, all with one key: load still spreads.
    for _ in range(300):
        chosen = balancer.pick(candidates, call)
        assert chosen is not None
        chosen.state.started()
    loads = sorted(t.state.outstanding for t in candidates)
    assert sum(loads) == 300
    # A replica takes one more while at or under 1.25 * mean + 1, so ends at most one above.
    assert loads[-1] <= 1.25 * 100 + 2
    assert loads[0] >= 300 - 2 * (1.25 * 100 + 2)


def test_no_prompt_falls_back_to_least_outstanding() -> None:
    a, b, c = group("a", "b", "c")
    a.state.outstanding, b.state.outstanding, c.state.outstanding = 2, 0, 1
    call = Call(request_id="t", endpoint=Endpoint.CHAT, body={"model": "m"}, model="m")
    assert picks(PrefixAffinity(64, 1.25), [a, b, c], 1, call) == "b"


def test_single_candidate() -> None:
    only = group("a")
    assert PrefixAffinity(64, 1.25).pick(only, CALL) is only[0]


def rendezvous_score(balancer: PrefixAffinity, call: Call, t: Target) -> int:
    """A rank in the rendezvous order, found from outside: how many others ``t`` beats
    in an idle pair (scores depend on the deployment id only)."""
    wins = 0
    for other_id in ("r1", "r2", "r3"):
        if other_id == t.deployment_id:
            continue
        pair = [t, target(other_id)]
        if balancer.pick(pair, call) is t:
            wins += 1
    return wins


# prefix keys


def test_chat_key_joins_roles_and_text_in_order() -> None:
    call = Call(
        request_id="t",
        endpoint=Endpoint.CHAT,
        body={
            "messages": [
                {"role": "system", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Look:"},
                        {"type": "image_url", "image_url": {"url": "data:..."}},
                        {"type": "text", "text": "what is it?"},
                    ],
                },
            ]
        },
    )
    key = prefix_key(call, 4096)
    assert "Be brief." in key and "Look:" in key and "what is it?" in key
    assert "data:" not in key
    assert key.index("system") < key.index("Be brief.") < key.index("user") < key.index("Look:")
    assert prefix_key(call, 16) == key[:16]
    # The role is part of the key: the same text from another role is another prefix.
    swapped = chat("Be brief.")
    assert prefix_key(swapped, 4096) != prefix_key(chat(system="Be brief."), 4096)


@pytest.mark.parametrize(
    ("endpoint", "body", "key"),
    [
        (Endpoint.COMPLETIONS, {"prompt": "Once upon a time"}, "Once upon a time"[:8]),
        (Endpoint.COMPLETIONS, {"prompt": ["first prompt", "second"]}, "first pr"),
        (Endpoint.COMPLETIONS, {"prompt": [101, 2023, 7]}, "101,2023"),
        (Endpoint.EMBEDDINGS, {"input": "embed this text"}, "embed th"),
        (Endpoint.EMBEDDINGS, {"input": [[5, 6], [7]]}, "5,6"),
        (Endpoint.CHAT, {"messages": "not a list"}, ""),
        (Endpoint.COMPLETIONS, {}, ""),
    ],
)
def test_text_keys(endpoint: Endpoint, body: dict[str, Any], key: str) -> None:
    assert prefix_key(Call(request_id="t", endpoint=endpoint, body=body), 8) == key
