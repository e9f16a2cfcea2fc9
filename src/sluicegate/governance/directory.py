"""Who may call: keys, roles and limits, served from memory and kept fresh in the background.

Every request is authenticated against an in-memory ``Snapshot`` — never a query.
The snapshot is rebuilt from the database when ``directory_version`` moves: this
replica's admin API moves it and reloads at once; other replicas notice within
``refresh_interval`` seconds, or at once when they share Redis, where a change is
announced on a pub/sub channel.

When the database cannot be read, the last snapshot stays in force: known keys
keep working, and a key the snapshot does not know gets 503 (it may have been
issued since), not 401. Recovery is automatic on the next successful read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from sluicegate.config.governance import LimitsConfig
from sluicegate.errors import AuthenticationFailed, ServiceUnavailable
from sluicegate.governance.keys import key_id_of, matches
from sluicegate.governance.limits import Limit
from sluicegate.governance.principals import inflight_of, limits_of
from sluicegate.pipeline.authenticate import KeyRing
from sluicegate.pipeline.call import Principal
from sluicegate.storage.database import Database
from sluicegate.storage.tables import api_keys, directory_version, orgs, roles, teams

__all__ = ["CHANNEL", "Directory", "KeyRecord", "Snapshot", "load_snapshot", "read_version"]

log = logging.getLogger("sluicegate.governance")

#: Redis pub/sub channel on which replicas announce directory changes.
CHANNEL = "sg:directory"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    salt: str
    digest: str
    principal: Principal
    expires_at: float | None
    revoked: bool


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    keys: Mapping[str, KeyRecord] = field(default_factory=dict)
    #: Organisation name → its limits, for every org in the database.
    orgs: Mapping[str, tuple[Limit, ...]] = field(default_factory=dict)


def read_version(connection: Connection) -> int:
    version = connection.execute(
        select(directory_version.c.version).where(directory_version.c.id == 1)
    ).scalar_one()
    return int(version)


_Rules = tuple[tuple[Limit, ...], tuple[tuple[str, int], ...]]


def _rules(scope: str, stored: dict[str, Any]) -> _Rules:
    """A scope's counted limits and its in-flight cap."""
    config = LimitsConfig.model_validate(stored)
    return tuple(limits_of(scope, config)), inflight_of(scope, config)


def load_snapshot(connection: Connection) -> Snapshot:
    """Read the whole directory in one transaction (the caller's)."""
    version = read_version(connection)
    role_rows = {row.name: row for row in connection.execute(select(roles))}
    org_rows = {row.id: row for row in connection.execute(select(orgs))}
    team_rows = {row.id: row for row in connection.execute(select(teams))}
    org_rules = {row.name: _rules(f"org:{row.name}", row.limits) for row in org_rows.values()}
    team_rules = {
        row.id: _rules(f"team:{org_rows[row.org_id].name}/{row.name}", row.limits)
        for row in team_rows.values()
    }
    records: dict[str, KeyRecord] = {}
    for row in connection.execute(select(api_keys)):
        role = role_rows[row.role]
        org = org_rows[row.org_id].name if row.org_id is not None else None
        team = team_rows[row.team_id].name if row.team_id is not None else None
        limits, inflight = _rules(f"key:{row.id}", row.limits)
        for more, caps in (
            team_rules[row.team_id] if row.team_id is not None else ((), ()),
            org_rules[org] if org is not None else ((), ()),
        ):
            limits += more
            inflight += caps
        models = tuple(role.models)
        principal = Principal(
            name=row.name,
            key_id=row.id,
            is_admin=bool(role.admin),
            org=org,
            team=team,
            role=role.name,
            limits=limits,
            inflight=inflight,
            models=None if "*" in models else models,
            llm_access=frozenset(role.llm_access),
            data_access=role.data_access,
        )
        records[row.id] = KeyRecord(
            salt=row.salt,
            digest=row.digest,
            principal=principal,
            expires_at=row.expires_at.timestamp() if row.expires_at is not None else None,
            revoked=row.revoked_at is not None,
        )
    return Snapshot(
        version=version, keys=records, orgs={name: rules[0] for name, rules in org_rules.items()}
    )


class Directory:
    """Keys from config (``KeyRing``) and from the database (the snapshot), in one lookup."""

    def __init__(
        self,
        keyring: KeyRing,
        database: Database | None,
        *,
        refresh_interval: float = 5.0,
        redis_url: str | None = None,
        channel: str = CHANNEL,
        prepare: Callable[[], None] | None = None,
    ) -> None:
        """``prepare`` (migrations) runs on a database thread before the first read, and
        again after each failure until it succeeds once."""
        self.keyring = keyring
        self.database = database
        self.refresh_interval = refresh_interval
        self.redis_url = redis_url
        self.channel = channel
        self._prepare = prepare
        self.snapshot = Snapshot(version=0)
        #: False until the database has been read, and while it cannot be.
        self.available = database is None
        self._down = False
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._redis: Any = None

    # -- the hot path -----------------------------------------------------

    def lookup(self, key: str) -> Principal:
        principal = self.keyring.find(key)
        if principal is not None:
            return principal
        key_id = key_id_of(key)
        record = self.snapshot.keys.get(key_id) if key_id is not None else None
        if record is None or not matches(record.salt, record.digest, key):
            if key_id is not None and not self.available:
                raise ServiceUnavailable(
                    "The key directory cannot be read right now, so this key cannot be "
                    "checked; retry shortly.",
                    code="directory_unavailable",
                    headers={"retry-after": "5"},
                )
            raise AuthenticationFailed("Incorrect API key provided.")
        if record.revoked:
            raise AuthenticationFailed("This API key has been revoked.", code="revoked_api_key")
        if record.expires_at is not None and record.expires_at <= time.time():
            raise AuthenticationFailed("This API key has expired.", code="expired_api_key")
        return record.principal

    # -- keeping the snapshot fresh ------------------------------------------

    async def start(self) -> None:
        if self.database is None:
            return
        await self.refresh()
        self._tasks.append(asyncio.create_task(self._refresh_loop(), name="directory-refresh"))
        if self.redis_url is not None:
            self._tasks.append(asyncio.create_task(self._listen(), name="directory-listen"))

    async def refresh(self, *, force: bool = False) -> bool:
        """Reload if the database's version moved; False when it could not be read."""
        database = self.database
        if database is None:
            return True
        try:
            if self._prepare is not None:
                await database.run(self._prepare)
                self._prepare = None
            version = await database.run(_version_of, database)
            if force or version != self.snapshot.version:
                self.snapshot = await database.run(_snapshot_of, database)
        except Exception as exc:
            if not self._down:
                self._down = True
                log.warning(
                    "key directory %s unreadable; serving the last snapshot: %s",
                    database.display_url,
                    exc,
                )
            self.available = False
            return False
        if self._down:
            self._down = False
            log.info("key directory readable again (version %d)", self.snapshot.version)
        self.available = True
        return True

    async def changed(self) -> None:
        """After an admin write: reload here, and tell the other replicas."""
        await self.refresh(force=True)
        if self._redis is not None:
            try:
                await self._redis.publish(self.channel, str(self.snapshot.version))
            except Exception as exc:  # the others still notice within refresh_interval
                log.warning("could not announce a directory change: %s", exc)

    async def _refresh_loop(self) -> None:
        while True:
            interval = self.refresh_interval if self.available else min(self.refresh_interval, 1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            await self.refresh()

    async def _listen(self) -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(self.redis_url or "")
        backoff = 0.5
        while True:
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                async with pubsub:
                    await pubsub.subscribe(self.channel)
                    backoff = 0.5
                    # A change may have been announced while we were not listening.
                    self._wake.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("directory change channel lost (%s); reconnecting", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


def _version_of(database: Database) -> int:
    with database.engine.connect() as connection:
        return read_version(connection)


def _snapshot_of(database: Database) -> Snapshot:
    with database.begin() as connection:
        return load_snapshot(connection)
