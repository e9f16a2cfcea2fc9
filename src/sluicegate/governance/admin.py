"""What the admin API does to the directory: one function per operation, one transaction each.

Each function takes an open transaction (``Database.begin``) and returns plain
JSON-ready dicts. Every change also moves ``directory_version``, inside the same
transaction, so that every replica's snapshot follows (``governance.directory``).
Names that config already declares (``governance.orgs``) are refused here: one
org must not be counted under two sets of limits.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, select, update
from sqlalchemy.exc import IntegrityError

from sluicegate.config.governance import LimitsConfig
from sluicegate.errors import Conflict, InvalidRequest, NotFound
from sluicegate.governance.admin_models import (
    AccountCreate,
    KeyCreate,
    KeyRotate,
    KeyUpdate,
    OrgCreate,
    RoleCreate,
    RoleUpdate,
    TeamCreate,
)
from sluicegate.governance.keys import PREFIX, IssuedKey, issue
from sluicegate.storage.tables import accounts, api_keys, directory_version, orgs, roles, teams

__all__ = ["Admin"]


def _now() -> datetime:
    return datetime.now(UTC)


def _limits(limits: LimitsConfig) -> dict[str, Any]:
    return limits.model_dump(exclude_none=True)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def _bump(connection: Connection) -> None:
    connection.execute(
        update(directory_version)
        .where(directory_version.c.id == 1)
        .values(version=directory_version.c.version + 1)
    )


class Admin:
    def __init__(self, reserved_orgs: Collection[str] = ()) -> None:
        self.reserved_orgs = frozenset(reserved_orgs)

    # -- orgs ---------------------------------------------------------------

    def create_org(self, connection: Connection, body: OrgCreate) -> dict[str, Any]:
        if body.name in self.reserved_orgs:
            raise Conflict(
                f"Org '{body.name}' is declared in the config file (governance.orgs); "
                "pick another name or manage it there.",
                param="name",
                code="org_exists",
            )
        now = _now()
        _insert(
            connection,
            orgs.insert().values(
                name=body.name, limits=_limits(body.limits), created_at=now, updated_at=now
            ),
            f"Org '{body.name}' already exists.",
            "org_exists",
        )
        _bump(connection)
        return self.get_org(connection, body.name)

    def list_orgs(self, connection: Connection) -> dict[str, Any]:
        rows = connection.execute(select(orgs).order_by(orgs.c.name))
        return {"object": "list", "data": [_org_view(row) for row in rows]}

    def get_org(self, connection: Connection, name: str) -> dict[str, Any]:
        return _org_view(_org(connection, name))

    def set_org_limits(
        self, connection: Connection, name: str, limits: LimitsConfig
    ) -> dict[str, Any]:
        row = _org(connection, name)
        connection.execute(
            update(orgs)
            .where(orgs.c.id == row.id)
            .values(limits=_limits(limits), updated_at=_now())
        )
        _bump(connection)
        return self.get_org(connection, name)

    # -- teams and accounts ---------------------------------------------------

    def create_team(self, connection: Connection, org: str, body: TeamCreate) -> dict[str, Any]:
        org_row = _org(connection, org)
        now = _now()
        _insert(
            connection,
            teams.insert().values(
                org_id=org_row.id,
                name=body.name,
                limits=_limits(body.limits),
                created_at=now,
                updated_at=now,
            ),
            f"Team '{body.name}' already exists in org '{org}'.",
            "team_exists",
        )
        _bump(connection)
        return _team_view(_team(connection, org_row, body.name), org)

    def list_teams(self, connection: Connection, org: str) -> dict[str, Any]:
        org_row = _org(connection, org)
        rows = connection.execute(
            select(teams).where(teams.c.org_id == org_row.id).order_by(teams.c.name)
        )
        return {"object": "list", "data": [_team_view(row, org) for row in rows]}

    def set_team_limits(
        self, connection: Connection, org: str, team: str, limits: LimitsConfig
    ) -> dict[str, Any]:
        org_row = _org(connection, org)
        row = _team(connection, org_row, team)
        connection.execute(
            update(teams)
            .where(teams.c.id == row.id)
            .values(limits=_limits(limits), updated_at=_now())
        )
        _bump(connection)
        return _team_view(_team(connection, org_row, team), org)

    def create_account(
        self, connection: Connection, org: str, body: AccountCreate
    ) -> dict[str, Any]:
        org_row = _org(connection, org)
        team_id = _team(connection, org_row, body.team).id if body.team is not None else None
        _insert(
            connection,
            accounts.insert().values(
                org_id=org_row.id,
                team_id=team_id,
                name=body.name,
                kind=body.kind,
                email=body.email,
                created_at=_now(),
            ),
            f"Account '{body.name}' already exists in org '{org}'.",
            "account_exists",
        )
        _bump(connection)
        return _account_view(_account(connection, org_row, body.name), org, body.team)

    def list_accounts(self, connection: Connection, org: str) -> dict[str, Any]:
        org_row = _org(connection, org)
        team_names = {
            row.id: row.name
            for row in connection.execute(select(teams).where(teams.c.org_id == org_row.id))
        }
        rows = connection.execute(
            select(accounts).where(accounts.c.org_id == org_row.id).order_by(accounts.c.name)
        )
        return {
            "object": "list",
            "data": [_account_view(row, org, team_names.get(row.team_id)) for row in rows],
        }

    # -- roles ------------------------------------------------------------------

    def create_role(self, connection: Connection, body: RoleCreate) -> dict[str, Any]:
        now = _now()
        _insert(
            connection,
            roles.insert().values(
                name=body.name,
                description=body.description,
                models=body.models,
                llm_access=sorted(set(body.llm_access)),
                data_access=body.data_access,
                admin=body.admin,
                created_at=now,
                updated_at=now,
            ),
            f"Role '{body.name}' already exists.",
            "role_exists",
        )
        _bump(connection)
        return self.get_role(connection, body.name)

    def update_role(self, connection: Connection, name: str, body: RoleUpdate) -> dict[str, Any]:
        _role(connection, name)
        values: dict[str, Any] = body.model_dump(exclude_none=True)
        if "llm_access" in values:
            values["llm_access"] = sorted(set(values["llm_access"]))
        connection.execute(
            update(roles).where(roles.c.name == name).values(**values, updated_at=_now())
        )
        _bump(connection)
        return self.get_role(connection, name)

    def list_roles(self, connection: Connection) -> dict[str, Any]:
        rows = connection.execute(select(roles).order_by(roles.c.name))
        return {"object": "list", "data": [_role_view(row) for row in rows]}

    def get_role(self, connection: Connection, name: str) -> dict[str, Any]:
        return _role_view(_role(connection, name))

    # -- keys ---------------------------------------------------------------------

    def create_key(self, connection: Connection, body: KeyCreate) -> dict[str, Any]:
        _role(connection, body.role, param="role")
        org_row = _org(connection, body.org, param="org") if body.org is not None else None
        team_id = account_id = None
        if org_row is not None and body.team is not None:
            team_id = _team(connection, org_row, body.team, param="team").id
        if org_row is not None and body.account is not None:
            account_id = _account(connection, org_row, body.account, param="account").id
        now = _now()
        expires = body.expires_at
        if body.expires_in_days is not None:
            expires = now + timedelta(days=body.expires_in_days)
        issued = _insert_key(
            connection,
            name=body.name,
            org_id=org_row.id if org_row is not None else None,
            team_id=team_id,
            account_id=account_id,
            role=body.role,
            limits=_limits(body.limits),
            created_at=now,
            expires_at=expires,
        )
        _bump(connection)
        # The only time the key is ever shown.
        return {**self.get_key(connection, issued.key_id), "key": issued.key}

    def list_keys(self, connection: Connection, org: str | None = None) -> dict[str, Any]:
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if org is not None:
            query = query.where(api_keys.c.org_id == _org(connection, org, param="org").id)
        names = _names(connection)
        return {
            "object": "list",
            "data": [_key_view(row, names) for row in connection.execute(query)],
        }

    def get_key(self, connection: Connection, key_id: str) -> dict[str, Any]:
        return _key_view(_key(connection, key_id), _names(connection))

    def update_key(self, connection: Connection, key_id: str, body: KeyUpdate) -> dict[str, Any]:
        _key(connection, key_id)
        values: dict[str, Any] = {}
        if body.name is not None:
            values["name"] = body.name
        if body.role is not None:
            _role(connection, body.role, param="role")
            values["role"] = body.role
        if body.limits is not None:
            values["limits"] = _limits(body.limits)
        if "expires_at" in body.model_fields_set:
            values["expires_at"] = body.expires_at
        if values:
            connection.execute(update(api_keys).where(api_keys.c.id == key_id).values(**values))
            _bump(connection)
        return self.get_key(connection, key_id)

    def revoke_key(self, connection: Connection, key_id: str) -> dict[str, Any]:
        row = _key(connection, key_id)
        if row.revoked_at is None:
            connection.execute(
                update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=_now())
            )
            _bump(connection)
        return self.get_key(connection, key_id)

    def rotate_key(self, connection: Connection, key_id: str, body: KeyRotate) -> dict[str, Any]:
        """A new key with the old one's name, owner, role and limits; the old one ends."""
        row = _key(connection, key_id)
        if row.revoked_at is not None:
            raise Conflict(f"Key '{key_id}' is revoked; create a new one.", code="key_revoked")
        now = _now()
        issued = _insert_key(
            connection,
            name=row.name,
            org_id=row.org_id,
            team_id=row.team_id,
            account_id=row.account_id,
            role=row.role,
            limits=row.limits,
            created_at=now,
            expires_at=row.expires_at,
        )
        old: dict[str, Any] = {"replaced_by": issued.key_id}
        if body.grace_seconds == 0:
            old["revoked_at"] = now
        else:
            grace_end = now + timedelta(seconds=body.grace_seconds)
            if row.expires_at is None or row.expires_at > grace_end:
                old["expires_at"] = grace_end
        connection.execute(update(api_keys).where(api_keys.c.id == key_id).values(**old))
        _bump(connection)
        return {
            **self.get_key(connection, issued.key_id),
            "key": issued.key,
            "replaces": self.get_key(connection, key_id),
        }


def _insert_key(connection: Connection, **values: Any) -> IssuedKey:
    issued = issue()
    connection.execute(
        api_keys.insert().values(id=issued.key_id, salt=issued.salt, digest=issued.digest, **values)
    )
    return issued


# -- lookups that raise the admin API's errors ----------------------------------


def _insert(connection: Connection, statement: Any, message: str, code: str) -> None:
    try:
        with connection.begin_nested():
            connection.execute(statement)
    except IntegrityError as exc:
        raise Conflict(message, param="name", code=code) from exc


def _one(connection: Connection, query: Any, what: str, param: str | None, code: str) -> Row[Any]:
    row = connection.execute(query).first()
    if row is None:
        if param is not None:
            raise InvalidRequest(f"{what} does not exist.", param=param, code=code)
        raise NotFound(f"{what} does not exist.", code=code)
    return row


def _org(connection: Connection, name: str, *, param: str | None = None) -> Row[Any]:
    return _one(
        connection, select(orgs).where(orgs.c.name == name), f"Org '{name}'", param, "org_not_found"
    )


def _team(
    connection: Connection, org: Row[Any], name: str, *, param: str | None = None
) -> Row[Any]:
    query = select(teams).where(teams.c.org_id == org.id, teams.c.name == name)
    return _one(connection, query, f"Team '{name}' of org '{org.name}'", param, "team_not_found")


def _account(
    connection: Connection, org: Row[Any], name: str, *, param: str | None = None
) -> Row[Any]:
    query = select(accounts).where(accounts.c.org_id == org.id, accounts.c.name == name)
    return _one(
        connection, query, f"Account '{name}' of org '{org.name}'", param, "account_not_found"
    )


def _role(connection: Connection, name: str, *, param: str | None = None) -> Row[Any]:
    return _one(
        connection,
        select(roles).where(roles.c.name == name),
        f"Role '{name}'",
        param,
        "role_not_found",
    )


def _key(connection: Connection, key_id: str) -> Row[Any]:
    key_id = key_id.removeprefix(PREFIX)
    return _one(
        connection,
        select(api_keys).where(api_keys.c.id == key_id),
        f"Key '{key_id}'",
        None,
        "key_not_found",
    )


# -- views ------------------------------------------------------------------------


def _org_view(row: Row[Any]) -> dict[str, Any]:
    return {
        "object": "org",
        "name": row.name,
        "limits": row.limits,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }


def _team_view(row: Row[Any], org: str) -> dict[str, Any]:
    return {
        "object": "team",
        "org": org,
        "name": row.name,
        "limits": row.limits,
        "created_at": _iso(row.created_at),
    }


def _account_view(row: Row[Any], org: str, team: str | None) -> dict[str, Any]:
    return {
        "object": "account",
        "org": org,
        "team": team,
        "name": row.name,
        "kind": row.kind,
        "email": row.email,
        "created_at": _iso(row.created_at),
    }


def _role_view(row: Row[Any]) -> dict[str, Any]:
    return {
        "object": "role",
        "name": row.name,
        "description": row.description,
        "models": row.models,
        "llm_access": row.llm_access,
        "data_access": row.data_access,
        "admin": bool(row.admin),
    }


_Names = tuple[dict[int, str], dict[int, str], dict[int, str]]


def _names(connection: Connection) -> _Names:
    def table(t: Any) -> dict[int, str]:
        return {row.id: row.name for row in connection.execute(select(t.c.id, t.c.name))}

    return table(orgs), table(teams), table(accounts)


def _key_view(row: Row[Any], names: _Names) -> dict[str, Any]:
    org_names, team_names, account_names = names
    now = _now()
    if row.revoked_at is not None:
        status = "revoked"
    elif row.expires_at is not None and row.expires_at <= now:
        status = "expired"
    else:
        status = "active"

    def pick(table: dict[int, str], ident: int | None) -> str | None:
        return table.get(ident) if ident is not None else None

    return {
        "object": "api_key",
        "id": row.id,
        "prefix": PREFIX + row.id,
        "name": row.name,
        "org": pick(org_names, row.org_id),
        "team": pick(team_names, row.team_id),
        "account": pick(account_names, row.account_id),
        "role": row.role,
        "limits": row.limits,
        "status": status,
        "created_at": _iso(row.created_at),
        "expires_at": _iso(row.expires_at),
        "revoked_at": _iso(row.revoked_at),
        "replaced_by": row.replaced_by,
    }
