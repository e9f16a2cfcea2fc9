"""Model name → group of deployments → the deployment that serves this call."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sluicegate.config.schema import Config, Deployment, ModelConfig
from sluicegate.errors import InvalidRequest, ModelNotFound
from sluicegate.providers import Provider, build_provider
from sluicegate.routing.admission import FairQueue
from sluicegate.routing.balancer import build_balancer
from sluicegate.routing.state import DeploymentState
from sluicegate.types import Endpoint

__all__ = ["ModelGroup", "Router", "Target"]

_KIND_ENDPOINTS = {
    "chat": frozenset({Endpoint.CHAT, Endpoint.COMPLETIONS}),
    "embedding": frozenset({Endpoint.EMBEDDINGS}),
}


@dataclass(slots=True, frozen=True)
class Target:
    """One deployment, as routing hands it to a provider."""

    model: str
    deployment_id: str
    upstream_model: str
    self_hosted: bool
    provider: Provider
    weight: int
    accepts_prefill: bool
    config: Deployment
    state: DeploymentState


class ModelGroup:
    """The deployments behind one model name, with how to pick among them and retry."""

    def __init__(self, config: ModelConfig, targets: list[Target]) -> None:
        self.name = config.name
        self.kind = config.kind
        self.endpoints = _KIND_ENDPOINTS[config.kind]
        self.targets = targets
        self.retry = config.routing.retry
        self.fallbacks = tuple(config.fallbacks)
        self.context_fallback = config.context_fallback
        self.balancer = build_balancer(config.routing)
        self.queue = FairQueue(config.routing.queue)


class Router:
    def __init__(self, config: Config) -> None:
        self.groups: dict[str, ModelGroup] = {}
        for model in config.models:
            targets = [
                Target(
                    model=model.name,
                    deployment_id=dep.id or f"{model.name}/{index}",
                    upstream_model=_upstream_name(model, dep),
                    self_hosted=dep.self_hosted,
                    provider=build_provider(model, dep),
                    weight=dep.weight,
                    accepts_prefill=dep.accepts_prefill,
                    config=dep,
                    state=DeploymentState(dep),
                )
                for index, dep in enumerate(model.deployments)
            ]
            self.groups[model.name] = ModelGroup(model, targets)
        self._chains = {
            name: (group, *(self.groups[f] for f in group.fallbacks))
            for name, group in self.groups.items()
        }

    @property
    def model_names(self) -> list[str]:
        return list(self.groups)

    def targets(self) -> Iterator[Target]:
        for group in self.groups.values():
            yield from group.targets

    def resolve(self, model: str, endpoint: Endpoint) -> ModelGroup:
        group = self.groups.get(model)
        if group is None:
            raise ModelNotFound(model, self.model_names)
        if endpoint not in group.endpoints:
            raise InvalidRequest(
                f"The model '{model}' is {'an' if group.kind == 'embedding' else 'a'} "
                f"{group.kind} model and does not serve /{endpoint.value}.",
                param="model",
                code="model_not_supported",
            )
        return group

    def chain(self, model: str) -> tuple[ModelGroup, ...]:
        """The group for ``model``, then its fallbacks, in order."""
        return self._chains[model]


def _upstream_name(model: ModelConfig, dep: Deployment) -> str:
    upstream = getattr(dep, "model", None)
    return upstream if isinstance(upstream, str) and upstream else model.name
