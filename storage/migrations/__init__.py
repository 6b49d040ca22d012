"""Alembic migrations, driven by `storage.migrate` (no alembic.ini: the caller passes the URL)."""
