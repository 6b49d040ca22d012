"""Migrations: from empty to head, `check` against the models, down and up, concurrent upgrades."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

from storage import migrate
from storage.engine import make_engine
from storage.migrate import check, current_revision, downgrade, head_revision, is_current, upgrade


def test_migrate_from_empty_makes_the_database_current_and_clean(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    try:
        assert current_revision(engine) is None
        assert is_current(engine) is False
        before = check(empty_database_url)
        assert f"database is at revision none, head is {head_revision()}" in before
        assert "add_table resources" in before

        upgrade(empty_database_url)

        assert current_revision(engine) == head_revision()
        assert is_current(engine) is True
        assert check(empty_database_url) == []
        tables = set(inspect(engine).get_table_names())
        assert {"resources", "state_transitions", "operations", "approvals", "slack_deliveries"} <= tables
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_no_op(database_url: str) -> None:
    upgrade(database_url)
    assert check(database_url) == []


def _alter(url: str, *statements: str) -> None:
    """Change a private database's schema behind alembic's back (never the shared test database)."""
    upgrade(url)
    engine: Engine = make_engine(url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()


def test_check_reports_a_schema_that_drifted_from_the_models(empty_database_url: str) -> None:
    _alter(
        empty_database_url,
        "DROP INDEX ix_resources_owner",
        "ALTER TABLE operations ADD COLUMN stray INTEGER",
    )
    problems = check(empty_database_url)
    assert sorted(problems) == ["add_index resources.ix_resources_owner", "remove_column operations.stray"]


def test_tables_owned_by_other_libraries_are_not_reported(empty_database_url: str) -> None:
    _alter(empty_database_url, "CREATE TABLE apscheduler_jobs (id VARCHAR(191) PRIMARY KEY)")
    assert check(empty_database_url) == []


def test_downgrade_to_base_and_up_again(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    downgrade(empty_database_url, "base")
    engine = make_engine(empty_database_url)
    try:
        assert current_revision(engine) is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    upgrade(empty_database_url)
    assert check(empty_database_url) == []


def test_two_processes_starting_at_once_both_upgrade_safely(empty_database_url: str) -> None:
    """SQLite serialises on BEGIN IMMEDIATE, PostgreSQL on an advisory lock; the loser finds nothing to do."""
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            start.wait(10)
            upgrade(empty_database_url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert check(empty_database_url) == []


def test_autogenerate_writes_a_revision_that_imports_sqlmodel_types(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The developer path for the next schema change: with models unchanged the new revision is empty."""
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", scripts)
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    old_head = head_revision()
    upgrade(url)

    migrate.autogenerate_revision(url, "nothing changed")

    (written,) = [path for path in (scripts / "versions").glob("*.py") if "nothing_changed" in path.name]
    source = written.read_text()
    assert "import sqlmodel.sql.sqltypes" in source
    assert f"down_revision: Union[str, Sequence[str], None] = {old_head!r}" in source
    assert "op." not in source  # no differences, so no operations
    assert head_revision() != old_head
    upgrade(url)
    assert check(url) == []
