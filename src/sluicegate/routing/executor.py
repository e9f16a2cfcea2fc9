"""Route and call: pick a deployment, call it, and survive its failure.

For each model group in the call's chain (the model, then its fallbacks):

1. choose a deployment that is healthy, whose breaker lets calls through and that
   has a free slot; when every one is busy, wait in the group's fair queue;
2. call it. For a stream, wait for the first chunk too (bounded by the
   deployment's ``first_byte`` timeout), so that everything before the first byte
   reaches the client can still fail over without the client noticing;
3. on failure, classify it (``routing.retry``): a client error goes back to the
   caller at once (``context_length_exceeded`` first tries the context fallback);
   a silent or unreachable deployment is not tried again for this call; other
   failures are retried after Retry-After or a jittered backoff, within the
   group's attempt count and the call's time budget; then the next group.

After the first byte a stream cannot be restarted. If it breaks, the text sent
so far is offered to a deployment that accepts assistant prefill, and its
continuation is relayed as if nothing happened; if none accepts (or none is
configured), the stream ends with the original error in-band and no ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol

from sluicegate.errors import (
    RateLimited,
    ServiceUnavailable,
    SluicegateError,
    UpstreamError,
    UpstreamTimeout,
)
from sluicegate.observability.tracing import end_attempt
from sluicegate.pipeline.call import Call, Reply
from sluicegate.protocol.sse import aclose, json_chunks
from sluicegate.routing.retry import Outcome, backoff, classify, counts_against_deployment
from sluicegate.routing.router import ModelGroup, Router, Target
from sluicegate.types import Endpoint

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["Executor"]


class Executor:
    def __init__(self, router: Router, rng: random.Random | None = None) -> None:
        self.router = router
        self.rng = rng or random.Random()
        # Held after the first call: get_running_loop() costs a getpid() syscall on 3.11.
        self._loop: asyncio.AbstractEventLoop | None = None

    def _time(self) -> float:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop.time()

    async def run(self, call: Call) -> Reply:
        assert call.model is not None
        chain = list(self.router.chain(call.model))
        budget_end = self._time() + chain[0].retry.budget
        trail: list[str] = []
        tried = 0  # upstream attempts, for x-sluicegate-attempts
        last: SluicegateError | None = None
        took_context_fallback = False
        index = 0
        while index < len(chain):
            group = chain[index]
            index += 1
            shunned: set[str] = set()
            # Deployment → loop time before which this call must not ask it again
            # (its Retry-After, or our backoff after it failed).
            resting: dict[str, float] = {}
            retries = 0
            for attempt in range(group.retry.attempts):
                if trail and self._time() >= budget_end:
                    break
                if last is not None and all(t.deployment_id in shunned for t in group.targets):
                    break  # every deployment failed this call: its own error is the one to tell
                wake = _rested(group, shunned, resting, self._time())
                if wake is not None:
                    if wake >= budget_end:
                        break
                    await asyncio.sleep(wake - self._time())
                try:
                    target = await self._choose(group, call, shunned, resting, budget_end)
                except SluicegateError as exc:
                    trail.append(f"{group.name}:{exc.code}")
                    # A failure this call met is worth more to the caller than "none left".
                    last = last or exc
                    break
                call.target = target
                tried += 1
                call.attempts = tried
                try:
                    reply = await self._attempt(call, group, target, "")
                except SluicegateError as exc:
                    trail.append(f"{target.deployment_id}:{exc.status}")
                    if call.failures is None:
                        call.failures = []
                    call.failures.append((target.deployment_id, exc.code or exc.type))
                    last = exc
                    outcome = classify(exc)
                    if outcome is Outcome.FATAL:
                        fallback = group.context_fallback
                        if (
                            exc.code == "context_length_exceeded"
                            and fallback is not None
                            and not took_context_fallback
                        ):
                            took_context_fallback = True
                            chain.insert(index, self.router.groups[fallback])
                            break
                        raise _explained(exc, trail, tried) from None
                    if outcome is Outcome.FAILOVER:
                        shunned.add(target.deployment_id)
                        continue
                    if attempt == group.retry.attempts - 1:
                        break  # no retry follows in this group: no reason to wait
                    pause = self._pause(group, exc, retries)
                    retries += 1
                    if pause is None:
                        # Told to wait longer than we will: let another deployment answer.
                        shunned.add(target.deployment_id)
                        continue
                    resting[target.deployment_id] = self._time() + pause
                    continue
                call.reply_headers["x-sluicegate-deployment"] = target.deployment_id
                call.reply_headers["x-sluicegate-attempts"] = str(tried)
                if group is not chain[0]:
                    call.reply_headers["x-sluicegate-model"] = group.name
                return reply
        if last is None:
            last = ServiceUnavailable(f"No deployment of '{call.model}' could answer.")
        raise _explained(last, trail, tried)

    async def _choose(
        self,
        group: ModelGroup,
        call: Call,
        shunned: set[str],
        resting: dict[str, float],
        budget_end: float,
    ) -> Target:
        """A deployment with a free slot; waits its turn in the fair queue when all are busy."""
        woken = False
        while True:
            now = self._time()
            local_only = call.self_hosted_only
            candidates = [
                t
                for t in group.targets
                if t.deployment_id not in shunned
                and t.state.available()
                and resting.get(t.deployment_id, 0.0) <= now
                and (t.self_hosted or not local_only)
            ]
            if not candidates:
                raise _none_available(group, shunned, call)
            free = [t for t in candidates if t.state.has_capacity()]
            # Newcomers do not overtake callers already waiting for a slot.
            if free and (woken or not len(group.queue)):
                target = group.balancer.pick(free, call)
                if target is not None and target.state.breaker.allow():
                    return target
                continue
            tenant = call.principal.name if call.principal else "-"
            waited = now
            try:
                await group.queue.wait(tenant, call.priority, budget_end)
            finally:
                call.queued_seconds += self._time() - waited
            woken = True

    async def _attempt(self, call: Call, group: ModelGroup, target: Target, prefix: str) -> Reply:
        state = target.state
        state.started()
        started = self._time()
        span = (
            call.tracing.attempt(call, target, call.attempts) if call.tracing is not None else None
        )
        release = _releaser(group, target, span)
        try:
            reply = await target.provider.send(call)
            first = await _first_chunk(reply, target) if reply.stream is not None else b""
        except SluicegateError as exc:
            release(True if counts_against_deployment(exc) else None, exc)
            raise
        except BaseException:
            release(None)
            raise
        elapsed = self._time() - started
        state.observe_latency(elapsed)
        # For metrics: the answering attempt's time to its reply (or first real chunk).
        call.upstream_seconds = elapsed
        if reply.stream is not None:
            call.first_token_at = time.perf_counter()
        if reply.stream is None:
            release(False)
            return reply
        reply.stream = self._relay(call, group, target, reply, reply.stream, first, release, prefix)
        return reply

    async def _relay(
        self,
        call: Call,
        group: ModelGroup,
        target: Target,
        reply: Reply,
        inner: AsyncIterator[bytes],
        first: bytes,
        release: Release,
        prefix: str,
    ) -> AsyncIterator[bytes]:
        sent = (
            _Transcript(prefix)
            if call.endpoint is Endpoint.CHAT and self._prefill_exists(group)
            else None
        )
        failed = True
        try:
            if sent is not None:
                sent.collect(first)
            yield first
            async for events in inner:
                if sent is not None:
                    sent.collect(events)
                yield events
            failed = False
        except SluicegateError as exc:
            release(True if counts_against_deployment(exc) else None, exc)
            if sent is None or not sent.resumable:
                raise
            resumed = self._continue(call, group, target, reply, sent.text(), exc)
            try:
                async for events in resumed:
                    yield events
            finally:
                # Closed here, not by the garbage collector, so a departed client frees it now.
                await aclose(resumed)
            failed = False
        finally:
            release(None if failed else False)
            await aclose(inner)

    async def _continue(
        self,
        call: Call,
        group: ModelGroup,
        failed: Target,
        reply: Reply,
        text: str,
        cause: SluicegateError,
    ) -> AsyncIterator[bytes]:
        """Resume a cut chat stream on a deployment that accepts the text so far as prefill."""
        messages = list(call.body.get("messages") or [])
        body = {**call.body, "stream": True, "messages": [*messages]}
        if text:
            body["messages"].append({"role": "assistant", "content": text})
            # vLLM's switches for "continue this assistant message"; others ignore them.
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        for candidate_group in self.router.chain(group.name):
            for target in candidate_group.targets:
                if target is failed or not target.accepts_prefill:
                    continue
                if not (target.state.available() and target.state.breaker.allow()):
                    continue
                resumed = dataclasses.replace(
                    call, body=body, raw=None, model=candidate_group.name, target=target
                )
                try:
                    continuation = await self._attempt(resumed, candidate_group, target, text)
                except SluicegateError:
                    # A refused prefill must never hide the failure the caller should hear of.
                    continue
                if continuation.stream is None:
                    continue
                call.target = target
                try:
                    async for events in continuation.stream:
                        yield events
                finally:
                    await aclose(continuation.stream)
                reply.usage = continuation.usage
                return
        raise cause

    def _prefill_exists(self, group: ModelGroup) -> bool:
        return any(t.accepts_prefill for g in self.router.chain(group.name) for t in g.targets)

    def _pause(self, group: ModelGroup, exc: SluicegateError, retries: int) -> float | None:
        """Seconds to wait before the next attempt, or None to fail over instead."""
        if isinstance(exc, RateLimited) and exc.hinted:
            if exc.retry_after > group.retry.retry_after_max:
                return None
            return exc.retry_after
        return backoff(group.retry, retries, self.rng)


class Release(Protocol):
    def __call__(self, failed: bool | None, error: SluicegateError | None = None) -> None: ...


def _releaser(group: ModelGroup, target: Target, span: Span | None) -> Release:
    """Frees the slot exactly once and tells the breaker: True failed, False succeeded,
    None neither (a client error or a caller that left says nothing about the deployment).
    Ends the attempt's span too, when tracing."""
    done = False

    def release(failed: bool | None, error: SluicegateError | None = None) -> None:
        nonlocal done
        if done:
            return
        done = True
        if span is not None:
            end_attempt(span, failed, error)
        target.state.finished()
        if failed is True:
            target.state.breaker.record_failure()
        elif failed is False:
            target.state.breaker.record_success()
        else:
            target.state.breaker.release_probe()
        group.queue.notify()

    return release


async def _first_chunk(reply: Reply, target: Target) -> bytes:
    """Wait for a stream's first token (an early role-only chunk does not count): until
    then nothing has reached the client, so failing over is invisible to it."""
    stream = reply.stream
    assert stream is not None
    limit = target.config.timeouts.first_byte
    held: list[bytes] = []
    try:
        async with asyncio.timeout(limit):
            while True:
                events = await anext(stream)
                held.append(events)
                if _substantive(events):
                    return b"".join(held)
    except TimeoutError as exc:
        await aclose(stream)
        raise UpstreamTimeout(
            f"Deployment '{target.deployment_id}' sent no first token within {limit:g}s."
        ) from exc
    except StopAsyncIteration as exc:
        if held:
            return b"".join(held)
        raise UpstreamError(
            f"Deployment '{target.deployment_id}' ended the stream before it began."
        ) from exc


class _Transcript:
    """The assistant text a stream has sent, kept in case a continuation must resume it.

    Only plain text of one choice can be resumed by prefill; once a tool call or a
    second choice has gone out, a continuation would glue a fresh answer onto a cut
    one, so the stream is marked not resumable.
    """

    __slots__ = ("parts", "resumable")

    def __init__(self, prefix: str) -> None:
        self.parts = [prefix]
        self.resumable = True

    def text(self) -> str:
        return "".join(self.parts)

    def collect(self, events: bytes) -> None:
        for chunk in json_chunks(events):
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if not isinstance(delta, dict):
                    continue
                if (
                    choice.get("index", 0) != 0
                    or delta.get("tool_calls")
                    or delta.get("function_call")
                ):
                    self.resumable = False
                content = delta.get("content")
                if isinstance(content, str):
                    self.parts.append(content)


def _substantive(events: bytes) -> bool:
    """Does this carry the answer itself (text, a tool call, an end), not just the role?"""
    if b"[DONE]" in events:
        return True
    for chunk in json_chunks(events):
        if chunk.get("usage") or chunk.get("error"):
            return True
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            if choice.get("finish_reason") or choice.get("text"):
                return True
            delta = choice.get("delta")
            if isinstance(delta, dict) and (
                delta.get("content") or delta.get("tool_calls") or delta.get("function_call")
            ):
                return True
    return False


def _none_available(group: ModelGroup, shunned: set[str], call: Call) -> ServiceUnavailable:
    reasons = []
    wait = 0.0
    for t in group.targets:
        if call.self_hosted_only and not t.self_hosted:
            reasons.append(f"{t.deployment_id} is not self-hosted")
        elif t.deployment_id in shunned:
            reasons.append(f"{t.deployment_id} failed this call")
        elif not t.state.healthy:
            reasons.append(f"{t.deployment_id} unhealthy")
        elif not t.state.breaker.can_try():
            retry_in = t.state.breaker.retry_in()
            wait = min(wait, retry_in) if wait else retry_in
            reasons.append(f"{t.deployment_id} breaker open (retry in {retry_in:.0f}s)")
    if call.self_hosted_only and not any(
        t.self_hosted and t.deployment_id not in shunned and t.state.available()
        for t in group.targets
    ):
        # Refuse rather than leak: this call's data may only reach self-hosted machines.
        exc = ServiceUnavailable(
            f"This call may only reach self-hosted deployments (data level "
            f"'{call.data_level}'), and none of '{group.name}' can take it: "
            f"{', '.join(reasons)}.",
            code="no_self_hosted_deployment",
        )
    else:
        exc = ServiceUnavailable(
            f"No deployment of '{group.name}' can take the call: {', '.join(reasons)}.",
            code="no_healthy_deployment",
        )
    if wait:
        exc.headers["retry-after"] = str(max(1, int(wait + 0.999)))
    return exc


def _explained(exc: SluicegateError, trail: list[str], tried: int) -> SluicegateError:
    if trail:
        exc.headers["x-sluicegate-attempts"] = str(tried)
        exc.headers["x-sluicegate-route"] = ",".join(trail)
    return exc


def _rested(
    group: ModelGroup, shunned: set[str], resting: dict[str, float], now: float
) -> float | None:
    """When every deployment still in play is resting, the time the first may be asked."""
    wake: float | None = None
    for t in group.targets:
        if t.deployment_id in shunned or not t.state.available():
            continue
        until = resting.get(t.deployment_id, 0.0)
        if until <= now:
            return None
        wake = until if wake is None else min(wake, until)
    return wake
