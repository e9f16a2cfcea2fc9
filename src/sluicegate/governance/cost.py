"""What one call cost, in integer micro-dollars, computed without float drift.

A price is USD per 1M tokens, so ``tokens * price`` is already micro-dollars; the
token parts are exact ``Decimal`` products. GPU time is ``gpu_seconds *
gpu_hour_usd / 3600`` USD, computed at 50 significant digits (the only division;
its error is far below a nano-dollar). The parts are kept exact in the breakdown
and the total is rounded once, half up, to whole micro-dollars. So rounding
summed per-call totals drifts from the total of the summed usage by at most half
a micro-dollar per call, while summing the exact breakdowns does not drift at all.

How usage maps to prices (see ``governance.usage`` for the wire dialects):

    input        = (prompt - cached - cache_write) * input
    cached_input = cached * cached_input            (cache reads)
    cache_write  = cache_write * cache_write
    output       = (completion - reasoning) * output
    reasoning    = reasoning * reasoning            (defaults to the output price)
    gpu          = gpu_seconds * gpu_hour_usd / 3600 * 1e6

``cost_of`` adds what the catalogue knows: a model without a price costs
``None`` (unknown), never 0, so an unpriced model cannot pass a budget as free.
Self-hosted models are the exception: without a price entry they are accounted
in tokens only, cost 0 and ``priced=False``; an entry with ``gpu_hour_usd``
charges their GPU time (plus any token prices the operator set).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Context, Decimal

from sluicegate.governance.pricing import Catalogue, Price
from sluicegate.governance.usage import UsageDetail

__all__ = ["Breakdown", "Cost", "cost", "cost_of", "gpu_seconds", "micro_usd"]

_EXACT = Context(prec=50, rounding=ROUND_HALF_UP)
_ZERO = Decimal(0)
_ONE = Decimal(1)
_MICRO_PER_USD = Decimal(1_000_000)
_SECONDS_PER_HOUR = Decimal(3600)


@dataclass(frozen=True, slots=True)
class Breakdown:
    """Each part of a cost in exact (unrounded) micro-dollars."""

    input: Decimal = _ZERO
    cached_input: Decimal = _ZERO
    cache_write: Decimal = _ZERO
    output: Decimal = _ZERO
    reasoning: Decimal = _ZERO
    gpu: Decimal = _ZERO

    @property
    def total(self) -> Decimal:
        return _EXACT.add(
            _EXACT.add(_EXACT.add(self.input, self.cached_input), self.cache_write),
            _EXACT.add(_EXACT.add(self.output, self.reasoning), self.gpu),
        )


@dataclass(frozen=True, slots=True)
class Cost:
    """A call's cost: ``micro_usd`` rounded once, half up; ``priced`` False if only counted."""

    micro_usd: int
    breakdown: Breakdown
    priced: bool = True

    @property
    def usd(self) -> Decimal:
        return Decimal(self.micro_usd) / _MICRO_PER_USD


_UNPRICED = Cost(0, Breakdown(), priced=False)


def _tokens(count: int, rate: Decimal) -> Decimal:
    return _EXACT.multiply(Decimal(count), rate)


def cost(usage: UsageDetail, price: Price, gpu_seconds: float = 0) -> Cost:
    """The cost of ``usage`` (and ``gpu_seconds`` of GPU time) at ``price``."""
    gpu = _ZERO
    if price.gpu_hour_usd is not None and gpu_seconds > 0:
        # repr() is the shortest decimal that reads back as the same float: no binary noise.
        seconds = Decimal(repr(float(gpu_seconds)))
        usd = _EXACT.divide(_EXACT.multiply(seconds, price.gpu_hour_usd), _SECONDS_PER_HOUR)
        gpu = _EXACT.multiply(usd, _MICRO_PER_USD)
    parts = Breakdown(
        input=_tokens(max(usage.uncached_input_tokens, 0), price.input_rate),
        cached_input=_tokens(usage.cached_tokens, price.cached_input_rate),
        cache_write=_tokens(usage.cache_write_tokens, price.cache_write_rate),
        output=_tokens(max(usage.visible_output_tokens, 0), price.output_rate),
        reasoning=_tokens(usage.reasoning_tokens, price.reasoning_rate),
        gpu=gpu,
    )
    return Cost(int(parts.total.quantize(_ONE, rounding=ROUND_HALF_UP)), parts)


#: Token rates scaled to whole units of 10**-9 micro-dollars: exact for any price
#: given to nine decimals (per million tokens), which is every real price list.
_SCALE = 10**9
_HALF = _SCALE // 2
_scaled: dict[int, tuple[Price, tuple[int, int, int, int, int] | None]] = {}


def _integer_rates(price: Price) -> tuple[int, int, int, int, int] | None:
    entry = _scaled.get(id(price))
    if entry is not None and entry[0] is price:
        return entry[1]
    rates = (
        price.input_rate,
        price.cached_input_rate,
        price.cache_write_rate,
        price.output_rate,
        price.reasoning_rate,
    )
    a, b, c, d, e = (rate * _SCALE for rate in rates)
    ints: tuple[int, int, int, int, int] | None = None
    if all(value == value.to_integral_value() for value in (a, b, c, d, e)):
        ints = (int(a), int(b), int(c), int(d), int(e))
    _scaled[id(price)] = (price, ints)
    return ints


def micro_usd(usage: UsageDetail, price: Price, gpu_seconds: float = 0) -> int:
    """``cost(usage, price, gpu_seconds).micro_usd``, in integer arithmetic when the
    price allows it (the request path prices every call; Decimal costs ~10x more)."""
    rates = _integer_rates(price)
    if rates is None or (price.gpu_hour_usd is not None and gpu_seconds > 0):
        return cost(usage, price, gpu_seconds).micro_usd
    total = (
        max(usage.uncached_input_tokens, 0) * rates[0]
        + usage.cached_tokens * rates[1]
        + usage.cache_write_tokens * rates[2]
        + max(usage.visible_output_tokens, 0) * rates[3]
        + usage.reasoning_tokens * rates[4]
    )
    if total < 0:  # negative counts are nonsense; let the exact path say what they cost
        return cost(usage, price, gpu_seconds).micro_usd
    return (total + _HALF) // _SCALE


def gpu_seconds(wall_seconds: float, price: Price, in_flight: int = 1) -> float:
    """GPU-seconds a call is charged: its wall-clock * ``gpus``, shared if so configured.

    ``in_flight`` is the number of calls the deployment was serving, this one
    included; it only matters for ``gpu_attribution: shared``.
    """
    seconds = max(wall_seconds, 0.0) * price.gpus
    if price.gpu_attribution == "shared":
        seconds /= max(in_flight, 1)
    return seconds


def cost_of(
    catalogue: Catalogue,
    model: str,
    usage: UsageDetail,
    at: datetime,
    gpu_seconds: float = 0,
    self_hosted: bool = False,
) -> Cost | None:
    """The cost of a call to ``model`` at ``at``; None when the model has no known price.

    ``self_hosted`` is the deployment's flag; a catalogue entry marked
    ``self_hosted`` counts too.
    """
    price = catalogue.price_for(model, at)
    local = self_hosted or catalogue.is_self_hosted(model)
    if price is None:
        return _UNPRICED if local else None
    return cost(usage, price, gpu_seconds)
