"""Grafana dashboard JSON from short panel lists: the building blocks of build_dashboards.py.

A panel is its title, unit and queries; ``build`` adds what Grafana wants around
them (ids, grid positions, the datasource variable, legends), ``dumps`` writes the
JSON compactly (one line per object where it fits), and the PromQL helpers write
the few query shapes the dashboards use.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DS = {"type": "prometheus", "uid": "${datasource}"}
R = "$__rate_interval"
SCHEMA_VERSION = 39
WIDTH = 24  # Grafana's grid

Json = dict[str, Any]


Target = tuple[str, str]  # (PromQL, legend)
States = Mapping[str, tuple[str, str]]  # value: (text, colour)


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[Target, ...]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries, stat, bargauge, state-timeline
    w: int = 12
    h: int = 8
    about: str = ""
    stack: bool = False
    steps: tuple[tuple[float, str], ...] = ()  # stat: (value, colour) above green
    states: States = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    title: str


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    about: str
    variables: dict[str, tuple[str, str]]  # name: (label, label_values(...) query)
    panels: list[Panel | Row]


def ts(title: str, unit: str, query: str | list[Target], legend: str = "", **opts: Any) -> Panel:
    """A time series; ``query`` is one PromQL (with ``legend``) or a list of (PromQL, legend)."""
    targets = tuple(query) if isinstance(query, list) else ((query, legend),)
    return Panel(title, targets, unit, **opts)


def stat(title: str, unit: str, query: str, **opts: Any) -> Panel:
    return Panel(title, ((query, ""),), unit, "stat", w=6, h=4, **opts)


def bars(title: str, unit: str, query: str, legend: str, **opts: Any) -> Panel:
    return Panel(title, ((query, legend),), unit, "bargauge", **opts)


def states(title: str, query: str, legend: str, states: States, **opts: Any) -> Panel:
    return Panel(title, ((query, legend),), kind="state-timeline", w=24, states=states, **opts)


def _series(metric: str, sel: str) -> str:
    return f"{metric}{{{sel}}}" if sel else metric


def rate(metric: str, by: str = "", sel: str = "", window: str = R, fn: str = "rate") -> str:
    """Summed per-second rate (``by``: the labels kept)."""
    group = f"sum by ({by}) " if by else "sum"
    return f"{group}({fn}({_series(metric, sel)}[{window}]))"


def increase(metric: str, by: str, sel: str) -> str:
    """Summed increase over the dashboard's time range."""
    return rate(metric, by, sel, "$__range", "increase")


def agg(metric: str, by: str = "", sel: str = "", op: str = "sum") -> str:
    return f"{op} by ({by}) ({_series(metric, sel)})" if by else f"{op}({_series(metric, sel)})"


def quantile(q: float, bucket: str, by: str, sel: str = "") -> str:
    return f"histogram_quantile({q}, {rate(bucket, f'{by}, le' if by else 'le', sel)})"


def five_xx_share(by: str, sel: str) -> str:
    """5xx share of calls; ``or … * 0`` gives 0, not no data, while there is no 5xx."""
    every = rate("sluicegate_requests_total", by, sel)
    errors = rate("sluicegate_requests_total", by, f'{sel}, status=~"5.."')
    return f"({errors} or {every} * 0) / {every}"


def _panel(panel: Panel, ident: int, x: int, y: int) -> Json:
    defaults: Json = {"unit": panel.unit}
    options: Json
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "fillOpacity": 10,
            "showPoints": "never",
            "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"},
        }
        options = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    else:
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
        if panel.kind == "stat":
            options |= {"colorMode": "value", "graphMode": "area", "textMode": "auto"}
        elif panel.kind == "bargauge":
            options |= {"displayMode": "gradient", "orientation": "horizontal"}
        else:
            options = {"showValue": "never", "mergeValues": True, "rowHeight": 0.8}
    steps: list[Json] = [{"color": "green", "value": None}]
    steps += [{"color": colour, "value": value} for value, colour in panel.steps]
    defaults["thresholds"] = {"mode": "absolute", "steps": steps}
    defaults["color"] = {"mode": "thresholds" if panel.kind == "stat" else "palette-classic"}
    if panel.states:
        defaults["mappings"] = [
            {
                "type": "value",
                "options": {
                    value: {"text": text, "color": colour, "index": index}
                    for index, (value, (text, colour)) in enumerate(panel.states.items())
                },
            }
        ]
        defaults["color"] = {"mode": "fixed"}
    instant = panel.kind == "bargauge"
    result: Json = {
        "id": ident,
        "type": panel.kind,
        "title": panel.title,
        "datasource": DS,
        "gridPos": {"h": panel.h, "w": panel.w, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": [
            {
                "datasource": DS,
                "refId": chr(ord("A") + index),
                "expr": expr,
                "legendFormat": legend or "__auto",
                "range": not instant,
                "instant": instant,
            }
            for index, (expr, legend) in enumerate(panel.targets)
        ],
    }
    if panel.about:
        result["description"] = panel.about
    return result


def _variable(name: str, label: str, query: str) -> Json:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": name},
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def build(dashboard: Dashboard) -> Json:
    panels: list[Json] = []
    x = y = row_height = 0
    for ident, item in enumerate(dashboard.panels, start=1):
        if isinstance(item, Row):
            y += row_height
            panels.append(
                {
                    "id": ident,
                    "type": "row",
                    "title": item.title,
                    "collapsed": False,
                    "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": y},
                    "panels": [],
                }
            )
            x, y, row_height = 0, y + 1, 0
            continue
        if x + item.w > WIDTH:
            x, y, row_height = 0, y + row_height, 0
        panels.append(_panel(item, ident, x, y))
        x += item.w
        row_height = max(row_height, item.h)
    datasource: Json = {
        "type": "datasource",
        "name": "datasource",
        "label": "Prometheus",
        "query": "prometheus",
        "current": {},
        "refresh": 1,
        "hide": 0,
    }
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.about,
        "tags": ["sluicegate"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "links": [
            {
                "type": "dashboards",
                "title": "Sluicegate",
                "tags": ["sluicegate"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "templating": {
            "list": [datasource, *(_variable(n, *v) for n, v in dashboard.variables.items())]
        },
        "annotations": {"list": []},
        "panels": panels,
        "version": 1,
    }


def dumps(value: Any, indent: int = 0, prefix: int = 0) -> str:
    """JSON with each object or list on one line when it fits in 100 columns
    (``prefix``: the columns a key takes before the value on its line)."""
    flat = json.dumps(value, ensure_ascii=False)
    if not isinstance(value, dict | list) or not value or indent + prefix + len(flat) <= 100:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            name = json.dumps(key, ensure_ascii=False) + ": "
            items.append(pad + name + dumps(item, indent + 2, len(name)))
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + dumps(item, indent + 2) for item in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
