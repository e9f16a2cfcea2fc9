"""Databases for tests: a fresh SQLite file, or a fresh database on the machine's PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

__all__ = ["POSTGRES", "fresh_postgres", "postgres_available", "sqlite_url"]

#: The machine's PostgreSQL (trust auth); `make test` starts it if it is down.
POSTGRES = "postgresql://postgres@127.0.0.1:5432"


def postgres_available() -> bool:
    try:
        with psycopg.connect(f"{POSTGRES}/test", connect_timeout=2):
            return True
    except psycopg.Error:
        return False


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new, empty database for one test (dropped after it); its postgresql:// URL."""
    if not postgres_available():
        pytest.fail("PostgreSQL is not running on 127.0.0.1:5432 (make test starts it)")
    name = "sg_test_" + secrets.token_hex(6)
    with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'sluicegate.db'}"
