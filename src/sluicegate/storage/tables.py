"""The SQL tables: the directory (orgs, teams, accounts, roles, keys) and usage events.

SQLAlchemy Core, not the ORM: the gateway reads the directory whole into an
in-memory snapshot and writes usage events in batches, so rows never need to be
objects. Migrations (``storage/migrations``) are the source of truth for the
database; a test checks that these definitions and the migrated schema agree.

Times in the directory are timezone-aware UTC; usage events carry ``ts`` as epoch
seconds, so that reports filter by plain number ranges on SQLite and PostgreSQL
alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
)

__all__ = [
    "DATA_ACCESS_LEVELS",
    "UTCDateTime",
    "accounts",
    "api_keys",
    "directory_version",
    "metadata",
    "orgs",
    "roles",
    "teams",
    "usage_events",
]

#: Seed 001's data sensitivity levels, least to most sensitive.
DATA_ACCESS_LEVELS = ("public", "internal", "confidential", "restricted")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out — SQLite keeps no zone of its own."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

orgs = Table(
    "orgs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("limits", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

teams = Table(
    "teams",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("limits", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("org_id", "name", name="uq_teams_org_id_name"),
)

roles = Table(
    "roles",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("description", String(200), nullable=False),
    # Model names (or fnmatch patterns) this role may call; ["*"] for all.
    Column("models", JSON, nullable=False),
    # Which kinds of deployment: "local" (self-hosted), "cloud".
    Column("llm_access", JSON, nullable=False),
    # The most sensitive data level this role may send (DATA_ACCESS_LEVELS).
    Column("data_access", String(20), nullable=False),
    Column("admin", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

#: Users and service accounts: the owners that keys are issued to.
accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("team_id", Integer, ForeignKey("teams.id"), nullable=True),
    Column("name", String(100), nullable=False),
    Column("kind", String(20), nullable=False),  # "user" | "service"
    Column("email", String(200), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("org_id", "name", name="uq_accounts_org_id_name"),
)

api_keys = Table(
    "api_keys",
    metadata,
    # The key's public id: also the part of the key after "sk-sg-" and its display prefix.
    Column("id", String(16), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("salt", String(32), nullable=False),
    # SHA-256 of salt + key, hex. Keys are 238 random bits, so a slow hash adds nothing.
    Column("digest", String(64), nullable=False),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=True),
    Column("team_id", Integer, ForeignKey("teams.id"), nullable=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=True),
    Column("role", String(50), ForeignKey("roles.name"), nullable=False),
    Column("limits", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    # Set on the old key by a rotation: the id of the key that replaced it.
    Column("replaced_by", String(16), nullable=True),
    Index("ix_api_keys_org_id", "org_id"),
)

#: One row whose version goes up with every change to the tables above, so a
#: replica can tell with one cheap query whether its snapshot is stale.
directory_version = Table(
    "directory_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
)

usage_events = Table(
    "usage_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("ts", Double, nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("endpoint", String(32), nullable=False),
    Column("org", String(100), nullable=True),
    Column("team", String(100), nullable=True),
    Column("key_id", String(100), nullable=True),
    Column("model", String(200), nullable=True),
    Column("served_model", String(200), nullable=True),
    Column("deployment", String(200), nullable=True),
    Column("status", Integer, nullable=False),
    # ok | failed_over (served after a failed attempt) | refused (4xx) | failed | cancelled
    Column("outcome", String(20), nullable=False),
    Column("error", String(100), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("stream", Boolean, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("cached_tokens", Integer, nullable=False),
    Column("reasoning_tokens", Integer, nullable=False),
    Column("cost_micros", BigInteger, nullable=False),
    Column("gpu_seconds", Double, nullable=False),
    Column("latency_ms", Double, nullable=False),
    Index("ix_usage_events_org_ts", "org", "ts"),
    Index("ix_usage_events_key_id_ts", "key_id", "ts"),
)
