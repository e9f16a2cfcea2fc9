"""Who a configured key is, and every limit that binds it: its own and its organisation's."""

from __future__ import annotations

from collections.abc import Iterator

from sluicegate.config.governance import LimitsConfig
from sluicegate.config.schema import Config, StaticKey
from sluicegate.governance.limits import Limit, Unit, Window
from sluicegate.pipeline.call import Principal

__all__ = ["inflight_of", "limits_of", "principal_for"]

# config field → (limit name, unit, window, multiplier to the counter's unit)
_FIELDS: dict[str, tuple[Unit, Window, int]] = {
    "rpm": ("requests", "minute", 1),
    "tpm": ("tokens", "minute", 1),
    "requests_per_day": ("requests", "day", 1),
    "tokens_per_day": ("tokens", "day", 1),
    "tokens_per_month": ("tokens", "month", 1),
    "budget_usd_day": ("usd_micros", "day", 1_000_000),
    "budget_usd_month": ("usd_micros", "month", 1_000_000),
}


def limits_of(scope: str, config: LimitsConfig) -> Iterator[Limit]:
    for field, (unit, window, scale) in _FIELDS.items():
        value = getattr(config, field)
        if value is not None:
            yield Limit(
                scope=scope, name=field, unit=unit, window=window, limit=round(value * scale)
            )


def inflight_of(scope: str, config: LimitsConfig) -> tuple[tuple[str, int], ...]:
    return ((scope, config.max_inflight),) if config.max_inflight is not None else ()


def principal_for(key: StaticKey, config: Config) -> Principal:
    scope = f"key:{key.name}"
    limits = list(limits_of(scope, key.limits))
    inflight = inflight_of(scope, key.limits)
    if key.org is not None:
        org = next(o for o in config.governance.orgs if o.name == key.org)
        limits.extend(limits_of(f"org:{org.name}", org.limits))
        inflight += inflight_of(f"org:{org.name}", org.limits)
    return Principal(name=key.name, org=key.org, limits=tuple(limits), inflight=inflight)
