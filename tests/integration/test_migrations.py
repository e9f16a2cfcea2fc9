"""Migrations upgrade and downgrade on SQLite and PostgreSQL, and match the table definitions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from sluicegate.storage.database import Database, database_url
from sluicegate.storage.tables import metadata, roles
from tests.fakes.databases import fresh_postgres, sqlite_url


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        db = Database(sqlite_url(tmp_path))
        yield db
        db.close()
        return
    with fresh_postgres() as url:
        db = Database(database_url(url, str(tmp_path)))
        yield db
        db.close()


def test_upgrade_creates_the_schema_the_code_expects(database: Database) -> None:
    assert database.current_revision() is None
    database.upgrade()
    assert database.current_revision() == database.head_revision()
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        names = connection.execute(select(roles.c.name).order_by(roles.c.name)).scalars()
        assert list(names) == ["admin", "analyst", "developer"]


def test_downgrade_removes_everything_and_upgrade_again_works(database: Database) -> None:
    database.upgrade()
    database.downgrade("base")
    assert database.current_revision() is None
    tables = set(inspect(database.engine).get_table_names()) - {"alembic_version"}
    assert tables == set()
    database.upgrade()
    assert set(metadata.tables) <= set(inspect(database.engine).get_table_names())


def test_upgrade_twice_is_a_no_op(database: Database) -> None:
    database.upgrade()
    database.upgrade()
    assert database.current_revision() == database.head_revision()


def test_the_default_database_lives_under_the_data_directory(tmp_path: Path) -> None:
    url = database_url(None, str(tmp_path / "state"))
    assert url == f"sqlite:///{tmp_path / 'state' / 'sluicegate.db'}"
    assert database_url("postgresql://u@h/db", ".").startswith("postgresql+psycopg://")
