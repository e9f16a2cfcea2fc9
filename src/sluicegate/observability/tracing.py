"""OpenTelemetry traces: one span per request, a child per pipeline stage and per upstream attempt.

Off unless asked for (``observability.tracing.enabled`` or ``$OTEL_TRACES_EXPORTER``).
When off, nothing here is built: the pipeline holds no wrappers and the executor
checks one attribute per attempt, so tracing costs nothing. When on, the standard
``OTEL_*`` variables choose the exporter (``otlp`` over HTTP/protobuf, or
``console``), its endpoint and headers, the sampler and the resource; the SDK reads
them itself.

Stages are middleware, so their spans nest: ``authenticate``'s span holds
``parse``'s, and so on down to ``invoke``, which holds one span per upstream
attempt. A span's own time (its duration minus its child's) is what that stage cost.
Each attempt sends a W3C ``traceparent`` naming its span, so an upstream that
traces (vLLM does, with ``--otlp-traces-endpoint``) joins the same trace.

Spans carry ids, names and counts — never a prompt, an answer or a key.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sluicegate.config.loader import ConfigError
from sluicegate.errors import SluicegateError

if TYPE_CHECKING:
    from sluicegate.config.observability import TracingConfig
    from sluicegate.pipeline.call import Call, Reply
    from sluicegate.pipeline.stage import Next, Stage
    from sluicegate.routing.router import Target

__all__ = ["Tracing", "build_tracing"]

log = logging.getLogger("sluicegate.tracing")

_PROPAGATOR = TraceContextTextMapPropagator()


def build_tracing(config: TracingConfig, exporter: SpanExporter | None = None) -> Tracing | None:
    """The tracing the config and environment ask for, or None (off).

    ``exporter`` replaces the one the environment names (tests use the SDK's
    in-memory exporter; spans reach it when the gateway closes, or sooner).
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    named = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter is None and not config.enabled and named in ("", "none"):
        return None
    # Batched in the SDK's own thread: exporting never waits on the event loop.
    processor = BatchSpanProcessor(exporter or _exporter(named or "otlp"))
    # Resource.create() adds $OTEL_SERVICE_NAME and $OTEL_RESOURCE_ATTRIBUTES.
    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME") or "sluicegate"}
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(processor)
    return Tracing(provider, propagate=config.propagate)


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER={name!r} is not supported: use otlp, console or none"
        )
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol != "http/protobuf":
        raise ConfigError(
            f"OTLP protocol {protocol!r} is not supported: Sluicegate exports over "
            "http/protobuf (port 4318 on a collector); set OTEL_EXPORTER_OTLP_PROTOCOL="
            "http/protobuf"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


class Tracing:
    def __init__(self, provider: TracerProvider, *, propagate: bool = True) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("sluicegate")
        self.propagate = propagate

    def root(self) -> Stage:
        """The outermost stage: the request's own span."""
        return _RequestSpan(self)

    def wrap(self, stage: Stage) -> Stage:
        """``stage`` inside a span of its own (the request span is its own already)."""
        if isinstance(stage, _RequestSpan):
            return stage
        return _StageSpan(self.tracer, stage)

    def attempt(self, call: Call, target: Target, number: int) -> Span:
        """A span for one upstream attempt; the upstream hears of it by ``traceparent``."""
        parent = trace.get_current_span()
        # A resumed stream's attempt starts while the response body is sent, outside the
        # request's context: hang it under the request span instead of a new trace.
        context = None if parent.get_span_context().is_valid else call.trace_context
        span = self.tracer.start_span(
            "sluicegate.attempt",
            context=context,
            kind=SpanKind.CLIENT,
            attributes={
                "sluicegate.deployment": target.deployment_id,
                "sluicegate.attempt": number,
                "gen_ai.request.model": target.upstream_model,
                "sluicegate.self_hosted": target.self_hosted,
            },
        )
        if self.propagate:
            call.upstream_headers = _traceparent(span)
        return span

    async def close(self) -> None:
        # Flushing may wait on the collector: not on the event loop.
        await asyncio.to_thread(self.provider.shutdown)


def _traceparent(span: Span) -> bytes:
    """The header lines that make ``span`` the parent of what the upstream does."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return b""
    line = f"traceparent: 00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}\r\n"
    state = ctx.trace_state.to_header()
    if state:
        line += f"tracestate: {state}\r\n"
    return line.encode("latin-1")


def end_attempt(span: Span, failed: bool | None, error: SluicegateError | None = None) -> None:
    if error is not None:
        span.set_attribute("error.type", error.code or error.type)
        span.set_attribute("http.response.status_code", error.status)
        span.set_status(Status(StatusCode.ERROR, error.code or error.type))
    elif failed is None:
        span.set_attribute("sluicegate.outcome", "abandoned")
    span.end()


class _StageSpan:
    def __init__(self, tracer: trace.Tracer, stage: Stage) -> None:
        self.tracer = tracer
        self.stage = stage
        self.name = stage.name
        self.span_name = f"sluicegate.{stage.name}"

    async def __call__(self, call: Call, call_next: Next) -> Reply:
        if call.tracing is None:  # the request was sampled out
            return await self.stage(call, call_next)
        with self.tracer.start_as_current_span(
            self.span_name, record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                return await self.stage(call, call_next)
            except SluicegateError as exc:
                span.set_attribute("error.type", exc.code or exc.type)
                if exc.status >= 500:
                    span.set_status(Status(StatusCode.ERROR, exc.code or exc.type))
                raise
            except BaseException as exc:
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise


class _RequestSpan:
    name = "trace"

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing
        self.tracer = tracing.tracer

    async def __call__(self, call: Call, call_next: Next) -> Reply:
        parent: Context | None = None
        if call.traceparent is not None:
            parent = _PROPAGATOR.extract({"traceparent": call.traceparent})
        span = self.tracer.start_span(
            f"sluicegate {call.endpoint.value}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"sluicegate.request_id": call.request_id},
        )
        if not span.is_recording():
            # Sampled out: no stage or attempt spans (they would record nothing), but the
            # upstream still learns the trace it belongs to, as W3C asks.
            if self.tracing.propagate:
                call.upstream_headers = _traceparent(span)
            return await call_next(call)
        call.tracing = self.tracing
        call.trace_context = trace.set_span_in_context(span)
        try:
            with trace.use_span(
                span, end_on_exit=False, record_exception=False, set_status_on_exception=False
            ):
                reply = await call_next(call)
        except SluicegateError as exc:
            _finish(span, call, exc.status, exc.code or exc.type, None)
            raise
        except BaseException as exc:
            _finish(span, call, 500, type(exc).__name__, None)
            raise
        if reply.stream is None:
            _finish(span, call, reply.status, None, reply)
        else:
            reply.on_end.append(lambda done: _finish(span, call, done.status, done.error, done))
        return reply


def _finish(span: Span, call: Call, status: int, error: str | None, reply: Reply | None) -> None:
    attributes: dict[str, str | int | bool] = {
        "http.response.status_code": status,
        "sluicegate.stream": call.stream,
        "sluicegate.attempts": call.attempts,
        "sluicegate.data_level": call.data_level,
    }
    if call.model is not None:
        attributes["gen_ai.request.model"] = call.model
    principal = call.principal
    if principal is not None and principal.org is not None:
        attributes["sluicegate.org"] = principal.org
    target = call.target
    if target is not None:
        attributes["sluicegate.deployment"] = target.deployment_id
        attributes["gen_ai.response.model"] = target.model
    usage = reply.usage if reply is not None else None
    if usage is not None:
        attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
        attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
    for check, decision in call.decisions.items():
        attributes[f"sluicegate.decision.{check}"] = decision
    span.set_attributes(attributes)
    if error is not None:
        span.set_attribute("error.type", error)
    if status >= 500 or (error is not None and status < 400):
        # A 4xx is the caller's doing; a 5xx, or a stream that broke after its 200, is ours.
        span.set_status(Status(StatusCode.ERROR, error or str(status)))
    span.end()
