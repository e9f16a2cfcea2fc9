"""The shipped Grafana dashboards, and every PromQL in them and in the alert rules.

A query may read only metrics that exist: ones a real gateway exports (scraped here,
after traffic, with an engine to scrape so its engine gauges show), ones a recording
rule in deploy/monitoring/rules defines, or an exporter's, listed with their source
in deploy/monitoring/exporters.yml.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sluicegate.config.schema import Config
from sluicegate.server.app import create_app
from sluicegate.server.gateway import MasterKey
from tests.conftest import APP_KEY, MASTER_KEY
from tests.fakes.databases import sqlite_url
from tests.fakes.engine_upstream import EngineUpstream
from tests.fakes.servers import running
from tests.monitoring.conftest import Promtool
from tests.monitoring.promql import metric_names, variables

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
DASHBOARDS = MONITORING / "grafana" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# What each type of family is read as in PromQL (prometheus_client strips the suffixes).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}

Json = dict[str, Any]


def dashboards() -> dict[str, Json]:
    found = {path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}
    assert set(found) == {"overview", "orgs", "backends", "gpu"}
    return found


def panels(dashboard: Json) -> Iterator[Json]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every dashboard target, query variable and rule."""
    found = []
    for name, dashboard in dashboards().items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                found.append((f"{name}.json: {panel['title']}", target["expr"]))
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                query = variable["query"]["query"]
                assert query.startswith("label_values(") and query.endswith(")"), query
                metric = query.removeprefix("label_values(").rsplit(",", 1)[0]
                found.append((f"{name}.json: ${variable['name']}", metric))
    for rule in rules():
        found.append((rule.get("alert") or rule["record"], rule["expr"]))
    found += keda_queries()
    return found


def keda_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every Prometheus trigger in the KEDA examples."""
    found = []
    for path in sorted((MONITORING / "keda").glob("*.yaml")):
        scaled = yaml.safe_load(path.read_text())
        assert scaled["kind"] == "ScaledObject", path.name
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["type"] == "prometheus", path.name
            assert float(trigger["metadata"]["threshold"]) > 0, path.name
            found.append((f"keda/{path.name}", trigger["metadata"]["query"]))
    assert found, "no KEDA example"
    return found


def rules() -> list[Json]:
    return [
        rule
        for path in sorted((MONITORING / "rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def catalogue() -> dict[str, Json]:
    found: dict[str, Json] = yaml.safe_load((MONITORING / "exporters.yml").read_text())
    return found


def names_of(exposition: str) -> set[str]:
    """Every series name the exposition offers PromQL, families without samples included."""
    names = set()
    for family in text_string_to_metric_families(exposition):
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


@pytest.fixture(scope="module")
def exported(upstream_url: str, tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The names a real gateway's /metrics offers, with every optional part on: the audit
    log, and a deployment whose engine it scrapes."""
    tmp = tmp_path_factory.mktemp("monitoring")
    engine = EngineUpstream("vllm")
    engine.waiting, engine.running, engine.kv_usage = 2, 3, 0.5
    auth = {"authorization": f"Bearer {APP_KEY}"}
    chat = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    with ExitStack() as stack:
        engine_url = stack.enter_context(running(engine.app))
        raw = {
            "database": {"url": sqlite_url(tmp)},
            "auth": {"keys": [{"name": "app", "key": APP_KEY}]},
            "audit": {
                "enabled": True,
                "directory": str(tmp / "audit"),
                "signing_key": "monitoring-test-signing-key",
            },
            "models": [
                {
                    "name": "chat",
                    "deployments": [
                        {"provider": "openai", "base_url": f"{upstream_url}/ok/v1", "id": "chat-a"}
                    ],
                },
                {
                    "name": "engine",
                    "deployments": [
                        {
                            "provider": "openai",
                            "base_url": f"{engine_url}/v1",
                            "id": "engine-a",
                            "health": {"enabled": False},
                            "engine_metrics": {"path": "/metrics", "interval": 0.05},
                        }
                    ],
                },
            ],
        }
        app = create_app(Config.model_validate(raw), MasterKey(MASTER_KEY, "test"))
        client = stack.enter_context(httpx2.Client(base_url=stack.enter_context(running(app))))
        assert client.post("/v1/chat/completions", json=chat, headers=auth).status_code == 200
        streamed = {**chat, "stream": True}
        with client.stream("POST", "/v1/chat/completions", json=streamed, headers=auth) as s:
            assert s.status_code == 200 and b"[DONE]" in s.read()
        unknown = {**chat, "model": "no-such-model"}
        assert client.post("/v1/chat/completions", json=unknown, headers=auth).status_code == 404
        deadline = time.monotonic() + 10
        while True:
            scraped = client.get("/metrics", headers={"authorization": f"Bearer {MASTER_KEY}"})
            assert scraped.status_code == 200
            names = names_of(scraped.text)
            # The engine gauges show once the first scrape of the engine has landed.
            if "sluicegate_engine_kv_cache_usage_ratio" in names:
                return names
            assert time.monotonic() < deadline, "the engine gauges never showed"
            time.sleep(0.05)


def test_dashboards_are_the_scripts_output() -> None:
    script = ROOT / "scripts" / "build_dashboards.py"
    done = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr + "\nrun: python scripts/build_dashboards.py"


def test_dashboards_take_their_datasource_from_a_variable_and_lay_out_on_the_grid() -> None:
    uids = set()
    for name, dashboard in dashboards().items():
        uids.add(dashboard["uid"])
        assert dashboard["schemaVersion"] >= 39, name
        templating = dashboard["templating"]["list"]
        source = templating[0]
        assert (source["type"], source["name"], source["query"]) == (
            "datasource",
            "datasource",
            "prometheus",
        ), name
        defined = {variable["name"] for variable in templating}
        ids = [panel["id"] for panel in panels(dashboard)]
        assert len(ids) == len(set(ids)), name
        for panel in panels(dashboard):
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, (name, panel["title"])
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == DATASOURCE, (name, panel["title"])
            targets = panel["targets"]
            assert targets, (name, panel["title"])
            assert len({target["refId"] for target in targets}) == len(targets)
            for target in targets:
                assert target["datasource"] == DATASOURCE, (name, panel["title"])
                assert variables(target["expr"]) <= defined, (name, panel["title"])
    assert len(uids) == len(dashboards())


def test_every_dashboard_query_is_valid_promql(promtool: Promtool, tmp_path: Path) -> None:
    """Each query, with Grafana's variables filled in, as a recording rule promtool parses."""

    def filled(expr: str) -> str:
        values = {"__rate_interval": "5m", "__range": "1h"}
        return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), ".*"), expr)

    exprs = [
        filled(target["expr"])
        for dashboard in dashboards().values()
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ] + [query for _, query in keda_queries()]
    group = {
        "name": "dashboards",
        "rules": [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)],
    }
    path = tmp_path / "dashboards.yml"
    path.write_text(yaml.safe_dump({"groups": [group]}))
    promtool("check", "rules", str(path))


def test_every_query_reads_only_metrics_that_exist(exported: set[str]) -> None:
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    listed = {name for exporter in catalogue().values() for name in exporter["metrics"]}
    known = exported | recorded | listed
    unknown = [
        (where, name)
        for where, expr in queries()
        for name in sorted(metric_names(expr))
        if name not in known
    ]
    assert not unknown, "\n".join(f"{where}: {name}" for where, name in unknown)


def test_the_gateway_metrics_the_queries_read_come_from_the_scrape(exported: set[str]) -> None:
    """Not a vacuous pass: the queries read the gateway's metrics, the engine gauges
    included, and the scrape has them."""
    read = {name for _, expr in queries() for name in metric_names(expr)}
    gateway = {name for name in read if name.startswith("sluicegate_")}
    assert {
        "sluicegate_requests_total",
        "sluicegate_request_duration_seconds_bucket",
        "sluicegate_engine_kv_cache_usage_ratio",
        "sluicegate_engine_requests_waiting",
        "sluicegate_budget_alerts_total",
        "sluicegate_audit_events_dropped_total",
        "sluicegate_queue_depth",
    } <= gateway
    assert gateway <= exported


def test_exporter_names_are_sourced_used_and_not_the_gateways() -> None:
    read = {name for _, expr in queries() for name in metric_names(expr)}
    for exporter, entry in catalogue().items():
        assert entry["source"].strip(), exporter
        assert entry["metrics"], exporter
        for name in entry["metrics"]:
            assert name in read, f"{exporter}: {name} is listed but no query reads it"
            assert not name.startswith("sluicegate"), f"{exporter}: {name} is the gateway's"


def test_grafana_provisioning_loads_these_dashboards() -> None:
    provisioning = MONITORING / "grafana" / "provisioning"
    provider = yaml.safe_load((provisioning / "dashboards" / "sluicegate.yml").read_text())
    (only,) = provider["providers"]
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert [source["type"] for source in datasources["datasources"]] == ["prometheus"]
    # docs/monitoring.md mounts grafana/dashboards where the provider looks.
    docs = (ROOT / "docs" / "monitoring.md").read_text()
    assert f"deploy/monitoring/grafana/dashboards:{only['options']['path']}" in docs
