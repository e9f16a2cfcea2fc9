"""The admin API over HTTP: who may use it, what it validates, and keys it issues taking effect."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from sluicegate.config.schema import Config
from sluicegate.server.app import create_app
from sluicegate.server.gateway import MasterKey
from sluicegate.server.routes.admin import ADMIN_OPS
from tests.conftest import APP_KEY, MASTER_KEY
from tests.fakes.databases import sqlite_url
from tests.fakes.servers import running

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]


def models(upstream_url: str) -> list[dict[str, Any]]:
    ok = f"{upstream_url}/ok/v1"
    return [
        {"name": "gpt-4o-mini", "deployments": [{"provider": "openai", "base_url": ok}]},
        {
            "name": "own-gpu",
            "deployments": [{"provider": "openai", "base_url": ok, "self_hosted": True}],
        },
    ]


@pytest.fixture
def start(upstream_url: str, tmp_path: Path) -> Iterator[Callable[..., str]]:
    with ExitStack() as stack:

        def start_gateway(**governance: Any) -> str:
            raw = {
                "database": {"url": sqlite_url(tmp_path)},
                "governance": governance,
                "auth": {"keys": [{"name": "app", "key": APP_KEY}]},
                "models": models(upstream_url),
            }
            app = create_app(Config.model_validate(raw), MasterKey(MASTER_KEY, "test"))
            return stack.enter_context(running(app))

        yield start_gateway


@pytest.fixture
def url(start: Callable[..., str]) -> str:
    return start()


def admin(
    url: str, method: str, path: str, body: Any = None, key: str = MASTER_KEY
) -> httpx2.Response:
    return httpx2.request(method, url + path, json=body, headers={"authorization": f"Bearer {key}"})


def chat(url: str, key: str, model: str = "gpt-4o-mini") -> Any:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    return client.chat.completions.create(model=model, messages=HELLO, max_tokens=5)


def new_key(url: str, **body: Any) -> dict[str, Any]:
    response = admin(url, "POST", "/admin/keys", {"name": "k", **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_every_admin_route_refuses_keys_that_are_not_admin(url: str) -> None:
    for op in ADMIN_OPS:
        path = op.path.format(org="acme", team="t", role="developer", key_id="abc")
        anonymous = httpx2.request(op.method, url + path, json={})
        assert anonymous.status_code == 401, (op.method, path)
        # A non-admin learns nothing, not even whether its body would have been valid.
        refused = admin(url, op.method, path, {"bogus": 1}, key=APP_KEY)
        assert refused.status_code == 403, (op.method, path, refused.text)
        assert refused.json()["error"]["code"] == "admin_only"


def test_an_issued_key_works_at_once_and_its_secret_is_never_stored_or_listed(
    url: str, tmp_path: Path
) -> None:
    assert admin(url, "POST", "/admin/orgs", {"name": "acme"}).status_code == 201
    created = new_key(url, org="acme", role="developer")
    key = created["key"]
    assert key.startswith("sk-sg-" + created["id"] + "_")
    assert created["prefix"] == "sk-sg-" + created["id"]
    assert chat(url, key).choices[0].message.content

    listed = admin(url, "GET", "/admin/keys?org=acme").json()["data"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0] and "digest" not in listed[0] and "salt" not in listed[0]
    assert key.encode() not in (tmp_path / "sluicegate.db").read_bytes()


def test_a_revoked_key_is_refused_with_its_reason(url: str) -> None:
    key = new_key(url)
    revoked = admin(url, "POST", f"/admin/keys/{key['id']}/revoke")
    assert revoked.json()["status"] == "revoked"
    with pytest.raises(openai.AuthenticationError) as refused:
        chat(url, key["key"])
    assert refused.value.code == "revoked_api_key"


def test_rotation_replaces_a_key_now_or_after_a_grace_period(url: str) -> None:
    old = new_key(url, limits={"rpm": 100})
    rotated = admin(url, "POST", f"/admin/keys/{old['id']}/rotate", {"grace_seconds": 0}).json()
    assert rotated["limits"] == {"rpm": 100} and rotated["replaces"]["status"] == "revoked"
    assert chat(url, rotated["key"]).choices
    with pytest.raises(openai.AuthenticationError):
        chat(url, old["key"])

    again = admin(url, "POST", f"/admin/keys/{rotated['id']}/rotate", {"grace_seconds": 60})
    assert again.status_code == 201
    assert again.json()["replaces"]["status"] == "active"  # for another minute
    assert chat(url, rotated["key"]).choices and chat(url, again.json()["key"]).choices


def test_an_expired_key_is_refused(url: str) -> None:
    key = new_key(url)
    past = "2020-01-01T00:00:00Z"
    assert admin(url, "PATCH", f"/admin/keys/{key['id']}", {"expires_at": past}).status_code == 200
    with pytest.raises(openai.AuthenticationError) as refused:
        chat(url, key["key"])
    assert refused.value.code == "expired_api_key"


def test_roles_limit_models_and_kinds_of_deployment(url: str) -> None:
    analyst = new_key(url, role="analyst")  # seed 001: local models only
    assert chat(url, analyst["key"], "own-gpu").choices
    with pytest.raises(openai.PermissionDeniedError) as refused:
        chat(url, analyst["key"], "gpt-4o-mini")
    assert refused.value.code == "model_not_allowed"

    role = {"name": "mini-only", "models": ["gpt-4o-*"], "llm_access": ["cloud"]}
    assert admin(url, "POST", "/admin/roles", role).status_code == 201
    narrow = new_key(url, role="mini-only")
    assert chat(url, narrow["key"], "gpt-4o-mini").choices
    with pytest.raises(openai.PermissionDeniedError):
        chat(url, narrow["key"], "own-gpu")
    listed = openai.OpenAI(base_url=url + "/v1", api_key=narrow["key"]).models.list()
    assert [m.id for m in listed.data] == ["gpt-4o-mini"]


def test_key_team_and_org_limits_all_bind(url: str) -> None:
    admin(url, "POST", "/admin/orgs", {"name": "acme", "limits": {"rpm": 3}})
    admin(url, "POST", "/admin/orgs/acme/teams", {"name": "search", "limits": {"rpm": 2}})
    first = new_key(url, org="acme", team="search")
    second = new_key(url, org="acme", team="search")
    assert chat(url, first["key"]).choices
    assert chat(url, second["key"]).choices
    with pytest.raises(openai.RateLimitError) as refused:
        chat(url, first["key"])
    response = refused.value.response
    assert response.headers["x-ratelimit-name"] == "rpm"
    assert "team:acme/search" in refused.value.message
    assert int(response.headers["retry-after"]) >= 1


def test_limit_changes_take_effect_without_a_restart(url: str) -> None:
    key = new_key(url, limits={"rpm": 1})
    assert chat(url, key["key"]).choices
    with pytest.raises(openai.RateLimitError):
        chat(url, key["key"])
    admin(url, "PATCH", f"/admin/keys/{key['id']}", {"limits": {"rpm": 10}})
    assert chat(url, key["key"]).choices


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/admin/orgs", {"name": "bad name!"}, "name"),
        ("/admin/orgs", {"name": "ok", "limits": {"rpm": -1}}, "limits.rpm"),
        ("/admin/orgs", {"name": "ok", "limits": {"rpn": 1}}, "limits.rpn"),
        ("/admin/keys", {"name": "k", "org": "nowhere"}, "org"),
        ("/admin/keys", {"name": "k", "role": "nobody"}, "role"),
        ("/admin/keys", {"name": "k", "team": "t"}, None),
        ("/admin/roles", {"name": "r", "data_access": "secret"}, "data_access"),
    ],
)
def test_bad_bodies_get_400_naming_the_field(
    url: str, path: str, body: dict[str, Any], param: str | None
) -> None:
    response = admin(url, "POST", path, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_conflicts_and_missing_things(start: Callable[..., str]) -> None:
    url = start(orgs=[{"name": "configured"}])
    assert admin(url, "POST", "/admin/orgs", {"name": "acme"}).status_code == 201
    again = admin(url, "POST", "/admin/orgs", {"name": "acme"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "org_exists"
    assert admin(url, "POST", "/admin/orgs", {"name": "configured"}).status_code == 409
    assert admin(url, "GET", "/admin/keys/nosuchkey").status_code == 404
    assert admin(url, "GET", "/admin/orgs/nowhere").status_code == 404
    assert admin(url, "DELETE", "/admin/orgs").status_code == 405
    not_json = httpx2.post(
        url + "/admin/orgs", content=b"{", headers={"authorization": f"Bearer {MASTER_KEY}"}
    )
    assert not_json.status_code == 400


def test_an_admin_role_key_may_administer(url: str) -> None:
    boss = new_key(url, role="admin")
    assert admin(url, "POST", "/admin/orgs", {"name": "x"}, key=boss["key"]).status_code == 201


def test_the_openapi_document_describes_the_admin_api(url: str) -> None:
    assert httpx2.get(url + "/openapi.json").status_code == 401
    spec = httpx2.get(url + "/openapi.json", headers={"authorization": f"Bearer {APP_KEY}"})
    document = spec.json()
    assert document["openapi"].startswith("3.")
    create = document["paths"]["/admin/keys"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "KeyCreate"
    )
    assert "rpm" in str(document["components"]["schemas"]["LimitsConfig"])
    assert {op.path for op in ADMIN_OPS} <= set(document["paths"])


def test_a_change_reaches_another_replica_through_the_database(
    start: Callable[..., str],
) -> None:
    """Two gateways on one database, no Redis: the other one notices within refresh_interval."""
    first = start(refresh_interval=0.2)
    second = start(refresh_interval=0.2)
    key = new_key(first)
    deadline = time.monotonic() + 5
    while True:
        try:
            assert chat(second, key["key"]).choices
            break
        except openai.AuthenticationError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    admin(first, "POST", f"/admin/keys/{key['id']}/revoke")
    deadline = time.monotonic() + 5
    while True:
        try:
            chat(second, key["key"])
        except openai.AuthenticationError:
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
