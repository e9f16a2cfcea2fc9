"""Config for what the gateway tells operators: request logs and traces.

Metrics need no settings (``GET /metrics``, admin keys). Tracing is off unless
asked for here or by the standard ``OTEL_TRACES_EXPORTER`` variable; where spans
go is the business of the standard ``OTEL_EXPORTER_OTLP_*`` variables, so the
same environment that configures any OpenTelemetry service configures this one.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["LogsConfig", "MetricsConfig", "ObservabilityConfig", "TracingConfig"]


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


class MetricsConfig(_Strict):
    per_key: bool = Field(
        False,
        description="also count calls and tokens per API key (its display prefix, sk-sg-<id>) "
        "in sluicegate_key_requests_total and sluicegate_key_tokens_total: one series per key, "
        "so only where keys are few",
    )


class ObservabilityConfig(_Strict):
    metrics: MetricsConfig = MetricsConfig()
    tracing: TracingConfig = TracingConfig()
    logs: LogsConfig = LogsConfig()
