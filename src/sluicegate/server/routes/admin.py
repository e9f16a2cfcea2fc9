"""The admin API: one table of operations, each run through the pipeline like any call.

``authenticate`` refuses non-admin keys (403) before the body is read; the
operation then runs in one database transaction on a database thread, and a
change makes every replica's key snapshot follow (``Directory.changed``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sluicegate.errors import InvalidRequest, ServiceUnavailable
from sluicegate.governance.admin import Admin
from sluicegate.governance.admin_models import (
    AccountCreate,
    KeyCreate,
    KeyRotate,
    KeyUpdate,
    LimitsUpdate,
    OrgCreate,
    RoleCreate,
    RoleUpdate,
    TeamCreate,
)
from sluicegate.governance.usage_report import parse_period, usage_report
from sluicegate.pipeline.call import Call, Parsed, Reply
from sluicegate.server.gateway import Gateway, gateway
from sluicegate.server.routes.calls import new_call, run_and_render
from sluicegate.types import Endpoint, JSONObject

__all__ = ["ADMIN_OPS", "AdminOp", "admin_routes"]

Params = Mapping[str, str]
Run = Callable[[Admin, Connection, Params, Any], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class AdminOp:
    method: str
    path: str
    summary: str
    run: Run
    body: type[BaseModel] | None = None
    writes: bool = False
    status: int = 200
    #: Query parameters, for the OpenAPI document: name → description.
    query: Mapping[str, str] | None = None


def _usage(admin: Admin, connection: Connection, params: Params, _: Any) -> dict[str, Any]:
    period = parse_period(params.get("period", "month"), datetime.now(UTC))
    return usage_report(
        connection, period=period, org=params.get("org"), key_id=params.get("key_id")
    )


ADMIN_OPS: tuple[AdminOp, ...] = (
    AdminOp("GET", "/admin/orgs", "List organisations", lambda a, c, p, b: a.list_orgs(c)),
    AdminOp(
        "POST",
        "/admin/orgs",
        "Create an organisation",
        lambda a, c, p, b: a.create_org(c, b),
        OrgCreate,
        writes=True,
        status=201,
    ),
    AdminOp(
        "GET", "/admin/orgs/{org}", "Get an organisation", lambda a, c, p, b: a.get_org(c, p["org"])
    ),
    AdminOp(
        "PUT",
        "/admin/orgs/{org}/limits",
        "Replace an organisation's limits",
        lambda a, c, p, b: a.set_org_limits(c, p["org"], b.limits),
        LimitsUpdate,
        writes=True,
    ),
    AdminOp(
        "GET",
        "/admin/orgs/{org}/teams",
        "List an organisation's teams",
        lambda a, c, p, b: a.list_teams(c, p["org"]),
    ),
    AdminOp(
        "POST",
        "/admin/orgs/{org}/teams",
        "Create a team",
        lambda a, c, p, b: a.create_team(c, p["org"], b),
        TeamCreate,
        writes=True,
        status=201,
    ),
    AdminOp(
        "PUT",
        "/admin/orgs/{org}/teams/{team}/limits",
        "Replace a team's limits",
        lambda a, c, p, b: a.set_team_limits(c, p["org"], p["team"], b.limits),
        LimitsUpdate,
        writes=True,
    ),
    AdminOp(
        "GET",
        "/admin/orgs/{org}/accounts",
        "List users and service accounts",
        lambda a, c, p, b: a.list_accounts(c, p["org"]),
    ),
    AdminOp(
        "POST",
        "/admin/orgs/{org}/accounts",
        "Create a user or service account",
        lambda a, c, p, b: a.create_account(c, p["org"], b),
        AccountCreate,
        writes=True,
        status=201,
    ),
    AdminOp("GET", "/admin/roles", "List roles", lambda a, c, p, b: a.list_roles(c)),
    AdminOp(
        "POST",
        "/admin/roles",
        "Create a role",
        lambda a, c, p, b: a.create_role(c, b),
        RoleCreate,
        writes=True,
        status=201,
    ),
    AdminOp(
        "PATCH",
        "/admin/roles/{role}",
        "Change a role",
        lambda a, c, p, b: a.update_role(c, p["role"], b),
        RoleUpdate,
        writes=True,
    ),
    AdminOp(
        "GET",
        "/admin/keys",
        "List API keys (never the keys themselves)",
        lambda a, c, p, b: a.list_keys(c, p.get("org")),
        query={"org": "only this organisation's keys"},
    ),
    AdminOp(
        "POST",
        "/admin/keys",
        "Create an API key (the response is the only time the key is shown)",
        lambda a, c, p, b: a.create_key(c, b),
        KeyCreate,
        writes=True,
        status=201,
    ),
    AdminOp(
        "GET",
        "/admin/keys/{key_id}",
        "Get an API key",
        lambda a, c, p, b: a.get_key(c, p["key_id"]),
    ),
    AdminOp(
        "PATCH",
        "/admin/keys/{key_id}",
        "Change a key's name, role, limits or expiry",
        lambda a, c, p, b: a.update_key(c, p["key_id"], b),
        KeyUpdate,
        writes=True,
    ),
    AdminOp(
        "POST",
        "/admin/keys/{key_id}/revoke",
        "Revoke a key, at once",
        lambda a, c, p, b: a.revoke_key(c, p["key_id"]),
        writes=True,
    ),
    AdminOp(
        "POST",
        "/admin/keys/{key_id}/rotate",
        "Issue a replacement key; the old one ends now or after a grace period",
        lambda a, c, p, b: a.rotate_key(c, p["key_id"], b),
        KeyRotate,
        writes=True,
        status=201,
    ),
    AdminOp(
        "GET",
        "/admin/usage",
        "Usage report: requests, tokens and cost by model and by key",
        _usage,
        query={
            "org": "only this organisation",
            "key_id": "only this key",
            "period": "day, month (default), YYYY-MM, YYYY-MM-DD or last-Nd",
        },
    ),
)


def _no_model(_body: JSONObject) -> Parsed:
    return Parsed(model=None)


def _validated(model: type[BaseModel], body: JSONObject) -> BaseModel:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or None
        raise InvalidRequest(
            f"{field}: {error['msg']}" if field else str(error["msg"]), param=field
        ) from None


def _in_transaction(gw: Gateway, op: AdminOp, params: Params, body: Any) -> dict[str, Any]:
    with gw.database.begin() as connection:
        return op.run(gw.admin, connection, params, body)


def _admin_entry(call: Call, op: AdminOp, params: Params, result: dict[str, Any]) -> dict[str, Any]:
    """What an admin change did, for the audit log: never a key or its secret."""
    actor = call.principal
    return {
        "kind": "admin",
        "action": f"{op.method} {op.path}",
        "target": result.get("id") or result.get("name") or dict(params),
        "request_id": call.request_id,
        "org": result.get("org") if isinstance(result.get("org"), str) else params.get("org"),
        "key_id": (actor.key_id or actor.name) if actor is not None else None,
        "status": op.status,
    }


def _endpoint(op: AdminOp) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        gw = gateway(request)
        call = new_call(request, Endpoint.ADMIN, _no_model if op.body is not None else None)
        params = {**request.query_params, **request.path_params}

        async def handle(call: Call) -> Reply:
            body = _validated(op.body, call.body) if op.body is not None else None
            try:
                result = await gw.database.run(_in_transaction, gw, op, params, body)
            except DBAPIError as exc:
                raise ServiceUnavailable(
                    "The database is unavailable; admin changes cannot be made right now.",
                    code="database_unavailable",
                    headers={"retry-after": "5"},
                ) from exc
            if op.writes:
                await gw.directory.changed()
                if gw.audit is not None:
                    gw.audit.submit(_admin_entry(call, op, params, result))
            return Reply(status=op.status, body=orjson.dumps(result))

        call.handler = handle
        return await run_and_render(request, call)

    endpoint.__name__ = f"admin_{op.method.lower()}_{op.path.replace('/', '_')}"
    return endpoint


def admin_routes() -> list[Route]:
    """One route per path, dispatching on method, so a wrong method answers 405."""
    by_path: dict[str, dict[str, AdminOp]] = {}
    for op in ADMIN_OPS:
        by_path.setdefault(op.path, {})[op.method] = op
    routes = []
    for path, ops in by_path.items():
        handlers = {method: _endpoint(op) for method, op in ops.items()}

        async def dispatch(request: Request, handlers: Any = handlers) -> Response:
            handler: Callable[[Request], Any] = handlers[request.method]
            response: Response = await handler(request)
            return response

        routes.append(Route(path, dispatch, methods=list(ops)))
    return routes
