"""Stage: check that the model exists, serves this endpoint, and that the caller may use it."""

from __future__ import annotations

from fnmatch import fnmatchcase

from sluicegate.errors import PermissionDenied
from sluicegate.pipeline.call import Call, Principal, Reply
from sluicegate.pipeline.stage import Next
from sluicegate.routing.router import ModelGroup, Router

__all__ = ["Route", "may_use"]


def may_use(principal: Principal, group: ModelGroup) -> bool:
    """The role allows this model by name, and one of its kinds of deployment."""
    if principal.models is not None and not any(
        fnmatchcase(group.name, pattern) for pattern in principal.models
    ):
        return False
    access = principal.llm_access
    if "cloud" in access and "local" in access:
        return True
    # A local-only role reaches a mixed group's self-hosted deployments only (Route
    # marks the call so); a group with none is not for it.
    kinds = {"local" if target.self_hosted else "cloud" for target in group.targets}
    return bool(kinds & access)


class Route:
    """Checks the model and the caller's role; the executor then picks deployments."""

    name = "route"

    def __init__(self, router: Router) -> None:
        self.router = router

    async def __call__(self, call: Call, call_next: Next) -> Reply:
        principal = call.principal
        if call.model is not None:
            group = self.router.resolve(call.model, call.endpoint)
            if principal is not None:
                if not may_use(principal, group):
                    raise PermissionDenied(
                        f"Role '{principal.role}' may not use model '{call.model}'.",
                        param="model",
                        code="model_not_allowed",
                    )
                if "cloud" not in principal.llm_access:
                    call.self_hosted_only = True
                    call.decisions["route"] = "self-hosted-only:role"
        return await call_next(call)
