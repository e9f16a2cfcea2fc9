"""The call object: everything one request carries through the pipeline.

Stages keep per-request state here, never on themselves.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sluicegate.governance.limits import Limit
from sluicegate.governance.usage import UsageDetail
from sluicegate.types import Endpoint, JSONObject, SSEStream

if TYPE_CHECKING:
    from opentelemetry.context import Context

    from sluicegate.observability.tracing import Tracing
    from sluicegate.routing.router import Target

__all__ = ["Call", "Parsed", "Principal", "Reply", "Usage"]


@dataclass(slots=True, frozen=True)
class Principal:
    """Who is calling: the key's name and id (never the key itself), its role, and the
    limits that bind it (its own, its team's and its organisation's)."""

    name: str
    is_admin: bool = False
    org: str | None = None
    limits: tuple[Limit, ...] = ()
    key_id: str | None = None
    team: str | None = None
    role: str | None = None
    #: Model names or fnmatch patterns this key may call; None: every model.
    models: tuple[str, ...] | None = None
    #: Kinds of deployment this key may reach: "local" (self-hosted) and/or "cloud".
    llm_access: frozenset[str] = frozenset({"local", "cloud"})
    #: The most sensitive data level this key may send (public … restricted).
    data_access: str = "restricted"
    #: Caps on calls in progress at once: (scope, cap) for the key, team and org.
    inflight: tuple[tuple[str, int], ...] = ()


@dataclass(slots=True)
class Usage:
    """Tokens one call used, as the upstream reported them (OpenAI's inclusive totals)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def detail(self) -> UsageDetail:
        return UsageDetail(
            prompt_tokens=self.prompt_tokens,
            cached_tokens=self.cached_tokens,
            cache_write_tokens=self.cache_write_tokens,
            completion_tokens=self.completion_tokens,
            reasoning_tokens=self.reasoning_tokens,
        )

    @classmethod
    def from_openai(cls, usage: Any) -> Usage | None:
        if not isinstance(usage, dict) or not isinstance(usage.get("prompt_tokens"), int):
            return None
        detail = UsageDetail.from_openai(usage)
        if detail is None:
            return None
        return cls(
            detail.prompt_tokens,
            detail.completion_tokens,
            detail.cached_tokens,
            detail.cache_write_tokens,
            detail.reasoning_tokens,
        )


@dataclass(slots=True)
class Reply:
    """What the pipeline returns: a whole JSON body, or a stream of SSE bytes.

    ``on_end`` callbacks run once a stream has finished (or failed), so stages that
    wrap a stream learn its usage and outcome without re-reading its bytes.
    """

    status: int = 200
    body: bytes | None = None
    stream: SSEStream | None = None
    headers: dict[str, str] = field(default_factory=dict)
    usage: Usage | None = None
    served_model: str | None = None
    #: For streams: set when the stream ended; ``error`` names why if it failed.
    finished: bool = False
    error: str | None = None
    on_end: list[Callable[[Reply], None]] = field(default_factory=list)

    def end(self, error: str | None = None) -> None:
        """Mark a stream finished (once) and tell the stages that asked to know."""
        if self.finished:
            return
        self.finished = True
        self.error = error
        for callback in self.on_end:
            callback(self)


@dataclass(slots=True, frozen=True)
class Parsed:
    """What an endpoint's parser found in a request body.

    ``body`` replaces the decoded body when the endpoint translated it (for example
    Anthropic Messages into OpenAI chat); then the client's bytes are not forwarded.
    """

    model: str | None
    stream: bool = False
    body: JSONObject | None = None


@dataclass(slots=True)
class Call:
    """One request on its way through the pipeline.

    The route gives only how to read and parse the body; the ``parse`` stage does
    both after ``authenticate``, so a caller without a valid key learns nothing
    about its body. Then ``body`` is the decoded request in OpenAI shape and
    ``raw`` the client's bytes, which a provider may forward untouched; a stage
    that changes ``body`` must set ``raw`` to None.
    """

    request_id: str
    endpoint: Endpoint
    read_body: Callable[[], Awaitable[bytes]] | None = None
    parser: Callable[[JSONObject], Parsed] | None = None
    body: JSONObject = field(default_factory=dict)
    raw: bytes | None = None
    model: str | None = None
    stream: bool = False
    api_key: str | None = None
    client: str | None = None
    #: 0 interactive (default), 1 batch: batch waits behind interactive in the fair queue.
    priority: int = 0
    started: float = field(default_factory=time.perf_counter)
    principal: Principal | None = None
    target: Target | None = None
    #: Headers every reply to this call carries (deployment served, decisions).
    reply_headers: dict[str, str] = field(default_factory=dict)
    #: The data level the caller declared in its request header, unchecked.
    declared_level: str | None = None
    #: How sensitive the request's data is (public, internal, confidential, restricted).
    data_level: str = "internal"
    #: Only self-hosted deployments may serve this call, on every attempt and fallback.
    self_hosted_only: bool = False
    #: What the inspection stages decided, for headers and the audit log.
    decisions: dict[str, str] = field(default_factory=dict)
    #: The answering upstream attempt: seconds to its reply or first real chunk, and
    #: (streams) when that first chunk arrived (``perf_counter``).
    upstream_seconds: float | None = None
    first_token_at: float | None = None
    #: Upstream attempts made (set by the executor): more than one means it failed over.
    attempts: int = 0
    #: The failed ones, as (deployment, error code); None while there is none.
    failures: list[tuple[str, str]] | None = None
    #: Seconds this call waited in its model group's fair queue for a free slot.
    queued_seconds: float = 0.0
    #: What the call cost, once settled: integer micro-dollars, and GPU-seconds if priced so.
    cost_micros: int = 0
    gpu_seconds: float = 0.0
    #: For calls no model serves (the admin API): what the terminal stage runs.
    handler: Callable[[Call], Awaitable[Reply]] | None = None
    #: Tracing, when on: the caller's W3C traceparent, the tracer, the request span's
    #: context, and the header lines that carry the current attempt's span upstream.
    traceparent: str | None = None
    tracing: Tracing | None = None
    trace_context: Context | None = None
    upstream_headers: bytes = b""
