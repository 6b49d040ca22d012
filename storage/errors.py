"""Errors the repositories raise on purpose (anything else is a SQLAlchemy error)."""

from __future__ import annotations


class StorageError(Exception):
    """Base of the storage package's own errors."""


class AlreadyExists(StorageError):
    """A row with this key is already there: the caller retried, or two callers raced."""

    def __init__(self, table: str, key: str) -> None:
        super().__init__(f"{table} {key!r} already exists")
        self.table = table
        self.key = key
