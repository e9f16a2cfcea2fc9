"""routing/router: model name → group → deployment, in weighted round-robin order."""

from __future__ import annotations

from typing import Any

import pytest

from sluicegate.config.schema import Config
from sluicegate.errors import InvalidRequest, ModelNotFound
from sluicegate.pipeline.call import Call
from sluicegate.providers.openai_compat import OpenAICompatProvider
from sluicegate.routing.router import Router
from sluicegate.types import Endpoint


def dep(name: str, **fields: Any) -> dict[str, Any]:
    return {"provider": "openai", "base_url": f"http://{name}/v1", "id": name, **fields}


def router(*models: dict[str, Any]) -> Router:
    return Router(Config.model_validate({"models": list(models)}))


def picks(r: Router, model: str, count: int, endpoint: Endpoint = Endpoint.CHAT) -> list[str]:
    group = r.resolve(model, endpoint)
    call = Call(request_id="t", endpoint=endpoint, model=model)
    chosen = []
    for _ in range(count):
        target = group.balancer.pick(group.targets, call)
        assert target is not None
        chosen.append(target.deployment_id)
    return chosen


def test_single_deployment() -> None:
    r = router({"name": "m", "deployments": [dep("a")]})
    assert picks(r, "m", 3) == ["a", "a", "a"]


def test_equal_weights_alternate() -> None:
    r = router({"name": "m", "deployments": [dep("a"), dep("b")]})
    assert picks(r, "m", 4) == ["a", "b", "a", "b"]


def test_weights_two_to_one_interleave() -> None:
    r = router({"name": "m", "deployments": [dep("a", weight=2), dep("b")]})
    assert picks(r, "m", 6) == ["a", "b", "a", "a", "b", "a"]


def test_weights_spread_heavy_deployment() -> None:
    r = router({"name": "m", "deployments": [dep("a"), dep("b", weight=3), dep("c", weight=2)]})
    # nginx's smooth weighted round-robin: b c a b c b, heavy deployments spread out.
    assert picks(r, "m", 12) == ["b", "c", "a", "b", "c", "b"] * 2


def test_weighted_share_over_many_calls() -> None:
    r = router({"name": "m", "deployments": [dep("a", weight=2), dep("b", weight=1)]})
    chosen = picks(r, "m", 30)
    assert (chosen.count("a"), chosen.count("b")) == (20, 10)


def test_groups_have_independent_cycles() -> None:
    r = router(
        {"name": "x", "deployments": [dep("x1"), dep("x2")]},
        {"name": "y", "deployments": [dep("y1"), dep("y2")]},
    )
    assert picks(r, "x", 1) == ["x1"]
    assert picks(r, "y", 1) == ["y1"]
    assert picks(r, "x", 1) == ["x2"]


def test_target_fields() -> None:
    r = router(
        {
            "name": "chat",
            "deployments": [
                {"provider": "openai", "base_url": "http://h/v1", "model": "up-name"},
                {"provider": "openai", "base_url": "http://h/v1", "self_hosted": True},
            ],
        }
    )
    first, second = r.resolve("chat", Endpoint.CHAT).targets
    assert (first.model, first.deployment_id, first.upstream_model, first.self_hosted) == (
        "chat",
        "chat/0",
        "up-name",
        False,
    )
    assert (second.deployment_id, second.upstream_model, second.self_hosted) == (
        "chat/1",
        "chat",
        True,
    )
    assert isinstance(first.provider, OpenAICompatProvider)
    assert first.provider is not second.provider


def test_unknown_model_lists_the_models() -> None:
    r = router(
        {"name": "b-chat", "deployments": [dep("a")]},
        {"name": "a-embed", "kind": "embedding", "deployments": [dep("e")]},
    )
    with pytest.raises(ModelNotFound) as caught:
        r.resolve("gpt-5", Endpoint.CHAT)
    exc = caught.value
    assert exc.body() == {
        "error": {
            "message": "The model 'gpt-5' does not exist. Available models: b-chat, a-embed.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
    assert exc.status == 404
    assert r.model_names == ["b-chat", "a-embed"]


@pytest.mark.parametrize(
    ("kind", "endpoint", "path"),
    [
        ("chat", Endpoint.EMBEDDINGS, "/embeddings"),
        ("embedding", Endpoint.CHAT, "/chat"),
        ("embedding", Endpoint.COMPLETIONS, "/completions"),
    ],
)
def test_wrong_endpoint_for_kind(kind: str, endpoint: Endpoint, path: str) -> None:
    r = router({"name": "m", "kind": kind, "deployments": [dep("a")]})
    with pytest.raises(InvalidRequest) as caught:
        r.resolve("m", endpoint)
    exc = caught.value
    assert (exc.status, exc.param, exc.code) == (400, "model", "model_not_supported")
    assert exc.message.startswith("The model 'm' is a")
    assert f"{kind} model and does not serve {path}." in exc.message


def test_chat_model_serves_completions() -> None:
    r = router({"name": "m", "deployments": [dep("a")]})
    assert r.resolve("m", Endpoint.COMPLETIONS).targets[0].deployment_id == "a"


def test_targets_lists_every_deployment() -> None:
    r = router(
        {"name": "x", "deployments": [dep("x1"), dep("x2")]},
        {"name": "y", "kind": "embedding", "deployments": [dep("y1")]},
    )
    assert [t.deployment_id for t in r.targets()] == ["x1", "x2", "y1"]
