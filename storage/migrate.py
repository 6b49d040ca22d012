"""Run and inspect the alembic migrations in `storage/migrations` from code: the URL is the caller's.

Schema changes only ever happen here (never `create_all`). Upgrades are safe to start from several
processes at once: SQLite takes the write lock with BEGIN IMMEDIATE, PostgreSQL an advisory lock, so the
second one waits and then finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.schema import SchemaItem
from sqlmodel import SQLModel

from storage import models
from storage.engine import make_engine, write_bind

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Tables other libraries create for themselves in the same database; never ours to add or drop.
UNMANAGED_TABLES = frozenset({"apscheduler_jobs"})

# Arbitrary constant: the pg_advisory_xact_lock key that serialises concurrent upgrades.
_PG_MIGRATION_LOCK = 0x72756E63746C


def _include_object(
    _obj: SchemaItem, name: str | None, type_: str, reflected: bool, compare_to: SchemaItem | None
) -> bool:
    return not (type_ == "table" and reflected and compare_to is None and name in UNMANAGED_TABLES)


def _render_item(type_: str, obj: Any, _autogen_context: AutogenContext) -> str | bool:
    """Render our UTCDateTime as the plain type so revisions never import the live models module."""
    if type_ == "type" and isinstance(obj, models.UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def migration_options(dialect_name: str) -> dict[str, Any]:
    """What env.py passes to `context.configure`, shared with `check` so both compare alike."""
    return {
        "target_metadata": SQLModel.metadata,
        "compare_type": True,
        "render_as_batch": dialect_name == "sqlite",
        "include_object": _include_object,
        "render_item": _render_item,
    }


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


@contextmanager
def _migration_connection(url: str) -> Iterator[Connection]:
    """One locked transaction for a whole upgrade; committed only if every step succeeded.

    SQLite: foreign keys are switched off for the run (batch migrations recreate tables, which would otherwise
    cascade or fail), and checked before commit instead.
    """
    engine = make_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    try:
        with write_bind(engine).connect() as connection:
            if sqlite:
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
            with connection.begin():
                if not sqlite:
                    lock = text("SELECT pg_advisory_xact_lock(:key)")
                    connection.execute(lock, {"key": _PG_MIGRATION_LOCK})
                yield connection
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration left foreign keys broken: {broken[:5]}")
            if sqlite:
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]
    finally:
        engine.dispose()


def _run(url: str, action: Callable[[Config], object]) -> None:
    with _migration_connection(url) as connection:
        action(_config(connection))


def upgrade(url: str, revision: str = "head") -> None:
    _run(url, lambda config: command.upgrade(config, revision))


def downgrade(url: str, revision: str) -> None:
    _run(url, lambda config: command.downgrade(config, revision))


def autogenerate_revision(url: str, message: str) -> None:
    """Write a new revision file from the difference between the models and the database at `url`.

    For developers changing the models: migrate a scratch database to head, change the models, call this, then
    read and fix the generated file before committing it.
    """
    _run(url, lambda config: command.revision(config, message=message, autogenerate=True))


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for a database never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def known_revisions() -> set[str]:
    """Every revision this version of the code ships."""
    return {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}


def is_current(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()


def check(url: str) -> list[str]:
    """What `alembic check` would report: each difference between the models and the database, as text.

    An empty list means the database is at head and matches the models exactly.
    """
    engine = make_engine(url)
    try:
        problems: list[str] = []
        current, head = current_revision(engine), head_revision()
        if current != head:
            problems.append(f"database is at revision {current or 'none'}, head is {head}")
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts=migration_options(connection.dialect.name))
            problems.extend(_describe(diff) for diff in compare_metadata(context, SQLModel.metadata))
        return problems
    finally:
        engine.dispose()


def _describe(diff: Any) -> str:
    """One autogenerate diff tuple as a line, e.g. 'add_index resources.ix_resources_owner'."""
    if isinstance(diff, list):  # the column changes of one column come as a list
        return "; ".join(_describe(item) for item in diff)
    kind = str(diff[0])
    if kind.startswith("modify_"):
        _, _schema, table, column, _existing, old, new = diff
        return f"{kind} {table}.{column}: {old!r} -> {new!r}"
    if kind in ("add_column", "remove_column"):
        _, _schema, table, column = diff
        return f"{kind} {table}.{column.name}"
    return " ".join([kind, *(_name(part) for part in diff[1:] if part is not None)])


def _name(part: Any) -> str:
    table = getattr(part, "table", None)
    name = getattr(part, "name", None)
    if table is not None and name is not None:
        return f"{table.name}.{name}"
    if name is not None:
        return str(name)
    return repr(part)
