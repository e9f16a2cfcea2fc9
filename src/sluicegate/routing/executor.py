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
from collections.abc import AsyncIterator, Callable

import orjson

from sluicegate.errors import (
    RateLimited,
    ServiceUnavailable,
    SluicegateError,
    UpstreamError,
    UpstreamTimeout,
)
from sluicegate.pipeline.call import Call, Reply
from sluicegate.protocol.sse import aclose, data_payloads
from sluicegate.routing.retry import Outcome, backoff, classify, counts_against_deployment
from sluicegate.routing.router import ModelGroup, Router, Target
from sluicegate.types import Endpoint

__all__ = ["Executor"]


class Executor:
    def __init__(self, router: Router, rng: random.Random | None = None) -> None:
        self.router = router
        self.rng = rng or random.Random()

    async def run(self, call: Call) -> Reply:
        assert call.model is not None
        loop = asyncio.get_running_loop()
        chain = list(self.router.chain(call.model))
        budget_end = loop.time() + chain[0].retry.budget
        trail: list[str] = []
        last: SluicegateError | None = None
        took_context_fallback = False
        index = 0
        while index < len(chain):
            group = chain[index]
            index += 1
            shunned: set[str] = set()
            retries = 0
            for attempt in range(group.retry.attempts):
                if trail and loop.time() >= budget_end:
                    break
                if last is not None and all(t.deployment_id in shunned for t in group.targets):
                    break  # every deployment failed this call: its own error is the one to tell
                try:
                    target = await self._choose(group, call, shunned, budget_end)
                except SluicegateError as exc:
                    trail.append(f"{group.name}:{exc.code}")
                    last = exc
                    break
                call.target = target
                try:
                    reply = await self._attempt(call, group, target, "")
                except SluicegateError as exc:
                    trail.append(f"{target.deployment_id}:{exc.status}")
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
                        raise _explained(exc, trail) from None
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
                    if loop.time() + pause >= budget_end:
                        break
                    if pause > 0 and not self._other_free(group, target, shunned):
                        await asyncio.sleep(pause)
                    continue
                call.reply_headers["x-sluicegate-deployment"] = target.deployment_id
                call.reply_headers["x-sluicegate-attempts"] = str(len(trail) + 1)
                if group is not chain[0]:
                    call.reply_headers["x-sluicegate-model"] = group.name
                return reply
        if last is None:
            last = ServiceUnavailable(f"No deployment of '{call.model}' could answer.")
        raise _explained(last, trail)

    async def _choose(
        self, group: ModelGroup, call: Call, shunned: set[str], budget_end: float
    ) -> Target:
        """A deployment with a free slot; waits its turn in the fair queue when all are busy."""
        woken = False
        while True:
            candidates = [
                t for t in group.targets if t.deployment_id not in shunned and t.state.available()
            ]
            if not candidates:
                raise _none_available(group, shunned)
            free = [t for t in candidates if t.state.has_capacity()]
            # Newcomers do not overtake callers already waiting for a slot.
            if free and (woken or not len(group.queue)):
                target = group.balancer.pick(free, call)
                if target is not None and target.state.breaker.allow():
                    return target
                continue
            tenant = call.principal.name if call.principal else "-"
            await group.queue.wait(tenant, call.priority, budget_end)
            woken = True

    async def _attempt(self, call: Call, group: ModelGroup, target: Target, prefix: str) -> Reply:
        state = target.state
        state.started()
        loop = asyncio.get_running_loop()
        started = loop.time()
        release = _releaser(group, target)
        try:
            reply = await target.provider.send(call)
            first = await _first_chunk(reply, target) if reply.stream is not None else b""
        except SluicegateError as exc:
            release(counts_against_deployment(exc))
            raise
        except BaseException:
            release(None)
            raise
        state.observe_latency(loop.time() - started)
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
        release: Callable[[bool | None], None],
        prefix: str,
    ) -> AsyncIterator[bytes]:
        sent: list[str] | None = (
            [prefix] if call.endpoint is Endpoint.CHAT and self._prefill_exists(group) else None
        )
        failed = True
        try:
            if sent is not None:
                _collect(first, sent)
            yield first
            async for events in inner:
                if sent is not None:
                    _collect(events, sent)
                yield events
            failed = False
        except SluicegateError as exc:
            release(counts_against_deployment(exc))
            if sent is None:
                raise
            async for events in self._continue(call, group, target, reply, "".join(sent), exc):
                yield events
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
                async for events in continuation.stream:
                    yield events
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

    def _other_free(self, group: ModelGroup, failed: Target, shunned: set[str]) -> bool:
        return any(
            t is not failed
            and t.deployment_id not in shunned
            and t.state.available()
            and t.state.has_capacity()
            for t in group.targets
        )


def _releaser(group: ModelGroup, target: Target) -> Callable[[bool | None], None]:
    """Frees the slot exactly once and tells the breaker: True failed, False succeeded,
    None neither (a client error or a caller that left says nothing about the deployment)."""
    done = False

    def release(failed: bool | None) -> None:
        nonlocal done
        if done:
            return
        done = True
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
    """Wait for a stream's first chunk: until then, failing over is invisible to the client."""
    stream = reply.stream
    assert stream is not None
    limit = target.config.timeouts.first_byte
    try:
        async with asyncio.timeout(limit):
            return await anext(stream)
    except TimeoutError as exc:
        await aclose(stream)
        raise UpstreamTimeout(
            f"Deployment '{target.deployment_id}' sent no first token within {limit:g}s."
        ) from exc
    except StopAsyncIteration as exc:
        raise UpstreamError(
            f"Deployment '{target.deployment_id}' ended the stream before it began."
        ) from exc


def _collect(events: bytes, sent: list[str]) -> None:
    """Append the assistant text in these chat chunks (for a possible continuation)."""
    for payload in data_payloads(events):
        if payload == b"[DONE]":
            continue
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        for choice in chunk.get("choices") or () if isinstance(chunk, dict) else ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str):
                sent.append(content)


def _none_available(group: ModelGroup, shunned: set[str]) -> ServiceUnavailable:
    reasons = []
    wait = 0.0
    for t in group.targets:
        if t.deployment_id in shunned:
            reasons.append(f"{t.deployment_id} failed this call")
        elif not t.state.healthy:
            reasons.append(f"{t.deployment_id} unhealthy")
        elif not t.state.breaker.can_try():
            retry_in = t.state.breaker.retry_in()
            wait = min(wait, retry_in) if wait else retry_in
            reasons.append(f"{t.deployment_id} breaker open (retry in {retry_in:.0f}s)")
    exc = ServiceUnavailable(
        f"No deployment of '{group.name}' can take the call: {', '.join(reasons)}.",
        code="no_healthy_deployment",
    )
    if wait:
        exc.headers["retry-after"] = str(max(1, int(wait + 0.999)))
    return exc


def _explained(exc: SluicegateError, trail: list[str]) -> SluicegateError:
    if trail:
        exc.headers["x-sluicegate-attempts"] = str(len(trail))
        exc.headers["x-sluicegate-route"] = ",".join(trail)
    return exc
