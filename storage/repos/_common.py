"""Helpers shared by the repositories: compare-and-set, dialect upserts, key checks."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel

from storage.engine import session_scope
from storage.errors import AlreadyExists

T = TypeVar("T")
M = TypeVar("M", bound=SQLModel)

# Well below SQLite's bound-parameter limit and PostgreSQL's practical IN-list sizes.
CHUNK = 500


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def table_of(model: type[SQLModel]) -> Table:
    return SQLModel.metadata.tables[str(model.__tablename__)]


def require_aware(value: datetime, name: str) -> None:
    """Refuse naive times at the API edge, where the mistake is easiest to trace."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")


def as_set(expected: str | Iterable[str]) -> list[str]:
    return [expected] if isinstance(expected, str) else [str(value) for value in expected]


def checked_fields(
    model: type[SQLModel], fields: Mapping[str, Any], reserved: Collection[str]
) -> dict[str, Any]:
    """Only real, non-reserved columns may be set through **fields; a typo must fail loudly."""
    columns = table_of(model).c
    unknown = [name for name in fields if name not in columns or name in reserved]
    if unknown:
        raise ValueError(f"cannot set {', '.join(sorted(unknown))} on {table_of(model).name}")
    return dict(fields)


def cas_update(
    session: Session,
    model: type[SQLModel],
    key: Any,
    *,
    status_column: str,
    expected: str | Iterable[str],
    values: Mapping[str, Any],
    expected_version: int | None = None,
) -> bool:
    """UPDATE ... WHERE key AND status IN expected [AND version]; bumps version. True only for the winner.

    A single conditional UPDATE is atomic on both databases: PostgreSQL re-checks the WHERE clause after a
    concurrent writer commits, and SQLite writers are serialised by BEGIN IMMEDIATE.
    """
    table = table_of(model)
    (pk,) = table.primary_key.columns
    statement = (
        table.update()
        .where(pk == key, table.c[status_column].in_(as_set(expected)))
        .values(**values, version=table.c.version + 1)
    )
    if expected_version is not None:
        statement = statement.where(table.c.version == expected_version)
    return session.exec(statement).rowcount == 1


def upsert_insert(engine: Engine, table: Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT, which both spell `on_conflict_do_nothing/do_update` the same way."""
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def add_new(engine: Engine, row: M, key: str, exists: Callable[[Session], bool]) -> M:
    """Insert `row`; a duplicate key (found before, or raced in) raises AlreadyExists."""
    table = table_of(type(row)).name
    try:
        with session_scope(engine, write=True) as session:
            if exists(session):
                raise AlreadyExists(table, key)
            session.add(row)
    except IntegrityError:
        with session_scope(engine) as session:
            if exists(session):
                raise AlreadyExists(table, key) from None
        raise
    return row
