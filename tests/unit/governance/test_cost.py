"""Cost math: cached, cache-write, reasoning and GPU parts, worked by hand; exact rounding."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from sluicegate.governance.cost import Breakdown, cost, cost_of, gpu_seconds, micro_usd
from sluicegate.governance.pricing import Price, load_catalogue
from sluicegate.governance.usage import UsageDetail

JUNE_2025 = datetime(2025, 6, 20, tzinfo=UTC)
CATALOGUE = load_catalogue(
    overrides={
        "llama-70b": {
            "self_hosted": True,
            "prices": [{"effective_from": "2025-01-01", "gpu_hour_usd": "2.40", "gpus": 2}],
        },
        "shared-llama": {
            "self_hosted": True,
            "prices": [
                {
                    "effective_from": "2025-01-01",
                    "gpu_hour_usd": "2.40",
                    "gpus": 2,
                    "gpu_attribution": "shared",
                }
            ],
        },
    }
)


def _price(model: str, at: datetime = JUNE_2025) -> Price:
    price = CATALOGUE.price_for(model, at)
    assert price is not None
    return price


def test_openai_cached_and_reasoning_tokens_worked_by_hand():
    # gpt-4o-mini: input $0.15, cached $0.075, output $0.60 per 1M tokens, so the
    # micro-dollars are 6,000 * 0.15 + 4,000 * 0.075 + 1,500 * 0.60 + 500 * 0.60.
    usage = UsageDetail.from_openai(
        {
            "prompt_tokens": 10_000,
            "completion_tokens": 2_000,
            "prompt_tokens_details": {"cached_tokens": 4_000},
            "completion_tokens_details": {"reasoning_tokens": 500},
        }
    )
    assert usage is not None
    result = cost(usage, _price("gpt-4o-mini"))
    assert result.breakdown == Breakdown(
        input=Decimal(900), cached_input=Decimal(300), output=Decimal(900), reasoning=Decimal(300)
    )
    assert result.micro_usd == 2_400 and result.usd == Decimal("0.0024") and result.priced
    # Before prompt caching (2024-10-01) cached tokens paid the full input price.
    sept = cost(usage, _price("gpt-4o-mini", datetime(2024, 9, 15, tzinfo=UTC)))
    assert sept.micro_usd == 2_700  # 10,000 * 0.15 + 2,000 * 0.60


def test_reasoning_is_priced_apart_when_the_entry_says_so():
    price = Price.model_validate(
        {"effective_from": "2025-01-01", "input": 1, "output": 4, "reasoning": 2}
    )
    result = cost(
        UsageDetail(prompt_tokens=0, completion_tokens=1_000, reasoning_tokens=600), price
    )
    assert result.breakdown.output == 400 * 4 and result.breakdown.reasoning == 600 * 2
    assert result.micro_usd == 2_800


def test_anthropic_cache_reads_and_writes_worked_by_hand():
    # claude-sonnet-4-5: input $3, cache read $0.30, cache write $3.75, output $15.
    usage = UsageDetail.from_anthropic(
        {
            "input_tokens": 1_200,
            "cache_read_input_tokens": 50_000,
            "cache_creation_input_tokens": 8_000,
            "output_tokens": 700,
        }
    )
    assert usage is not None
    result = cost(usage, _price("claude-sonnet-4-5", datetime(2026, 1, 5, tzinfo=UTC)))
    assert result.breakdown == Breakdown(
        input=Decimal(3_600),
        cached_input=Decimal(15_000),
        cache_write=Decimal(30_000),
        output=Decimal(10_500),
    )
    assert result.micro_usd == 59_100


def test_gpu_seconds_are_charged_by_the_gpu_hour():
    wall_clock = _price("llama-70b")
    seconds = gpu_seconds(90.0, wall_clock)
    assert seconds == 180.0
    # 180 GPU-s * $2.40 / 3600 s = $0.12.
    result = cost(UsageDetail(1_000, completion_tokens=500), wall_clock, seconds)
    assert result.breakdown.gpu == Decimal(120_000) and result.micro_usd == 120_000
    shared = _price("shared-llama")
    assert gpu_seconds(90.0, shared, in_flight=4) == 45.0
    assert gpu_seconds(-1.0, shared, in_flight=0) == 0.0
    assert cost(UsageDetail(), shared, gpu_seconds(90.0, shared, 4)).micro_usd == 30_000


def test_a_division_that_does_not_end_rounds_once_half_up():
    price = Price.model_validate({"effective_from": "2025-01-01", "gpu_hour_usd": 1})
    # $1/h for 1 s = 277.77… µ$; for 0.5 s = 138.88… µ$; 0.1 s (a float) = 27.77… µ$.
    assert cost(UsageDetail(), price, 1).micro_usd == 278
    assert cost(UsageDetail(), price, 0.5).micro_usd == 139
    assert cost(UsageDetail(), price, 0.1).micro_usd == 28
    exponent = cost(UsageDetail(), price, 0.1).breakdown.gpu.as_tuple().exponent
    assert isinstance(exponent, int) and exponent < -40


@pytest.mark.parametrize(("tokens", "micro"), [(1, 1), (2, 1), (3, 2), (5, 3)])
def test_half_a_micro_dollar_rounds_up(tokens, micro):
    price = Price.model_validate({"effective_from": "2025-01-01", "input": 0.5, "output": 0})
    assert cost(UsageDetail(prompt_tokens=tokens), price).micro_usd == micro


def test_many_tiny_calls_sum_exactly():
    rng = random.Random(4)
    price = Price.model_validate(
        {
            "effective_from": "2025-01-01",
            "input": "0.123457",
            "cached_input": "0.0375",
            "cache_write": "0.154321",
            "output": "0.987654",
            "reasoning": "1.111111",
        }
    )
    calls = []
    for _ in range(2_000):
        prompt, completion = rng.randint(0, 40), rng.randint(0, 40)
        cached = rng.randint(0, prompt)
        calls.append(
            UsageDetail.of(
                prompt,
                cached,
                rng.randint(0, prompt - cached),
                completion,
                rng.randint(0, completion),
            )
        )
    costs = [cost(call, price) for call in calls]
    summed_usage = sum(calls, UsageDetail())
    whole = cost(summed_usage, price)
    # The exact parts add up with no drift at all ...
    assert sum((c.breakdown.total for c in costs), Decimal(0)) == whole.breakdown.total
    # ... and the rounded totals drift by at most half a micro-dollar per call.
    drift = abs(sum(c.micro_usd for c in costs) - whole.micro_usd)
    assert drift <= len(calls) / 2
    assert all(isinstance(c.micro_usd, int) for c in costs)


def test_an_unknown_model_costs_none_never_zero():
    assert cost_of(CATALOGUE, "gpt-9", UsageDetail(10, completion_tokens=5), JUNE_2025) is None
    before_launch = datetime(2025, 1, 1, tzinfo=UTC)
    assert cost_of(CATALOGUE, "o3", UsageDetail(10), before_launch) is None


def test_an_unpriced_self_hosted_model_is_counted_in_tokens_only():
    result = cost_of(CATALOGUE, "my-vllm", UsageDetail(10, 0, 0, 5, 0), JUNE_2025, 3.0, True)
    assert result is not None and result.micro_usd == 0 and not result.priced


def test_the_bundled_models_are_priced_at_zero():
    result = cost_of(CATALOGUE, "builtin:smollm2", UsageDetail(100, 0, 0, 50, 0), JUNE_2025, 2.5)
    assert result is not None and result.micro_usd == 0 and result.priced


def test_cost_of_prices_known_models_and_gpu_time():
    usage = UsageDetail(1_000_000, completion_tokens=1_000_000)
    gpt41 = cost_of(CATALOGUE, "gpt-4.1-2025-04-14", usage, JUNE_2025)
    assert gpt41 is not None and gpt41.usd == Decimal(10)
    llama = cost_of(CATALOGUE, "llama-70b", usage, JUNE_2025, gpu_seconds=3600.0)
    assert llama is not None and llama.usd == Decimal("2.4")


def test_the_integer_path_agrees_with_the_exact_one_for_every_shipped_price() -> None:
    catalogue = load_catalogue(None, {})
    rng = random.Random(7)
    prices = [
        p
        for name in catalogue.models
        if (p := catalogue.price_for(name, datetime.now(UTC))) is not None
    ]
    assert prices
    for price in prices:
        for _ in range(200):
            prompt = rng.randint(0, 2_000_000)
            cached = rng.randint(0, prompt)
            write = rng.randint(0, prompt - cached)
            completion = rng.randint(0, 500_000)
            usage = UsageDetail(
                prompt_tokens=prompt,
                cached_tokens=cached,
                cache_write_tokens=write,
                completion_tokens=completion,
                reasoning_tokens=rng.randint(0, completion),
            )
            assert micro_usd(usage, price) == cost(usage, price).micro_usd


def test_prices_beyond_nine_decimals_take_the_exact_path() -> None:
    price = Price(
        effective_from=datetime(2025, 1, 1, tzinfo=UTC).date(),
        input=Decimal("0.0000000001"),
        output=Decimal("1"),
    )
    usage = UsageDetail(prompt_tokens=7_777_777_777, completion_tokens=3)
    assert micro_usd(usage, price) == cost(usage, price).micro_usd == 4
