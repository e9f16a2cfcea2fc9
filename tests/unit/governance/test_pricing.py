"""The price catalogue: the shipped file, operator files, overrides, validation and dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from sluicegate.governance.pricing import (
    SHIPPED_CATALOGUE,
    CatalogueError,
    load_catalogue,
)

JUNE_2025 = datetime(2025, 6, 20, tzinfo=UTC)


def test_the_shipped_catalogue_loads_and_covers_the_common_models():
    catalogue = load_catalogue()
    for model in (
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "o3",
        "o4-mini",
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "claude-opus-4-1",
        "smollm2-135m",
        "minilm-l6",
    ):
        assert model in catalogue, model
    sonnet = catalogue.price_for("claude-sonnet-4-5", datetime(2026, 1, 5, tzinfo=UTC))
    assert sonnet is not None
    assert (sonnet.input, sonnet.cached_input, sonnet.cache_write, sonnet.output) == (
        Decimal("3"),
        Decimal("0.3"),
        Decimal("3.75"),
        Decimal("15"),
    )
    assert sonnet.reasoning is None and sonnet.reasoning_rate == Decimal("15")


def test_the_shipped_file_says_its_prices_are_list_prices_to_check():
    text = SHIPPED_CATALOGUE.read_text(encoding="utf-8")
    assert "LIST prices" in text and "operator should check" in text


def test_bundled_models_are_free_self_hosted_and_found_by_their_builtin_path():
    catalogue = load_catalogue()
    for name, alias in (("smollm2-135m", "builtin:smollm2"), ("minilm-l6", "builtin:minilm-l6")):
        assert catalogue.is_self_hosted(alias)
        assert catalogue.canonical(alias) == name
        price = catalogue.price_for(alias, JUNE_2025)
        assert price is not None
        assert (price.input, price.output, price.gpu_hour_usd) == (Decimal(0),) * 3


def test_a_price_change_mid_month_picks_the_entry_in_effect():
    catalogue = load_catalogue()
    before = catalogue.price_for("o3", datetime(2025, 6, 9, 23, 59, 59, tzinfo=UTC))
    after = catalogue.price_for("o3", datetime(2025, 6, 10, 0, 0, tzinfo=UTC))
    assert before is not None and before.input == Decimal("10")
    assert after is not None and after.input == Decimal("2")
    # 01:00 at UTC+3 is still the 9th in UTC.
    east = datetime(2025, 6, 10, 1, 0, tzinfo=timezone(timedelta(hours=3)))
    assert catalogue.price_for("o3", east) == before
    # A naive datetime is read as UTC.
    assert catalogue.price_for("o3", datetime(2025, 6, 10)) == after
    # Aliases share the history.
    assert catalogue.price_for("o3-2025-04-16", datetime(2025, 6, 10, tzinfo=UTC)) == after


def test_before_the_first_entry_there_is_no_price():
    catalogue = load_catalogue()
    assert catalogue.price_for("o3", datetime(2025, 4, 15, 23, 59, tzinfo=UTC)) is None
    assert catalogue.price_for("o3", datetime(2025, 4, 16, tzinfo=UTC)) is not None


def test_an_unknown_model_has_no_price_and_names_are_exact():
    catalogue = load_catalogue()
    assert catalogue.price_for("gpt-9", JUNE_2025) is None
    assert catalogue.price_for("openai/gpt-4o", JUNE_2025) is None
    assert catalogue.price_for("GPT-4O", JUNE_2025) is None
    assert catalogue.canonical("gpt-9") is None
    assert not catalogue.is_self_hosted("gpt-9")


def test_an_override_from_config_replaces_one_models_prices_and_keeps_its_aliases():
    catalogue = load_catalogue(
        overrides={
            "gpt-4o-mini": {
                "prices": [{"effective_from": "2025-01-01", "input": 0.1, "output": 0.5}]
            }
        }
    )
    price = catalogue.price_for("gpt-4o-mini-2024-07-18", JUNE_2025)
    assert price is not None
    assert (price.input, price.output, price.cached_input_rate) == (
        Decimal("0.1"),
        Decimal("0.5"),
        Decimal("0.1"),
    )
    # The whole history is replaced: nothing before the override's first date.
    assert catalogue.price_for("gpt-4o-mini", datetime(2024, 12, 31, tzinfo=UTC)) is None
    # Other models are untouched.
    gpt41 = catalogue.price_for("gpt-4.1", JUNE_2025)
    assert gpt41 is not None and gpt41.input == Decimal("2")


def test_an_override_can_add_a_self_hosted_model_priced_by_the_gpu_hour():
    catalogue = load_catalogue(
        overrides={
            "llama-70b": {
                "aliases": ["meta-llama/Llama-3.3-70B-Instruct"],
                "self_hosted": True,
                "prices": [{"effective_from": date(2025, 1, 1), "gpu_hour_usd": "2.40", "gpus": 2}],
            }
        }
    )
    price = catalogue.price_for("meta-llama/Llama-3.3-70B-Instruct", JUNE_2025)
    assert price is not None and price.gpu_hour_usd == Decimal("2.40") and price.gpus == 2
    assert price.input_rate == 0 and price.output_rate == 0
    assert catalogue.is_self_hosted("llama-70b")


def _write(tmp_path: Path, data: object) -> Path:
    file = tmp_path / "prices.yaml"
    file.write_text(yaml.safe_dump(data), encoding="utf-8")
    return file


def test_an_operator_file_extends_or_replaces_the_shipped_catalogue(tmp_path):
    entry = {"prices": [{"effective_from": "2025-01-01", "input": 1, "output": 2}]}
    extended = load_catalogue(_write(tmp_path, {"version": 1, "models": {"house-model": entry}}))
    assert "house-model" in extended and "gpt-4o" in extended
    replaced = load_catalogue(
        _write(tmp_path, {"extends_shipped": False, "models": {"house-model": entry}})
    )
    assert "house-model" in replaced and "gpt-4o" not in replaced


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        ({"effective_from": "2025-01-01", "input": -1, "output": 2}, "prices.0.input"),
        ({"effective_from": "2025-01-01", "input": 1}, "output required"),
        ({"effective_from": "2025-01-01", "input": 1, "output": 2, "ouput": 3}, "prices.0.ouput"),
        ({"effective_from": "soon", "input": 1, "output": 2}, "prices.0.effective_from"),
        ({"effective_from": "2025-01-01", "input": "nan", "output": 2}, "prices.0.input"),
    ],
)
def test_a_bad_entry_is_refused_naming_the_model_and_the_field(entry, where):
    with pytest.raises(CatalogueError) as info:
        load_catalogue(overrides={"gpt-x": {"prices": [entry]}})
    message = str(info.value)
    assert "models.gpt-x." in message and where in message


def test_a_bad_operator_file_names_the_file_model_and_field(tmp_path):
    file = _write(tmp_path, {"models": {"m": {"prices": [{"effective_from": "2025-01-01"}]}}})
    with pytest.raises(CatalogueError, match=r"(?s)prices\.yaml: 1 problem.*models\.m\.prices\.0"):
        load_catalogue(file)
    file.write_text("models: [", encoding="utf-8")
    with pytest.raises(CatalogueError, match="not valid YAML"):
        load_catalogue(file)
    with pytest.raises(CatalogueError, match="cannot read"):
        load_catalogue(tmp_path / "missing.yaml")


def test_two_entries_on_one_date_and_one_alias_for_two_models_are_refused():
    same_day = {"effective_from": "2025-01-01", "input": 1, "output": 2}
    with pytest.raises(CatalogueError, match=r"models\.m: .*share an effective_from"):
        load_catalogue(overrides={"m": {"prices": [same_day, same_day]}})
    with pytest.raises(CatalogueError, match="'gpt-4o-mini' already names model"):
        load_catalogue(overrides={"m": {"aliases": ["gpt-4o-mini"], "prices": [same_day]}})


def test_entries_may_be_listed_in_any_order():
    catalogue = load_catalogue(
        overrides={
            "m": {
                "prices": [
                    {"effective_from": "2025-03-01", "input": 3, "output": 3},
                    {"effective_from": "2025-01-01", "input": 1, "output": 1},
                ]
            }
        }
    )
    feb = catalogue.price_for("m", datetime(2025, 2, 1, tzinfo=UTC))
    assert feb is not None and feb.input == 1
