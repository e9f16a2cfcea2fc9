"""Write the Grafana dashboards in deploy/monitoring/grafana/dashboards from the lists here.

    python scripts/build_dashboards.py           # (re)write the JSON files
    python scripts/build_dashboards.py --check   # exit 1 if a committed file differs

A dashboard is written as its panels' titles, units and queries; the JSON Grafana
wants around them (ids, grid positions, the datasource, legends) is made here once.
tests/monitoring checks that the committed files are this script's output and that
every query reads only metrics that exist.

Panels take their datasource from the dashboard's ``datasource`` variable, so the
same files work provisioned (deploy/monitoring/grafana/provisioning) and imported by
hand into a Grafana whose Prometheus datasource has any name.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "deploy" / "monitoring" / "grafana" / "dashboards"
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


def engine(figure: str) -> str:
    """What the gateway last scraped from a deployment's engine; the same on every replica."""
    return agg(f"sluicegate_engine_{figure}", DEPLOYMENT_LABELS, MODEL, "max")


def dcgm(field: str) -> str:
    return f'DCGM_FI_DEV_{field}{{Hostname=~"$host"}}'


# Calls to models: not Prometheus' own scrapes, the admin API or the model list, which
# would otherwise fill the '-' model and, at low traffic, the latency percentiles.
CALLS = 'route!~"admin|metrics|models|openapi"'
MODEL = 'model=~"$model"'
MODEL_CALLS = f"{MODEL}, {CALLS}"
ORG = 'org=~"$org"'
ORG_CALLS = f"{ORG}, {CALLS}"
ORG_ERRORS = f'{ORG_CALLS}, status=~"4..|5.."'
SERVED = f'{MODEL}, deployment!="-"'
VLLM = 'model_name=~"$vllm_model"'
PS = (0.5, 0.95, 0.99)
DEPLOYMENT_LABELS = "model, deployment"
DEPLOYMENT = "{{model}} / {{deployment}}"
GPU_LEGEND = "{{Hostname}} GPU {{gpu}}"
REQUESTS = "sluicegate_requests_total"
LATENCY = "sluicegate_request_duration_seconds_bucket"
TTFT = "sluicegate_time_to_first_token_seconds_bucket"
UPSTREAM = "sluicegate_upstream_duration_seconds_bucket"
OVERHEAD = "sluicegate_gateway_overhead_seconds_bucket"
TOKENS = "sluicegate_tokens_total"
COST = "sluicegate_cost_usd_total"
GUARDS = "sluicegate_guard_decisions_total"
FAILOVERS = "sluicegate_failovers_total"
IN_FLIGHT = "sluicegate_in_flight"
QUEUE = "sluicegate_queue_depth"
HEALTH = "sluicegate_deployment_healthy"
DEPLOYMENT_IN_FLIGHT = "sluicegate_deployment_in_flight"
DIRECTORY = "sluicegate_key_directory_available"
# 0 closed, 1 half open, 2 (or 3: open on one replica, half open on another) open
BREAKER = "sluicegate_breaker_state"
BREAKERS = " + 2 * ".join(
    agg(BREAKER, "deployment", f'state="{state}"', "max") for state in ("half_open", "open")
)
SHARE_STEPS = ((0.01, "orange"), (0.05, "red"))  # the alert is at 5 %
QUEUE_STEPS = ((1, "orange"), (100, "red"))  # the alert is at 100
HEALTH_STATES = {"0": ("unhealthy", "red"), "1": ("healthy", "green")}
DIRECTORY_STATES = {"0": ("last snapshot", "red"), "1": ("readable", "green")}
BREAKER_STATES = {
    "0": ("closed", "green"),
    "1": ("half open", "orange"),
    "2": ("open", "red"),
    "3": ("open", "red"),
}

OVERVIEW = Dashboard(
    "sluicegate-overview",
    "Sluicegate / Overview",
    "Traffic, errors, latency and load of the gateway, over every replica.",
    {"model": ("Model", f"label_values({REQUESTS}, model)")},
    [
        Row("Traffic"),
        stat("Requests / s", "reqps", rate(REQUESTS, sel=MODEL_CALLS)),
        stat("5xx share", "percentunit", five_xx_share("", MODEL_CALLS), steps=SHARE_STEPS),
        stat("In flight", "short", agg("sluicegate_in_flight")),
        stat(
            "Queued",
            "short",
            agg("sluicegate_queue_depth", sel=MODEL),
            steps=QUEUE_STEPS,
            about="Calls waiting for a free deployment slot: the signal to scale on.",
        ),
        ts("Requests / s by model", "reqps", rate(REQUESTS, "model", MODEL_CALLS), "{{model}}"),
        ts("Requests / s by status", "reqps", rate(REQUESTS, "status", MODEL_CALLS), "{{status}}"),
        ts("5xx share by model", "percentunit", five_xx_share("model", MODEL_CALLS), "{{model}}"),
        ts(
            "Refusals / s by code",
            "reqps",
            rate("sluicegate_refusals_total", "code"),
            "{{code}}",
            about="Calls refused before any upstream: limits, budgets, guards, no deployment.",
        ),
        Row("Latency"),
        ts(
            "Request latency",
            "s",
            [(quantile(q, LATENCY, "", MODEL_CALLS), f"p{round(q * 100)}") for q in PS],
        ),
        ts(
            "Request latency p95 by model",
            "s",
            quantile(0.95, LATENCY, "model", MODEL_CALLS),
            "{{model}}",
        ),
        ts(
            "Time to first token p95",
            "s",
            quantile(0.95, TTFT, "model", MODEL),
            "{{model}}",
            w=8,
            about="Streams: from the request's arrival to the first real chunk from upstream.",
        ),
        ts("Upstream time p95", "s", quantile(0.95, UPSTREAM, "model", MODEL), "{{model}}", w=8),
        ts(
            "Gateway overhead p95",
            "s",
            quantile(0.95, OVERHEAD, "route"),
            "{{route}}",
            w=8,
            about="Non-streamed calls: total time minus the answering upstream attempt's.",
        ),
        Row("Load"),
        ts("In flight by replica", "short", agg(IN_FLIGHT, "instance"), "{{instance}}", w=8),
        ts("Queue depth by model", "short", agg(QUEUE, "model", MODEL), "{{model}}", w=8),
        ts("Tokens / s", "short", rate(TOKENS, "kind", MODEL), "{{kind}}", w=8, stack=True),
        Row("Guards and bookkeeping"),
        ts(
            "Guard decisions / s",
            "reqps",
            rate(GUARDS, "check, decision"),
            "{{check}} {{decision}}",
        ),
        ts(
            "Usage and audit queues",
            "short",
            [
                (agg("sluicegate_usage_events_pending"), "usage pending"),
                (agg("sluicegate_audit_events_pending"), "audit pending"),
                (rate("sluicegate_usage_events_dropped_total"), "usage dropped / s"),
                (rate("sluicegate_audit_events_dropped_total"), "audit dropped / s"),
            ],
        ),
        states(
            "Key database", agg(DIRECTORY, "instance", op="min"), "{{instance}}", DIRECTORY_STATES
        ),
    ],
)

ORGS = Dashboard(
    "sluicegate-orgs",
    "Sluicegate / Orgs",
    "Calls, tokens and spend per org ('-': keys without an org); budget alerts.",
    {"org": ("Org", f"label_values({REQUESTS}, org)")},
    [
        Row("Calls"),
        ts("Requests / s by org", "reqps", rate(REQUESTS, "org", ORG_CALLS), "{{org}}"),
        ts(
            "Refused and failed / s by org",
            "reqps",
            rate(REQUESTS, "org, status", ORG_ERRORS),
            "{{org}} {{status}}",
        ),
        ts("Tokens / s by org", "short", rate(TOKENS, "org, kind", ORG), "{{org}} {{kind}}"),
        bars("Tokens in the time range by org", "short", increase(TOKENS, "org", ORG), "{{org}}"),
        Row("Spend"),
        ts(
            "Spend by org (USD / hour)",
            "currencyUSD",
            f"{rate(COST, 'org', ORG)} * 3600",
            "{{org}}",
        ),
        ts(
            "Spend by org and model (USD / hour)",
            "currencyUSD",
            f"{rate(COST, 'org, model', ORG)} * 3600",
            "{{org}} {{model}}",
        ),
        bars(
            "Spend in the time range by org", "currencyUSD", increase(COST, "org", ORG), "{{org}}"
        ),
        bars(
            "Spend in the time range by model",
            "currencyUSD",
            increase(COST, "model", ORG),
            "{{model}}",
        ),
        Row("Budgets"),
        bars(
            "Budget alerts raised (since each replica started)",
            "short",
            agg("sluicegate_budget_alerts_total", "scope, budget, threshold"),
            "{{scope}} {{budget}} ≥ {{threshold}}",
            w=24,
        ),
    ],
)

BACKENDS = Dashboard(
    "sluicegate-backends",
    "Sluicegate / Backends",
    "Deployments as the gateway sees them (health, breakers, load, latency) and what their "
    "engines report (deployments with engine_metrics set).",
    {"model": ("Model", "label_values(sluicegate_deployment_healthy, model)")},
    [
        Row("State"),
        states(
            "Deployment health",
            agg(HEALTH, DEPLOYMENT_LABELS, MODEL, "min"),
            DEPLOYMENT,
            HEALTH_STATES,
        ),
        states("Circuit breakers", BREAKERS, "{{deployment}}", BREAKER_STATES),
        Row("Load"),
        ts(
            "Calls in flight by deployment",
            "short",
            agg(DEPLOYMENT_IN_FLIGHT, DEPLOYMENT_LABELS, MODEL),
            DEPLOYMENT,
        ),
        ts(
            "Calls / s by deployment",
            "reqps",
            rate(REQUESTS, "deployment", SERVED),
            "{{deployment}}",
        ),
        ts("Fail-overs / s by model", "reqps", rate(FAILOVERS, "model", MODEL), "{{model}}"),
        ts(
            "Upstream time by model",
            "s",
            [
                (quantile(q, UPSTREAM, "model", MODEL), f"{{{{model}}}} p{round(q * 100)}")
                for q in PS[:2]
            ],
        ),
        Row("Engines (as the gateway scrapes them)"),
        ts(
            "Engine requests waiting",
            "short",
            engine("requests_waiting"),
            DEPLOYMENT,
            w=8,
            about="The engine's whole queue, other gateways' and clients' requests included.",
        ),
        ts("Engine requests running", "short", engine("requests_running"), DEPLOYMENT, w=8),
        ts(
            "Engine KV cache in use", "percentunit", engine("kv_cache_usage_ratio"), DEPLOYMENT, w=8
        ),
    ],
)

GPU = Dashboard(
    "sluicegate-gpu",
    "Sluicegate / GPUs and engines",
    "GPUs (NVIDIA DCGM exporter) and the engines on them (vLLM, TEI), scraped by Prometheus.",
    {
        "host": ("Host", "label_values(DCGM_FI_DEV_GPU_UTIL, Hostname)"),
        "vllm_model": ("vLLM model", "label_values(vllm:num_requests_running, model_name)"),
    },
    [
        Row("GPUs"),
        ts("GPU utilisation", "percent", dcgm("GPU_UTIL"), GPU_LEGEND),
        ts(
            "GPU memory in use",
            "percentunit",
            f"{dcgm('FB_USED')} / ({dcgm('FB_USED')} + {dcgm('FB_FREE')})",
            GPU_LEGEND,
            about="vLLM takes --gpu-memory-utilization (0.9) of it at start; alert over 90 %.",
        ),
        ts("GPU memory used", "mbytes", dcgm("FB_USED"), GPU_LEGEND, w=8),
        ts("GPU temperature", "celsius", dcgm("GPU_TEMP"), GPU_LEGEND, w=8),
        ts("GPU power", "watt", dcgm("POWER_USAGE"), GPU_LEGEND, w=8),
        Row("vLLM"),
        ts(
            "Requests running",
            "short",
            agg("vllm:num_requests_running", "model_name", VLLM),
            "{{model_name}}",
            w=8,
        ),
        ts(
            "Requests waiting",
            "short",
            agg("vllm:num_requests_waiting", "model_name", VLLM),
            "{{model_name}}",
            w=8,
        ),
        ts(
            "KV cache in use",
            "percentunit",
            agg("vllm:kv_cache_usage_perc", "model_name, instance", VLLM, "max"),
            "{{model_name}} {{instance}}",
            w=8,
        ),
        ts(
            "Time to first token p95 (engine)",
            "s",
            quantile(0.95, "vllm:time_to_first_token_seconds_bucket", "model_name", VLLM),
            "{{model_name}}",
        ),
        ts(
            "Tokens / s",
            "short",
            [
                (
                    rate("vllm:generation_tokens_total", "model_name", VLLM),
                    "{{model_name}} generated",
                ),
                (rate("vllm:prompt_tokens_total", "model_name", VLLM), "{{model_name}} prompt"),
            ],
        ),
        Row("TEI"),
        ts("TEI queue", "short", agg("te_queue_size", "instance"), "{{instance}}"),
        ts(
            "TEI request time p95",
            "s",
            quantile(0.95, "te_request_duration_bucket", "instance"),
            "{{instance}}",
        ),
    ],
)


DASHBOARDS = {"overview": OVERVIEW, "orgs": ORGS, "backends": BACKENDS, "gpu": GPU}


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


def rendered() -> dict[Path, str]:
    return {OUT / f"{name}.json": dumps(build(d)) + "\n" for name, d in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    stale = []
    for path, text in rendered().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        verb = "differs from this script's output" if args.check else "written"
        print(f"{path}: {verb}", file=sys.stderr if args.check else sys.stdout)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
