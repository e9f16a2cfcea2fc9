"""Stage: inspect the input — its data level, and what may leave the building.

The level is the highest of the caller's declared level (a header), its org's
default, and what detectors find (PII, the org's patterns and terms). A level
above what the key's role may send is refused (403). From ``self_hosted_from``
up (confidential by default) the call may only reach self-hosted deployments, on
every attempt and fallback; the executor refuses with 503 rather than leak.
"""

from __future__ import annotations

from dataclasses import dataclass

from sluicegate.config.safety import SafetyConfig
from sluicegate.errors import InvalidRequest, PermissionDenied
from sluicegate.pipeline.call import Call, Reply
from sluicegate.pipeline.stage import Next
from sluicegate.safety.levels import LEVELS, Rule, classify_text, higher, rank
from sluicegate.safety.texts import request_texts

__all__ = ["Inspect", "Policy"]


@dataclass(frozen=True, slots=True)
class Policy:
    """The settings that apply to one org's calls, resolved once at start-up."""

    default_level: str
    rules: tuple[Rule, ...]  # most sensitive level first


class Inspect:
    name = "inspect"

    def __init__(self, config: SafetyConfig) -> None:
        sensitivity = config.sensitivity
        self.header = sensitivity.header
        self.self_hosted_rank = rank(sensitivity.self_hosted_from)
        self.default = self._policy(config, None)
        self.policies = {org: self._policy(config, org) for org in config.orgs}

    @staticmethod
    def _policy(config: SafetyConfig, org: str | None) -> Policy:
        own = config.orgs.get(org) if org is not None else None
        rules = [*config.sensitivity.rules, *(own.rules if own is not None else ())]
        built = sorted(
            (Rule.build(r.name, r.level, r.pattern, r.terms) for r in rules),
            key=lambda rule: -rank(rule.level),
        )
        default = (own.default_level if own is not None else None) or (
            config.sensitivity.default_level
        )
        return Policy(default_level=default, rules=tuple(built))

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
        return await call_next(call)
