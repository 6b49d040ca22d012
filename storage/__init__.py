"""Persistence: SQLModel tables, engines and sessions, alembic migrations and repositories.

- `storage.engine`: `make_engine(url)`, `session_scope(engine, write=...)`
- `storage.migrate`: `upgrade(url)`, `current_revision(engine)`, `head_revision()`, `is_current(engine)`,
  `check(url)`
- `storage.repositories`: one repository per table group, and `Repositories.from_engine(engine)`
- `storage.models`: the tables and the status values they hold

Nothing is imported here, so `import storage.migrate` stays cheap for the CLI.
"""
