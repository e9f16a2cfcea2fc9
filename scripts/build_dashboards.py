"""Write the Grafana dashboards in deploy/monitoring/grafana/dashboards from the lists here.

    python scripts/build_dashboards.py           # (re)write the JSON files
    python scripts/build_dashboards.py --check   # exit 1 if a committed file differs

A dashboard is written as its panels' titles, units and queries; the JSON Grafana
wants around them (ids, grid positions, the datasource, legends) is made once, by
dashboard_kit.py.
tests/monitoring checks that the committed files are this script's output and that
every query reads only metrics that exist.

Panels take their datasource from the dashboard's ``datasource`` variable, so the
same files work provisioned (deploy/monitoring/grafana/provisioning) and imported by
hand into a Grafana whose Prometheus datasource has any name.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dashboard_kit import (
    Dashboard,
    Row,
    agg,
    bars,
    build,
    dumps,
    five_xx_share,
    increase,
    quantile,
    rate,
    stat,
    states,
    ts,
)

OUT = Path(__file__).resolve().parent.parent / "deploy" / "monitoring" / "grafana" / "dashboards"


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
RETRIES = "sluicegate_retries_total"
UPSTREAM_FAILURES = "sluicegate_upstream_failures_total"
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
        ts("Retries / s by model", "reqps", rate(RETRIES, "model", MODEL), "{{model}}"),
        ts(
            "Failed upstream attempts / s by deployment and code",
            "reqps",
            rate(UPSTREAM_FAILURES, "deployment, code"),
            "{{deployment}} {{code}}",
        ),
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
