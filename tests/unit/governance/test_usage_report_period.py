"""Report periods: the named forms, their UTC bounds and labels, and refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from sluicegate.errors import InvalidRequest
from sluicegate.governance.usage_report import Period, format_table, parse_period

NOW = datetime(2026, 3, 5, 10, 7, 37, 250_000, tzinfo=UTC)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type, misc]


@pytest.mark.parametrize(
    ("text", "start", "end", "label"),
    [
        ("day", utc(2026, 3, 5), utc(2026, 3, 6), "2026-03-05"),
        ("month", utc(2026, 3, 1), utc(2026, 4, 1), "2026-03"),
        ("2026-02", utc(2026, 2, 1), utc(2026, 3, 1), "2026-02"),
        ("2025-12", utc(2025, 12, 1), utc(2026, 1, 1), "2025-12"),
        ("2024-02-29", utc(2024, 2, 29), utc(2024, 3, 1), "2024-02-29"),
        ("2025-12-31", utc(2025, 12, 31), utc(2026, 1, 1), "2025-12-31"),
        ("last-1d", NOW - timedelta(days=1), NOW, "last-1d"),
        ("last-30d", NOW - timedelta(days=30), NOW, "last-30d"),
        ("last-366d", NOW - timedelta(days=366), NOW, "last-366d"),
    ],
)
def test_forms(text: str, start: datetime, end: datetime, label: str) -> None:
    assert parse_period(text, NOW) == Period(start, end, label)


def test_month_in_december_ends_next_year() -> None:
    period = parse_period("month", utc(2026, 12, 31, 23, 59, 59))
    assert (period.start, period.end) == (utc(2026, 12, 1), utc(2027, 1, 1))


def test_now_in_another_zone_is_read_in_utc() -> None:
    # 01:00 on the 1st in UTC+2 is still the last day of the previous month in UTC.
    now = datetime(2026, 4, 1, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    assert parse_period("day", now).label == "2026-03-31"
    assert parse_period("month", now).start == utc(2026, 3, 1)


def test_naive_now_is_utc() -> None:
    assert parse_period("day", datetime(2026, 3, 5, 23, 0)).start == utc(2026, 3, 5)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "week",
        "Day",
        "2026-13",
        "2026-00",
        "2026-02-30",
        "2026-3",
        "2026-03-5",
        "0000-01",
        "last-0d",
        "last-367d",
        "last-1000d",
        "last-d",
        "last-7",
        "last-7h",
        " 2026-03",
        "2026-03-05T00:00",
    ],
)
def test_bad_periods_name_the_accepted_forms(text: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_period(text, NOW)
    assert raised.value.param == "period"
    assert raised.value.status == 400
    for form in ("day", "month", "YYYY-MM", "YYYY-MM-DD", "last-Nd"):
        assert form in raised.value.message


def test_format_table_aligns_columns() -> None:
    figures = {
        "requests": 3,
        "ok": 2,
        "refused": 1,
        "failed": 0,
        "failed_over": 0,
        "prompt_tokens": 1200,
        "completion_tokens": 30,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": "0.001234",
        "cost_micros": 1234,
        "gpu_seconds": 0.0,
    }
    report = {
        "object": "usage_report",
        "period": {"label": "2026-03", "start": "2026-03-01T00:00:00Z", "end": "x"},
        "org": "acme",
        "key_id": None,
        "totals": figures,
        "by_model": [{"model": "gpt-4o-mini", **figures}, {"model": None, **figures}],
        "by_key": [],
    }
    text = format_table(report)
    lines = text.splitlines()
    assert lines[0].startswith("Usage 2026-03 (2026-03-01T00:00:00Z") and "org=acme" in lines[0]
    table = lines[2:]
    assert table[0].split() == [
        "model",
        "requests",
        "ok",
        "refused",
        "failed",
        "prompt",
        "completion",
        "cost",
        "USD",
    ]
    assert table[2].split() == ["gpt-4o-mini", "3", "2", "1", "0", "1200", "30", "0.001234"]
    assert table[3].split()[0] == "-"
    assert table[-1].split()[0] == "total"
    assert len({len(line) for line in table}) == 1  # every line the same width


def test_format_table_without_usage() -> None:
    empty: dict[str, Any] = dict.fromkeys(("requests", "ok", "refused", "failed"), 0)
    empty |= {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": "0.000000"}
    report = {
        "period": {"label": "day", "start": "a", "end": "b"},
        "totals": empty,
        "by_model": [],
    }
    assert "(no usage)" in format_table(report)
