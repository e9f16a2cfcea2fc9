"""Stage: count every call, write one access-log line and one usage event, streams included.

Usage events go to ``UsageLog``'s bounded queue (written to SQL in batches), so
recording never waits on the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sluicegate.audit.writer import AuditLog
from sluicegate.errors import SluicegateError
from sluicegate.governance.keys import PREFIX as KEY_PREFIX
from sluicegate.governance.limits import Limit, LimitExceeded
from sluicegate.governance.usage_log import UsageEvent, UsageLog
from sluicegate.observability.access_log import AccessLog
from sluicegate.observability.counters import Counters
from sluicegate.observability.metrics import Metrics
from sluicegate.pipeline.call import Call, Reply, Usage
from sluicegate.pipeline.stage import Next
from sluicegate.types import Endpoint

__all__ = ["Record"]


class Record:
    name = "record"

    def __init__(
        self,
        counters: Counters,
        access_log: AccessLog | None,
        usage: UsageLog | None = None,
        audit: AuditLog | None = None,
        metrics: Metrics | None = None,
        *,
        log_prompts: bool = False,
    ) -> None:
        self.log_prompts = log_prompts
        self.counters = counters
        self.access_log = access_log
        self.usage = usage
        self.audit = audit
        self.metrics = metrics

    async def __call__(self, call: Call, call_next: Next) -> Reply:
        # A scrape is not load: counted, it would make an idle gateway read one call busy.
        step = 0 if call.endpoint is Endpoint.METRICS else 1
        counters = self.counters
        counters.in_flight += step
        try:
            reply = await call_next(call)
        except SluicegateError as exc:
            counters.in_flight -= step
            limit = exc.limit if isinstance(exc, LimitExceeded) else None
            self._done(call, exc.status, exc.code or exc.type, limit=limit)
            raise
        except BaseException:
            counters.in_flight -= step
            self._done(call, 500, "internal_error")
            raise
        if reply.stream is None:
            counters.in_flight -= step
            self._done(call, reply.status, None, reply)
        else:
            reply.on_end.append(self._stream_done(call))
        return reply

    def _stream_done(self, call: Call) -> Callable[[Reply], None]:
        def done(reply: Reply) -> None:
            self.counters.in_flight -= 1
            self._done(call, reply.status, reply.error, reply)

        return done

    def _done(
        self,
        call: Call,
        status: int,
        error: str | None,
        reply: Reply | None = None,
        limit: Limit | None = None,
    ) -> None:
        model = call.model or "-"
        usage = reply.usage if reply is not None else None
        seconds = time.perf_counter() - call.started
        if self.metrics is not None:
            self.metrics.observe(call, status, error, usage, seconds, limit)
        if self.usage is not None:
            self.usage.submit(_event(call, status, error, usage, seconds))
        if self.audit is not None and call.endpoint is not Endpoint.ADMIN:
            # Admin actions are audited by the admin API itself, with what they changed.
            self.audit.submit(_audit_entry(call, status, error, usage))
        if self.access_log is not None:
            self.access_log.write(self._line(call, model, status, error, usage, seconds))

    def _line(
        self,
        call: Call,
        model: str,
        status: int,
        error: str | None,
        usage: Usage | None,
        seconds: float,
    ) -> dict[str, Any]:
        """The request's log line: who, what was asked and what served it, and why it
        ended as it did — never the prompt (unless ``logs.prompts``) nor a key."""
        principal = call.principal
        target = call.target
        line: dict[str, Any] = {
            "msg": "request",
            "request_id": call.request_id,
            "endpoint": call.endpoint.value,
            "model": model,
            "served_model": target.model if target else None,
            "deployment": target.deployment_id if target else None,
            "principal": principal.name if principal else None,
            "org": principal.org if principal else None,
            "key": KEY_PREFIX + principal.key_id if principal and principal.key_id else None,
            "status": status,
            "error": error,
            "stream": call.stream,
            "attempts": call.attempts,
            "data_level": call.data_level,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            "latency_ms": round(seconds * 1000, 2),
        }
        if call.decisions:
            line["decisions"] = call.decisions
        if call.failures is not None:
            line["failed_attempts"] = [f"{deployment}:{code}" for deployment, code in call.failures]
        route = call.reply_headers.get("x-sluicegate-route")
        if route is not None:
            line["route"] = route
        if call.trace_context is not None:
            line["trace_id"] = _trace_id(call)
        if self.log_prompts and call.body:
            line["request"] = _prompt(call)
        return line


def _trace_id(call: Call) -> str:
    from opentelemetry import trace

    return f"{trace.get_current_span(call.trace_context).get_span_context().trace_id:032x}"


def _prompt(call: Call) -> Any:
    """What the caller sent, as the upstream saw it (after redaction, when PII is redacted)."""
    body = call.body
    for field in ("messages", "prompt", "input", "query", "documents"):
        if field in body:
            return {field: body[field]}
    return None


def _outcome(call: Call, status: int, error: str | None) -> str:
    if error == "client_disconnected":
        return "cancelled"
    if error is not None and status < 400:
        return "failed"  # a stream that broke after its first byte
    if status >= 500:
        return "failed"
    if status >= 400:
        # Refused by the gateway or by the upstream, for the request itself.
        return "refused"
    return "failed_over" if call.attempts > 1 else "ok"


def _event(
    call: Call, status: int, error: str | None, usage: Usage | None, seconds: float
) -> UsageEvent:
    principal = call.principal
    target = call.target
    return UsageEvent(
        ts=time.time(),
        request_id=call.request_id,
        endpoint=call.endpoint.value,
        org=principal.org if principal is not None else None,
        team=principal.team if principal is not None else None,
        key_id=(principal.key_id or principal.name) if principal is not None else None,
        model=call.model,
        served_model=target.model if target is not None else None,
        deployment=target.deployment_id if target is not None else None,
        status=status,
        outcome=_outcome(call, status, error),
        error=error,
        attempts=call.attempts,
        stream=call.stream,
        prompt_tokens=usage.prompt_tokens if usage is not None else 0,
        completion_tokens=usage.completion_tokens if usage is not None else 0,
        cached_tokens=usage.cached_tokens if usage is not None else 0,
        reasoning_tokens=usage.reasoning_tokens if usage is not None else 0,
        cost_micros=call.cost_micros,
        gpu_seconds=call.gpu_seconds,
        latency_ms=round(seconds * 1000, 2),
    )


def _audit_entry(call: Call, status: int, error: str | None, usage: Usage | None) -> dict[str, Any]:
    principal = call.principal
    target = call.target
    return {
        "kind": "request",
        "request_id": call.request_id,
        "org": principal.org if principal is not None else None,
        "key_id": (principal.key_id or principal.name) if principal is not None else None,
        "route": call.endpoint.value,
        "model": call.model,
        "served_model": target.model if target is not None else None,
        "deployment": target.deployment_id if target is not None else None,
        "data_level": call.data_level,
        "decisions": dict(call.decisions),
        "prompt_tokens": usage.prompt_tokens if usage is not None else 0,
        "completion_tokens": usage.completion_tokens if usage is not None else 0,
        "status": status,
        "error": error,
    }
