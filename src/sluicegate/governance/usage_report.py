"""Usage reports: usage events summed over a period, by model and by key.

The sums run in SQL with nothing but ``COUNT``, ``SUM``, ``CASE`` and
``COALESCE``, so SQLite and PostgreSQL give the same report; ordering and
rounding happen here, in Python, for the same reason (the two order NULLs and
add floats differently). Costs stay integer micro-dollars until they are shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, case, func, select

from sluicegate.errors import InvalidRequest
from sluicegate.storage.tables import usage_events

__all__ = ["Period", "format_table", "parse_period", "usage_report"]

OUTCOMES = ("ok", "refused", "failed", "failed_over")
TOKENS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")
PERIOD_FORMS = "day, month, YYYY-MM, YYYY-MM-DD or last-Nd (N from 1 to 366)"

_MONTH = re.compile(r"(\d{4})-(\d{2})")
_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_LAST = re.compile(r"last-(\d{1,3})d")


@dataclass(frozen=True, slots=True)
class Period:
    """A UTC time range, ``start`` included and ``end`` excluded."""

    start: datetime
    end: datetime
    label: str


def _next_month(start: datetime) -> datetime:
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def _bad(period: str) -> InvalidRequest:
    return InvalidRequest(f"period {period!r} is not one of: {PERIOD_FORMS}", param="period")


def parse_period(period: str, now: datetime) -> Period:
    """The range ``period`` names, relative to ``now`` (naive ``now`` is read as UTC)."""
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return Period(today, today + timedelta(days=1), today.strftime("%Y-%m-%d"))
    if period == "month":
        start = today.replace(day=1)
        return Period(start, _next_month(start), start.strftime("%Y-%m"))
    try:
        if match := _DAY.fullmatch(period):
            year, month, day = (int(part) for part in match.groups())
            start = datetime(year, month, day, tzinfo=UTC)
            return Period(start, start + timedelta(days=1), period)
        if match := _MONTH.fullmatch(period):
            start = datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)
            return Period(start, _next_month(start), period)
    except ValueError:  # month 13, 30 February, year 0...
        raise _bad(period) from None
    if (match := _LAST.fullmatch(period)) and 1 <= int(match[1]) <= 366:
        return Period(now - timedelta(days=int(match[1])), now, f"last-{int(match[1])}d")
    raise _bad(period)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _usd(micros: int) -> str:
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(micros), 1_000_000)
    return f"{sign}{whole}.{fraction:06d}"


def _sums() -> list[ColumnElement[Any]]:
    c = usage_events.c
    columns: list[ColumnElement[Any]] = [func.count().label("requests")]
    columns += [func.sum(case((c.outcome == name, 1), else_=0)).label(name) for name in OUTCOMES]
    columns += [func.sum(c[name]).label(name) for name in TOKENS]
    columns.append(func.sum(c.cost_micros).label("cost_micros"))
    columns.append(func.sum(c.gpu_seconds).label("gpu_seconds"))
    return columns


def _figures(row: Any) -> dict[str, Any]:
    # SUM over no rows is NULL, and PostgreSQL sums BIGINT as NUMERIC (a Decimal).
    figures: dict[str, Any] = {"requests": int(row.requests or 0)}
    for name in (*OUTCOMES, *TOKENS):
        figures[name] = int(getattr(row, name) or 0)
    micros = int(row.cost_micros or 0)
    figures["cost_usd"] = _usd(micros)
    figures["cost_micros"] = micros
    figures["gpu_seconds"] = round(float(row.gpu_seconds or 0.0), 6)
    return figures


def _ranked(rows: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: (-row["cost_micros"], -row["requests"], row[name] or ""))


def usage_report(
    connection: Connection,
    *,
    period: Period,
    org: str | None = None,
    key_id: str | None = None,
) -> dict[str, Any]:
    """Totals, per-model and per-key figures for ``period``, optionally one org or key."""
    c = usage_events.c
    where = [c.ts >= period.start.timestamp(), c.ts < period.end.timestamp()]
    if org is not None:
        where.append(c.org == org)
    if key_id is not None:
        where.append(c.key_id == key_id)

    totals = connection.execute(select(*_sums()).where(*where)).one()
    model = func.coalesce(c.served_model, c.model).label("model")
    by_model = connection.execute(select(model, *_sums()).where(*where).group_by(model))
    by_key = connection.execute(select(c.key_id, *_sums()).where(*where).group_by(c.key_id))
    return {
        "object": "usage_report",
        "period": {"label": period.label, "start": _iso(period.start), "end": _iso(period.end)},
        "org": org,
        "key_id": key_id,
        "totals": _figures(totals),
        "by_model": _ranked([{"model": row.model, **_figures(row)} for row in by_model], "model"),
        "by_key": _ranked([{"key_id": row.key_id, **_figures(row)} for row in by_key], "key_id"),
    }


_COLUMNS = (
    ("model", "model"),
    ("requests", "requests"),
    ("ok", "ok"),
    ("refused", "refused"),
    ("failed", "failed"),
    ("prompt", "prompt_tokens"),
    ("completion", "completion_tokens"),
    ("cost USD", "cost_usd"),
)


def format_table(report: dict[str, Any]) -> str:
    """The report as aligned plain text: a heading, one row per model, then the totals."""
    period = report["period"]
    heading = f"Usage {period['label']} ({period['start']} .. {period['end']})"
    if report.get("org") is not None:
        heading += f"  org={report['org']}"
    if report.get("key_id") is not None:
        heading += f"  key={report['key_id']}"

    rows = [[title for title, _ in _COLUMNS]]
    for entry in report["by_model"]:
        rows.append([str(entry[name] if entry[name] is not None else "-") for _, name in _COLUMNS])
    totals = {"model": "total", **report["totals"]}
    rows.append([str(totals[name]) for _, name in _COLUMNS])

    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]

    def line(cells: list[str]) -> str:
        # The model name reads left to right; numbers line up on the right.
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join((first, *rest))

    rule = "-" * len(line(rows[0]))
    body = [line(row) for row in rows[1:-1]] or ["(no usage)"]
    return "\n".join([heading, "", line(rows[0]), rule, *body, rule, line(rows[-1])]) + "\n"
