"""Model name → group of deployments → the deployment that serves this call."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from sluicegate.config.schema import Config, Deployment, ModelConfig
from sluicegate.errors import InvalidRequest, ModelNotFound
from sluicegate.providers import Provider, build_provider
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


class ModelGroup:
    """The deployments behind one model name, picked in weighted round-robin order."""

    def __init__(self, config: ModelConfig, targets: list[Target], weights: list[int]) -> None:
        self.name = config.name
        self.kind = config.kind
        self.endpoints = _KIND_ENDPOINTS[config.kind]
        self.targets = targets
        # Interleave by weight (a:2, b:1 → a b a) so a heavy deployment is not hit in bursts.
        order: list[Target] = []
        for step in range(max(weights)):
            order.extend(t for t, w in zip(targets, weights, strict=True) if w > step)
        self._cycle: Iterator[Target] = itertools.cycle(order)

    def pick(self) -> Target:
        return next(self._cycle)


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
                )
                for index, dep in enumerate(model.deployments)
            ]
            weights = [dep.weight for dep in model.deployments]
            self.groups[model.name] = ModelGroup(model, targets, weights)

    @property
    def model_names(self) -> list[str]:
        return list(self.groups)

    def targets(self) -> Iterator[Target]:
        for group in self.groups.values():
            yield from group.targets

    def resolve(self, model: str, endpoint: Endpoint) -> Target:
        group = self.groups.get(model)
        if group is None:
            raise ModelNotFound(model, self.model_names)
        if endpoint not in group.endpoints:
            raise InvalidRequest(
                f"The model '{model}' is {'an' if group.kind == 'embedding' else 'a'} "
                f"{group.kind} model and does not serve "
                f"/{endpoint.value}.",
                param="model",
                code="model_not_supported",
            )
        return group.pick()


def _upstream_name(model: ModelConfig, dep: Deployment) -> str:
    upstream = getattr(dep, "model", None)
    return upstream if isinstance(upstream, str) and upstream else model.name
