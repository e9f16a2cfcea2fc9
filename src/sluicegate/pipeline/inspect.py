"""Stage: inspect the input — its data level, its PII, and attacks hidden in it.

The level is the highest of the caller's declared level (a header), its org's
default, and what detectors find (PII in ``detect`` mode, the org's patterns and
terms). A level above what the key's role may send is refused (403). From
``self_hosted_from`` up (confidential by default) the call may only reach
self-hosted deployments, on every attempt and fallback; the executor refuses
with 503 rather than leak.

PII is found by ``safety.pii`` (Presidio with offline recognizers and spaCy NER,
run on a worker thread: NER costs tens of milliseconds) and, by mode, counted,
replaced by typed placeholders, masked (restored in the answer for this caller)
or refused; PII in the answer that the caller did not send is counted, redacted
or refused too (``pii.answers``). The injection check runs on user and tool
messages; a check that cannot decide blocks unless ``on_unknown: allow`` (fail
closed).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from sluicegate.config.safety import PiiConfig, SafetyConfig
from sluicegate.errors import ContentPolicyViolation, InvalidRequest, PermissionDenied
from sluicegate.pipeline.call import Call, Reply
from sluicegate.pipeline.stage import Next
from sluicegate.safety.answer import check_answer, checked_stream
from sluicegate.safety.levels import LEVELS, Rule, classify_text, higher, rank
from sluicegate.safety.moderation import build_moderation
from sluicegate.safety.output_checks import OutputChecks
from sluicegate.safety.texts import request_texts, system_texts, user_texts
from sluicegate.safety.verdict import Decision
from sluicegate.types import Endpoint

if TYPE_CHECKING:
    from sluicegate.safety.injection import InjectionCheck
    from sluicegate.safety.pii import Mask, PiiDetector

log = logging.getLogger("sluicegate.safety")

__all__ = ["Inspect", "Policy"]


@dataclass(frozen=True, slots=True)
class Policy:
    """The settings that apply to one org's calls, resolved once at start-up."""

    default_level: str
    rules: tuple[Rule, ...]  # most sensitive level first
    pii: PiiConfig
    detector: PiiDetector | None


class Inspect:
    name = "inspect"

    def __init__(self, config: SafetyConfig) -> None:
        sensitivity = config.sensitivity
        self.header = sensitivity.header
        self.self_hosted_rank = rank(sensitivity.self_hosted_from)
        self.pii_level = sensitivity.pii_level
        self._detectors: dict[tuple[str, ...], PiiDetector] = {}
        self.default = self._policy(config, None)
        self.policies = {org: self._policy(config, org) for org in config.orgs}
        guardrails = config.guardrails
        self.fail_open = guardrails.on_unknown == "allow"
        self.injection: InjectionCheck | None = None
        if guardrails.injection:
            from sluicegate.safety.injection import InjectionCheck

            self.injection = InjectionCheck.build(
                guardrails.injection_model, guardrails.injection_threshold
            )
        self.moderation = [build_moderation(c) for c in guardrails.moderation]
        self.output = OutputChecks(guardrails.output) if guardrails.output is not None else None

    async def start(self) -> None:
        await asyncio.gather(*(adapter.start() for adapter in self.moderation))

    async def close(self) -> None:
        await asyncio.gather(
            *(adapter.close() for adapter in self.moderation), return_exceptions=True
        )

    def _detector(self, pii: PiiConfig) -> PiiDetector | None:
        """One detector per set of entity types, built (and its model loaded) at start-up."""
        if pii.mode == "off" and pii.answers == "off":
            return None
        from sluicegate.safety.pii import SUPPORTED_TYPES, PiiDetector

        types = tuple(sorted(pii.entities or SUPPORTED_TYPES))
        if types not in self._detectors:
            self._detectors[types] = PiiDetector(types=types)
        return self._detectors[types]

    def _policy(self, config: SafetyConfig, org: str | None) -> Policy:
        own = config.orgs.get(org) if org is not None else None
        rules = [*config.sensitivity.rules, *(own.rules if own is not None else ())]
        built = sorted(
            (Rule.build(r.name, r.level, r.pattern, r.terms) for r in rules),
            key=lambda rule: -rank(rule.level),
        )
        default = (own.default_level if own is not None else None) or (
            config.sensitivity.default_level
        )
        pii = (own.pii if own is not None else None) or config.pii
        return Policy(
            default_level=default, rules=tuple(built), pii=pii, detector=self._detector(pii)
        )

    async def __call__(self, call: Call, call_next: Next) -> Reply:
        if call.model is None:
            return await call_next(call)
        principal = call.principal
        policy = self.policies.get(principal.org or "", self.default) if principal else self.default
        level = policy.default_level
        declared = call.declared_level
        if declared is not None:
            if declared not in LEVELS:
                raise InvalidRequest(
                    f"Header '{self.header}' must be one of {', '.join(LEVELS)}.",
                    param=self.header,
                    code="invalid_data_level",
                )
            level = higher(level, declared)
        if policy.rules:
            level, rule = classify_text(
                request_texts(call.endpoint, call.body), policy.rules, level
            )
            if rule is not None:
                call.decisions["level_rule"] = rule
        mask = None
        if policy.detector is not None and policy.pii.mode != "off":
            level, mask = await self._pii(call, policy, level)
        if self.injection is not None:
            await self._guard(call)
        if self.moderation:
            await self._moderate(call)
        call.data_level = level
        call.reply_headers["x-sluicegate-data-level"] = level
        if principal is not None and rank(level) > rank(principal.data_access):
            raise PermissionDenied(
                f"This request's data is '{level}', above what role '{principal.role}' may "
                f"send ('{principal.data_access}').",
                code="data_level_not_allowed",
            )
        if rank(level) >= self.self_hosted_rank:
            call.self_hosted_only = True
            call.decisions["route"] = f"self-hosted-only:{level}"
        reply = await call_next(call)
        if self.output is not None and call.endpoint is not Endpoint.EMBEDDINGS:
            self._check_output(call, reply)
        if policy.pii.answers != "off" and call.endpoint is not Endpoint.EMBEDDINGS:
            await self._answer_pii(call, policy, reply)
        if mask is not None and mask.originals:
            from sluicegate.safety.restore import restore_body, restore_stream

            if reply.stream is not None:
                reply.stream = restore_stream(reply.stream, mask)
            elif reply.body is not None and reply.status < 400:
                reply.body = restore_body(reply.body, mask)
        return reply

    async def _pii(self, call: Call, policy: Policy, level: str) -> tuple[str, Mask | None]:
        """Find PII on a worker thread; count, replace, mask or refuse it by mode."""
        from sluicegate.safety.pii import BodyMode, protect_body

        assert policy.detector is not None
        mode = policy.pii.mode
        body_mode: BodyMode = (
            "redact" if mode == "redact" else "mask" if mode == "mask" else "detect"
        )
        try:
            found = await asyncio.to_thread(
                protect_body, call.body, policy.detector.detect, body_mode
            )
        except Exception as exc:
            # A detector that cannot decide must not wave the data through.
            log.error("PII detection failed", exc_info=exc, extra={"request_id": call.request_id})
            call.decisions["pii"] = "unknown"
            if self.fail_open:
                return level, None
            raise ContentPolicyViolation("pii") from None
        if not found.found:
            return level, None
        summary = ",".join(f"{kind}={n}" for kind, n in sorted(found.found.items()))
        call.decisions["pii"] = f"{mode}:{summary}"
        if mode == "block":
            raise ContentPolicyViolation("pii")
        if mode == "detect":
            if self.pii_level is not None:
                level = higher(level, self.pii_level)
            return level, None
        call.body = found.body
        call.raw = None  # the upstream gets the redacted body, not the client's bytes
        return level, found.mask if mode == "mask" else None

    async def _answer_pii(self, call: Call, policy: Policy, reply: Reply) -> None:
        """PII the answer holds that the caller did not send (``pii.answers``); before
        masked values are restored, so the caller's own data is never counted."""
        from sluicegate.safety.pii.answer import AnswerPii

        assert policy.detector is not None
        mode = policy.pii.answers
        assert mode != "off"
        check = AnswerPii(
            policy.detector.detect,
            mode,
            request_texts(call.endpoint, call.body),
            call.decisions,
            fail_open=self.fail_open,
        )
        if reply.stream is not None:
            reply.stream = check.check_stream(reply.stream)
            return
        if reply.body is None or reply.status >= 400:
            return
        try:
            reply.body = await check.check_body(reply.body)
        except ContentPolicyViolation as exc:
            # As for the other answer checks: an error reply, so the tokens still settle.
            reply.status = 400
            reply.body = orjson.dumps(exc.body())

    def _check_output(self, call: Call, reply: Reply) -> None:
        assert self.output is not None
        system = system_texts(call.endpoint, call.body)
        inputs = user_texts(call.endpoint, call.body)
        if reply.stream is not None:
            reply.stream = checked_stream(reply.stream, self.output.scan(system, inputs))
            return
        if reply.body is None or reply.status >= 400:
            return
        verdict = check_answer(self.output, reply.body, system, inputs)
        if verdict is not None:
            call.decisions["output"] = f"{verdict.decision.value}:{verdict.check}"
            # An error reply, not a raise: the tokens were spent and must still be settled.
            reply.status = 400
            reply.body = orjson.dumps(ContentPolicyViolation(verdict.check).body())

    async def _moderate(self, call: Call) -> None:
        text = "\n".join(user_texts(call.endpoint, call.body))
        verdicts = await asyncio.gather(*(adapter.check(text) for adapter in self.moderation))
        for verdict in verdicts:
            if verdict.decision is Decision.ALLOW:
                continue
            call.decisions[verdict.check] = f"{verdict.decision.value}:{verdict.reason}"
            if verdict.decision is Decision.UNKNOWN and self.fail_open:
                continue
            raise ContentPolicyViolation(verdict.check)

    async def _guard(self, call: Call) -> None:
        assert self.injection is not None
        texts = user_texts(call.endpoint, call.body)
        if self.injection.slow:
            # The MiniLM model costs tens of milliseconds: off the loop, as PII's NER is.
            verdict = await asyncio.to_thread(self.injection.check_messages, texts)
        else:
            verdict = self.injection.check_messages(texts)
        if verdict.decision is Decision.ALLOW:
            return
        call.decisions["injection"] = f"{verdict.decision.value}:{verdict.reason}"
        if verdict.decision is Decision.UNKNOWN and self.fail_open:
            return
        raise ContentPolicyViolation("injection")
