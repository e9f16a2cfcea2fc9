"""The SQL database: SQLite by default, PostgreSQL by URL; never on the hot path.

The engine is synchronous (SQLAlchemy Core over sqlite3 or psycopg 3), and every
query runs on this module's own small thread pool through ``Database.run``: the
directory snapshot, usage batches and admin writes are rare enough that threads
cost nothing, and a slow database then stalls those threads, never the event
loop. Migrations (Alembic, shipped in the package) run at start-up under a lock,
so replicas that start together migrate once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url

__all__ = ["Database", "database_url"]

log = logging.getLogger("sluicegate.storage")

T = TypeVar("T")

MIGRATIONS = Path(__file__).parent / "migrations"
#: Any fixed number: PostgreSQL advisory lock held while migrating.
_MIGRATION_LOCK = 0x5E1C_E6A7


def database_url(url: str | None, data_dir: str) -> str:
    """The SQLAlchemy URL: the default SQLite file, and psycopg 3 for plain postgresql://."""
    if url is None:
        path = Path(data_dir).resolve() / "sluicegate.db"
        return f"sqlite:///{path}"
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the usage writer and admin reads proceed together; the busy
    # timeout waits out the other writer instead of failing at once.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class Database:
    def __init__(self, url: str, *, pool_size: int = 5, connect_timeout: float = 3.0) -> None:
        parsed = make_url(url)
        self.url = url
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 5.0}
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                pool_timeout=connect_timeout,
                # An unreachable server fails fast; the callers retry in the background.
                connect_args={"connect_timeout": max(1, round(connect_timeout))},
            )
        self._threads = ThreadPoolExecutor(pool_size, thread_name_prefix="sluicegate-db")

    @property
    def display_url(self) -> str:
        """The URL with any password hidden, for logs and banners."""
        return make_url(self.url).render_as_string(hide_password=True)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on a database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, partial(fn, *args))

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as connection:
            yield connection

    # -- migrations -------------------------------------------------------

    def _alembic(self, connection: Connection) -> AlembicConfig:
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        return config

    @contextmanager
    def _migrating(self) -> Iterator[Connection]:
        with self.engine.begin() as connection:
            if self.dialect == "postgresql":
                # Released when the transaction ends: replicas starting together queue here.
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            yield connection

    def upgrade(self, revision: str = "head") -> None:
        with self._migrating() as connection:
            command.upgrade(self._alembic(connection), revision)

    def downgrade(self, revision: str) -> None:
        with self._migrating() as connection:
            command.downgrade(self._alembic(connection), revision)

    def current_revision(self) -> str | None:
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def head_revision(self) -> str | None:
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        return ScriptDirectory.from_config(config).get_current_head()

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()
