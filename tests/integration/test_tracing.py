"""Traces: the span tree of real calls, traceparent upstream, OTLP export, and off by default."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sluicegate.config.schema import Config
from sluicegate.server.app import create_app
from sluicegate.server.gateway import MasterKey
from tests.conftest import APP_KEY, MASTER_KEY
from tests.fakes.databases import sqlite_url
from tests.fakes.servers import running

AUTH = {"authorization": f"Bearer {APP_KEY}"}
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
STAGES = [
    "sluicegate.record",
    "sluicegate.drain",
    "sluicegate.authenticate",
    "sluicegate.concurrency",
    "sluicegate.parse",
    "sluicegate.route",
    "sluicegate.admit",
    "sluicegate.inspect",
    "sluicegate.invoke",
]


def _config(upstream_url: str, tmp_path: Path, **extra: Any) -> Config:
    return Config.model_validate(
        {
            "database": {"url": sqlite_url(tmp_path)},
            "auth": {"keys": [{"name": "app", "key": APP_KEY}]},
            "models": [
                {
                    "name": "flaky",
                    "routing": {"retry": {"attempts": 2, "backoff_base": 0.01}},
                    "deployments": [
                        {
                            "provider": "openai",
                            "base_url": f"{upstream_url}/status-503/v1",
                            "id": "bad",
                            "health": {"enabled": False},
                        },
                        {
                            "provider": "openai",
                            "base_url": f"{upstream_url}/ok/v1",
                            "id": "good",
                            "health": {"enabled": False},
                        },
                    ],
                }
            ],
            **extra,
        }
    )


def _chat(**extra: Any) -> dict[str, Any]:
    return {"model": "flaky", "messages": [{"role": "user", "content": "hi"}], **extra}


def _by_name(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_span_tree_of_a_call_that_failed_over(
    upstream_url: str, tmp_path: Path, seen: list[dict[str, Any]]
) -> None:
    exporter = InMemorySpanExporter()
    app = create_app(
        _config(upstream_url, tmp_path), MasterKey(MASTER_KEY, "test"), span_exporter=exporter
    )
    caller = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    with running(app) as url, httpx2.Client(base_url=url) as client:
        resp = client.post("/v1/chat/completions", json=_chat(), headers={**AUTH, **caller})
        assert resp.status_code == 200
        assert resp.headers["x-sluicegate-deployment"] == "good"
    spans = list(exporter.get_finished_spans())
    # One trace, the caller's.
    assert {f"{s.context.trace_id:032x}" for s in spans} == {CALLER_TRACE}

    (root,) = _by_name(spans, "sluicegate chat")
    assert root.kind is SpanKind.SERVER
    assert f"{_parent_id(root):016x}" == CALLER_SPAN
    attributes = dict(root.attributes or {})
    assert attributes["http.response.status_code"] == 200
    assert attributes["sluicegate.deployment"] == "good"
    assert attributes["sluicegate.attempts"] == 2
    assert attributes["gen_ai.request.model"] == "flaky"
    assert attributes["gen_ai.usage.input_tokens"] == 11

    # The stages nest in pipeline order under the request span.
    parent = root
    for name in STAGES:
        (span,) = _by_name(spans, name)
        assert _parent_id(span) == parent.context.span_id, name
        parent = span
    invoke = parent

    attempts = sorted(_by_name(spans, "sluicegate.attempt"), key=lambda s: s.start_time or 0)
    assert [dict(a.attributes or {})["sluicegate.deployment"] for a in attempts] == ["bad", "good"]
    assert all(_parent_id(a) == invoke.context.span_id for a in attempts)
    assert all(a.kind is SpanKind.CLIENT for a in attempts)
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert dict(attempts[0].attributes or {})["http.response.status_code"] == 503
    assert attempts[1].status.status_code is StatusCode.UNSET

    # Each upstream request carried its own attempt's span as the parent.
    sent = [r["headers"].get("traceparent") for r in seen]
    assert sent == [f"00-{CALLER_TRACE}-{a.context.span_id:016x}-01" for a in attempts], (
        "one traceparent per attempt, naming that attempt's span"
    )

    # Spans carry no prompt text and no key.
    dumped = "".join(s.to_json() for s in spans)
    assert APP_KEY not in dumped and '"hi"' not in dumped


def test_stream_span_ends_with_the_stream_and_refusals_are_not_errors(
    upstream_url: str, tmp_path: Path
) -> None:
    exporter = InMemorySpanExporter()
    app = create_app(
        _config(upstream_url, tmp_path), MasterKey(MASTER_KEY, "test"), span_exporter=exporter
    )
    with running(app) as url, httpx2.Client(base_url=url) as client:
        with client.stream(
            "POST", "/v1/chat/completions", json=_chat(stream=True), headers=AUTH
        ) as stream:
            assert stream.status_code == 200
            body = stream.read()
        assert b"[DONE]" in body
        bad = client.post("/v1/chat/completions", json={"model": "flaky"}, headers=AUTH)
        assert bad.status_code == 400
    spans = list(exporter.get_finished_spans())
    roots = _by_name(spans, "sluicegate chat")
    assert len(roots) == 2
    streamed, refused = sorted(roots, key=lambda s: s.start_time or 0)
    # A new trace when the caller sends none.
    assert streamed.parent is None
    assert dict(streamed.attributes or {})["sluicegate.stream"] is True
    assert streamed.end_time is not None
    stream_attempts = [
        a
        for a in _by_name(spans, "sluicegate.attempt")
        if a.context.trace_id == streamed.context.trace_id
    ]
    # The answering attempt's span lasts until the stream's end.
    answering = max(stream_attempts, key=lambda s: s.start_time or 0)
    assert answering.end_time is not None and answering.end_time <= streamed.end_time
    assert dict(refused.attributes or {})["http.response.status_code"] == 400
    assert dict(refused.attributes or {})["error.type"] == "invalid_request_error"
    # A caller's mistake is not the gateway's error.
    assert refused.status.status_code is StatusCode.UNSET
    (parse,) = [
        s
        for s in _by_name(spans, "sluicegate.parse")
        if s.context.trace_id == refused.context.trace_id
    ]
    assert dict(parse.attributes or {})["error.type"] == "invalid_request_error"


def test_tracing_is_off_by_default(
    upstream_url: str, tmp_path: Path, seen: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    app = create_app(_config(upstream_url, tmp_path), MasterKey(MASTER_KEY, "test"))
    gw = app.state.gateway
    assert gw.tracing is None
    # No wrappers: the pipeline is the bare stages.
    assert type(gw.pipeline.stages[0]).__name__ == "Record"
    with running(app) as url, httpx2.Client(base_url=url) as client:
        caller = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
        resp = client.post("/v1/chat/completions", json=_chat(), headers={**AUTH, **caller})
        assert resp.status_code == 200
    assert seen and all("traceparent" not in r["headers"] for r in seen)


class _Collector:
    """An OTLP/HTTP trace receiver, as a real server: keeps the spans it was sent."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.arrived = threading.Event()
        self.app = Starlette(routes=[Route("/v1/traces", self.traces, methods=["POST"])])

    async def traces(self, request: Request) -> Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.body())
        self.requests.append(message)
        self.arrived.set()
        return Response(b"", media_type="application/x-protobuf")

    def spans(self) -> Iterator[tuple[dict[str, str], str]]:
        for message in self.requests:
            for resource_spans in message.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        yield resource, span.name


def test_otlp_export_configured_by_the_standard_environment(
    upstream_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = _Collector()
    with running(collector.app) as collector_url:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector_url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-eu-1")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        app = create_app(_config(upstream_url, tmp_path), MasterKey(MASTER_KEY, "test"))
        with running(app) as url, httpx2.Client(base_url=url) as client:
            assert client.post("/v1/chat/completions", json=_chat(), headers=AUTH).is_success
            assert collector.arrived.wait(10)
        # Stopping the gateway flushes what is left.
        received = list(collector.spans())
    names = {name for _, name in received}
    assert {"sluicegate chat", "sluicegate.invoke", "sluicegate.attempt"} <= names
    assert {resource.get("service.name") for resource, _ in received} == {"gateway-eu-1"}


def test_unsupported_exporter_is_a_clear_config_error(
    upstream_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sluicegate.config.loader import ConfigError

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER='zipkin'"):
        create_app(_config(upstream_url, tmp_path), MasterKey(MASTER_KEY, "test"))
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ConfigError, match="http/protobuf"):
        create_app(_config(upstream_url, tmp_path), MasterKey(MASTER_KEY, "test"))


def test_sampled_out_requests_make_no_spans_but_still_propagate(
    upstream_url: str, tmp_path: Path, seen: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    exporter = InMemorySpanExporter()
    app = create_app(
        _config(upstream_url, tmp_path), MasterKey(MASTER_KEY, "test"), span_exporter=exporter
    )
    with running(app) as url, httpx2.Client(base_url=url) as client:
        assert client.post("/v1/chat/completions", json=_chat(), headers=AUTH).is_success
    assert list(exporter.get_finished_spans()) == []
    sent = [r["headers"].get("traceparent") for r in seen]
    assert len(sent) == 2 and len({s for s in sent}) == 1
    assert sent[0] is not None and sent[0].startswith("00-")
    assert int(sent[0].rsplit("-", 1)[1], 16) & 1 == 0, "the sampled flag is off"
