"""Routing over real upstreams: weighted round-robin is what the upstreams actually see."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx2
import openai
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import MASTER_KEY, GatewayFactory

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def weighted_gateway(start_gateway: GatewayFactory, upstream_url: str) -> str:
    return start_gateway(
        {
            "models": [
                {
                    "name": "chat",
                    "deployments": [
                        {
                            "provider": "openai",
                            "id": "heavy",
                            "base_url": f"{upstream_url}/ok/v1",
                            "api_key": "sk-heavy",
                            "weight": 2,
                        },
                        {
                            "provider": "openai",
                            "id": "light",
                            "base_url": f"{upstream_url}/ok2/v1",
                            "api_key": "sk-light",
                            "model": "light-upstream",
                        },
                    ],
                },
                {
                    "name": "other",
                    "deployments": [{"provider": "openai", "base_url": f"{upstream_url}/ok3/v1"}],
                },
            ]
        }
    )


def test_weights_split_calls_two_to_one(
    start_gateway: GatewayFactory, upstream_url: str, seen: list[dict[str, Any]]
) -> None:
    url = weighted_gateway(start_gateway, upstream_url)
    served: list[str] = []
    with httpx2.Client(timeout=10) as http:
        for _ in range(30):
            r = http.post(
                url + "/v1/chat/completions", json={"model": "chat", "messages": HI}, headers=AUTH
            )
            assert r.status_code == 200
            served.append(r.headers["x-sluicegate-deployment"])
    assert served[:6] == ["heavy", "light", "heavy", "heavy", "light", "heavy"]
    assert Counter(served) == {"heavy": 20, "light": 10}
    # What the upstreams received agrees with the headers, request by request.
    received = [(s["path"], s["headers"]["authorization"], s["body"]["model"]) for s in seen]
    expected = {
        "heavy": ("/ok/v1/chat/completions", "Bearer sk-heavy", "chat"),
        "light": ("/ok2/v1/chat/completions", "Bearer sk-light", "light-upstream"),
    }
    assert received == [expected[name] for name in served]


def test_streams_and_other_endpoints_share_the_rotation(
    start_gateway: GatewayFactory, upstream_url: str, seen: list[dict[str, Any]]
) -> None:
    url = weighted_gateway(start_gateway, upstream_url)
    with openai.OpenAI(base_url=url + "/v1", api_key=MASTER_KEY, max_retries=0) as client:
        first = client.chat.completions.with_raw_response.create(
            model="chat",
            messages=HI,
            stream=True,
        )
        assert first.headers["x-sluicegate-deployment"] == "heavy"
        stream = first.parse()
        assert isinstance(stream, openai.Stream)
        assert "".join(c.choices[0].delta.content or "" for c in stream) == "echo: hi"
        second = client.completions.with_raw_response.create(model="chat", prompt="p")
        assert second.headers["x-sluicegate-deployment"] == "light"
        other = client.chat.completions.with_raw_response.create(
            model="other",
            messages=HI,
        )
        assert other.headers["x-sluicegate-deployment"] == "other/0"
        third = client.chat.completions.with_raw_response.create(
            model="chat",
            messages=HI,
        )
        assert third.headers["x-sluicegate-deployment"] == "heavy"
    assert [s["path"] for s in seen] == [
        "/ok/v1/chat/completions",
        "/ok2/v1/completions",
        "/ok3/v1/chat/completions",
        "/ok/v1/chat/completions",
    ]


def test_refused_calls_do_not_advance_the_rotation(
    start_gateway: GatewayFactory, upstream_url: str
) -> None:
    url = weighted_gateway(start_gateway, upstream_url)
    with httpx2.Client(timeout=10) as http:
        body = {"model": "chat", "messages": HI}
        for bad in ({"model": "chat"}, {**body, "temperature": 9}):
            assert (
                http.post(url + "/v1/chat/completions", json=bad, headers=AUTH).status_code == 400
            )
        unauthenticated = http.post(url + "/v1/chat/completions", json=body)
        assert unauthenticated.status_code == 401
        served = [
            http.post(url + "/v1/chat/completions", json=body, headers=AUTH).headers[
                "x-sluicegate-deployment"
            ]
            for _ in range(3)
        ]
    assert served == ["heavy", "light", "heavy"]
