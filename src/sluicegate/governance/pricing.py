"""The price catalogue: what a model's tokens and GPU time cost, and since when.

The catalogue ships as ``prices.yaml`` beside this module. An operator file may
extend it (models with the same name replace the shipped ones' prices) or,
with ``extends_shipped: false``, replace it; per-model overrides from the config
are applied last, the same way (see ``load_catalogue``). Each model has a list of
prices with an ``effective_from`` date (UTC); the price in effect at a moment is
the entry with the latest ``effective_from`` on or before that moment's UTC date,
and before the first entry there is none.

Prices are USD per 1M tokens: ``input`` (uncached), ``output``, ``cached_input``
(cache reads; defaults to ``input``), ``cache_write`` (defaults to ``input``) and
``reasoning`` (defaults to ``output``). Self-hosted models may add ``gpu_hour_usd``:
each call is charged ``gpu_seconds`` worth of it, where ``gpu_seconds`` is the
call's wall-clock seconds * ``gpus`` (``gpu_attribution: wall_clock``, the
default: a safe upper bound, since batched calls overlap), or that divided by the
number of calls in flight on the deployment (``shared``). See ``cost``.

Lookups are exact on the model name or an alias (dated snapshots are separate
aliases because their prices differ); nothing is guessed from a prefix.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "SHIPPED_CATALOGUE",
    "Catalogue",
    "CatalogueError",
    "ModelPrices",
    "Price",
    "load_catalogue",
    "price_in_effect",
]

SHIPPED_CATALOGUE = Path(__file__).with_name("prices.yaml")

# Per 1M tokens; pydantic reads YAML floats through str(), so 0.15 stays Decimal('0.15').
Rate = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class CatalogueError(ValueError):
    """A price catalogue that cannot be used; the message names the model and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Strict):
    """One price entry of a model, in effect from ``effective_from`` (UTC) on."""

    effective_from: date
    input: Rate | None = None
    output: Rate | None = None
    cached_input: Rate | None = None
    cache_write: Rate | None = None
    reasoning: Rate | None = None
    gpu_hour_usd: Rate | None = None
    gpus: int = Field(1, ge=1)
    gpu_attribution: Literal["wall_clock", "shared"] = "wall_clock"
    source: str | None = Field(None, description="where the numbers come from")

    @model_validator(mode="after")
    def _priced(self) -> Price:
        # Token prices may be left out only where GPU time is what is charged.
        if self.gpu_hour_usd is None:
            missing = [name for name in ("input", "output") if getattr(self, name) is None]
            if missing:
                raise ValueError(f"{' and '.join(missing)} required unless gpu_hour_usd is set")
        return self

    @property
    def input_rate(self) -> Decimal:
        return self.input if self.input is not None else Decimal(0)

    @property
    def output_rate(self) -> Decimal:
        return self.output if self.output is not None else Decimal(0)

    @property
    def cached_input_rate(self) -> Decimal:
        return self.cached_input if self.cached_input is not None else self.input_rate

    @property
    def cache_write_rate(self) -> Decimal:
        return self.cache_write if self.cache_write is not None else self.input_rate

    @property
    def reasoning_rate(self) -> Decimal:
        return self.reasoning if self.reasoning is not None else self.output_rate


class ModelPrices(_Strict):
    """A model's price history, and the other names it is served under."""

    aliases: list[str] = []
    self_hosted: bool = False
    prices: list[Price] = Field(min_length=1)

    @model_validator(mode="after")
    def _dated(self) -> ModelPrices:
        days = [entry.effective_from for entry in self.prices]
        if len(set(days)) != len(days):
            raise ValueError("two price entries share an effective_from date")
        return self


class _CatalogueFile(_Strict):
    version: Literal[1] = 1
    extends_shipped: bool = True
    models: dict[str, ModelPrices] = {}


def price_in_effect(prices: Sequence[Price], at: datetime) -> Price | None:
    """The entry of ``prices`` (sorted by date) in effect at ``at``; naive means UTC."""
    day = (at.astimezone(UTC) if at.tzinfo is not None else at).date()
    i = bisect_right(prices, day, key=lambda entry: entry.effective_from)
    return prices[i - 1] if i else None


class Catalogue:
    """Model name or alias → price history; built once, read on every call."""

    __slots__ = ("_by_name", "_models")

    def __init__(self, models: Mapping[str, ModelPrices]) -> None:
        self._models = dict(models)
        self._by_name: dict[str, tuple[str, list[Price]]] = {}
        for name, model in self._models.items():
            history = sorted(model.prices, key=lambda entry: entry.effective_from)
            for key in (name, *model.aliases):
                owner = self._by_name.get(key)
                if owner is not None and owner[0] != name:
                    raise CatalogueError(
                        f"models.{name}.aliases: '{key}' already names model '{owner[0]}'"
                    )
                self._by_name[key] = (name, history)

    def __contains__(self, model: object) -> bool:
        return model in self._by_name

    @property
    def models(self) -> Mapping[str, ModelPrices]:
        return self._models

    def canonical(self, model: str) -> str | None:
        """The catalogue's own name for ``model`` (itself or the model it is an alias of)."""
        found = self._by_name.get(model)
        return found[0] if found is not None else None

    def is_self_hosted(self, model: str) -> bool:
        found = self._by_name.get(model)
        return found is not None and self._models[found[0]].self_hosted

    def price_for(self, model: str, at: datetime) -> Price | None:
        """The price of ``model`` in effect at ``at``; None if unknown or not yet priced."""
        found = self._by_name.get(model)
        return price_in_effect(found[1], at) if found is not None else None


def load_catalogue(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Catalogue:
    """The shipped catalogue, extended or replaced by ``path``, then ``overrides`` by model.

    ``overrides`` maps a model name to an entry shaped like one in the file
    (``aliases``, ``self_hosted``, ``prices``). An entry from the operator file or
    the overrides replaces the model's whole price history; ``aliases`` and
    ``self_hosted`` carry over from the entry it replaces unless it sets them.
    """
    models: dict[str, ModelPrices] = {}
    operator = _read(Path(path)) if path is not None else None
    if operator is None or operator.extends_shipped:
        models.update(_read(SHIPPED_CATALOGUE).models)
    if operator is not None:
        _replace(models, operator.models)
    if overrides:
        origin = "config pricing overrides"
        _replace(models, _validate(_CatalogueFile, {"models": dict(overrides)}, origin).models)
    return Catalogue(models)


def _replace(models: dict[str, ModelPrices], replacements: Mapping[str, ModelPrices]) -> None:
    for name, entry in replacements.items():
        before = models.get(name)
        if before is not None:
            # A replacement that leaves these out keeps the names it was served under.
            kept = {
                field: getattr(before, field)
                for field in ("aliases", "self_hosted")
                if field not in entry.model_fields_set
            }
            entry = entry.model_copy(update=kept) if kept else entry
        models[name] = entry


def _read(file: Path) -> _CatalogueFile:
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogueError(f"{file}: cannot read the price catalogue ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{file}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise CatalogueError(f"{file}: the top level must be a mapping with a 'models' mapping")
    return _validate(_CatalogueFile, raw, str(file))


def _validate(schema: type[_CatalogueFile], raw: Any, origin: str) -> _CatalogueFile:
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"  - {'.'.join(str(step) for step in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise CatalogueError(
            f"{origin}: {exc.error_count()} problem(s):\n" + "\n".join(problems)
        ) from exc
