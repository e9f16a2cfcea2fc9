"""Config for what the gateway tells operators: request logs and traces.

Metrics need no settings (``GET /metrics``, admin keys). Tracing is off unless
asked for here or by the standard ``OTEL_TRACES_EXPORTER`` variable; where spans
go is the business of the standard ``OTEL_EXPORTER_OTLP_*`` variables, so the
same environment that configures any OpenTelemetry service configures this one.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["LogsConfig", "ObservabilityConfig", "TracingConfig"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TracingConfig(_Strict):
    enabled: bool = Field(
        False,
        description="export OpenTelemetry spans over OTLP (also on when $OTEL_TRACES_EXPORTER "
        "is otlp or console; $OTEL_SDK_DISABLED=true turns it off)",
    )
    propagate: bool = Field(
        True, description="send a W3C traceparent header to upstreams while tracing"
    )


class LogsConfig(_Strict):
    prompts: bool = Field(
        False,
        description="put the request's messages in its log line (off: logs carry no prompt "
        "text and no PII)",
    )


class ObservabilityConfig(_Strict):
    tracing: TracingConfig = TracingConfig()
    logs: LogsConfig = LogsConfig()
