"""Databases for tests: a migrated SQLite file per test, and PostgreSQL when RUNCTL_TEST_POSTGRES_URL is set.

Use from a conftest.py by importing the fixtures (`from tests.support.databases import db_engine, repos`), and
wire `skip_unless_postgres` into `pytest_runtest_setup` so tests marked `@pytest.mark.postgres` skip cleanly
where no server was started. `database_url` (and everything built on it) runs each test on SQLite and, marked
`postgres`, on PostgreSQL. PostgreSQL gets one randomly named database per session, migrated once and emptied
before every test, and dropped at the end.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

from storage.engine import make_engine
from storage.migrate import upgrade
from storage.repositories import Repositories

POSTGRES_ENV = "RUNCTL_TEST_POSTGRES_URL"
POSTGRES_SKIP_REASON = "RUNCTL_TEST_POSTGRES_URL not set: start PostgreSQL with scripts/test.sh"

# Parametrise a fixture over these to run a test on both databases.
DATABASE_KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def postgres_admin_url() -> str | None:
    """The server URL from the environment (any database on it the test user may connect to)."""
    return os.environ.get(POSTGRES_ENV) or None


def require_postgres() -> str:
    url = postgres_admin_url()
    if url is None:
        pytest.skip(POSTGRES_SKIP_REASON)
    return url


def skip_unless_postgres(item: pytest.Item) -> None:
    """For `pytest_runtest_setup`: skip `postgres`-marked tests with the standard message if unconfigured."""
    if item.get_closest_marker("postgres") is not None and postgres_admin_url() is None:
        pytest.skip(POSTGRES_SKIP_REASON)


def sqlite_file_url(directory: Path, name: str = "runctl.db") -> str:
    return f"sqlite:///{directory / name}"


def migrated_sqlite_url(directory: Path, name: str = "runctl.db") -> str:
    url = sqlite_file_url(directory, name)
    upgrade(url)
    return url


@contextmanager
def temporary_postgres_database(admin_url: str, *, migrate: bool = True) -> Iterator[str]:
    """A new database with a random name on the server at `admin_url`, dropped (forcibly) afterwards."""
    name = f"runctl_test_{secrets.token_hex(6)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
            if migrate:
                upgrade(url)
            yield url
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def clear_tables(engine: Engine) -> None:
    """Empty every model table (schema and alembic_version stay): one migrated database serves many tests."""
    tables = SQLModel.metadata.sorted_tables
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{table.name}"' for table in tables)
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(tables):
                connection.execute(table.delete())


@pytest.fixture(scope="session")
def postgres_database_url() -> Iterator[str]:
    with temporary_postgres_database(require_postgres()) as url:
        yield url


@pytest.fixture
def sqlite_database_url(tmp_path: Path) -> str:
    return migrated_sqlite_url(tmp_path)


@pytest.fixture(params=DATABASE_KINDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """A migrated, empty database: a SQLite file in tmp_path, or the session's PostgreSQL database."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_database_url"))
    url = str(request.getfixturevalue("postgres_database_url"))
    engine = make_engine(url)
    try:
        clear_tables(engine)
    finally:
        engine.dispose()
    return url


@pytest.fixture(params=DATABASE_KINDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database that was never migrated, for migration tests."""
    if request.param == "sqlite":
        yield sqlite_file_url(tmp_path)
        return
    with temporary_postgres_database(require_postgres(), migrate=False) as url:
        yield url


@pytest.fixture
def db_engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def repos(db_engine: Engine) -> Repositories:
    return Repositories.from_engine(db_engine)
