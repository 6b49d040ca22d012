"""The Slack outbox: messages written before their first try, sent once, re-sent after an outage.

Every change of a row's owner is one conditional UPDATE (a lease: `lease_holder` until `lease_until`),
so two processes draining at once never both send a row; that is atomic on SQLite (BEGIN IMMEDIATE) and
on PostgreSQL alike. The key is the idempotency key: a second enqueue of the same key is a no-op, except
for chat.update rows, whose content is replaced (the latest wins) and whose `version` then moves on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, or_, select, update
from sqlalchemy.engine import Row

from storage.engine import session_scope
from storage.models import OutboxKind, OutboxStatus, PendingMessage
from storage.repos._common import require_aware, table_of, upsert_insert

_TABLE = table_of(PendingMessage)
_C = _TABLE.c


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """What to send, as it was when this process took the lease (`version` says which content)."""

    key: str
    kind: OutboxKind
    channel: str
    text: str
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None
    ts: str | None
    attempts: int
    created_at: datetime
    version: int

    @classmethod
    def of(cls, row: Row[Any] | PendingMessage) -> OutboxMessage:
        return cls(
            key=row.key,
            kind=OutboxKind(row.kind),
            channel=row.channel,
            text=row.text,
            blocks=row.blocks,
            thread_ts=row.thread_ts,
            ts=row.ts,
            attempts=row.attempts,
            created_at=row.created_at,
            version=row.version,
        )


def _free(now: datetime) -> Any:
    """Nobody holds the row, or its holder let the lease run out (a process that died mid-send)."""
    return or_(_C.lease_until.is_(None), _C.lease_until <= now)


class OutboxRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def enqueue(
        self,
        key: str,
        kind: OutboxKind,
        channel: str,
        text: str,
        blocks: Sequence[dict[str, Any]] | None,
        *,
        now: datetime,
        holder: str,
        lease: timedelta,
        thread_ts: str | None = None,
        ts: str | None = None,
    ) -> OutboxMessage | None:
        """Write the message and take its lease; the message to send now, or None if not ours to send.

        A post or DM whose key exists is never queued again (None). An update replaces the queued content
        and returns the latest content if its lease was free; if another process holds it, that process
        finds the version moved when it finishes and sends again.
        """
        require_aware(now, "now")
        content = {"text": text, "blocks": list(blocks) if blocks is not None else None}
        values = {
            "key": key,
            "kind": kind.value,
            "channel": channel,
            "thread_ts": thread_ts,
            "ts": ts,
            **content,
            "status": OutboxStatus.PENDING.value,
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
            "version": 0,
        }
        insert = upsert_insert(self._engine, _TABLE).values(
            **values, lease_holder=holder, lease_until=now + lease
        )
        with session_scope(self._engine, write=True) as session:
            if kind is not OutboxKind.UPDATE:
                inserted = (
                    session.connection()
                    .execute(
                        insert.on_conflict_do_nothing(index_elements=["key"]).execution_options(
                            preserve_rowcount=True
                        )
                    )
                    .rowcount
                )
                if inserted != 1:
                    return None
                return OutboxMessage.of(
                    session.connection().execute(select(_TABLE).where(_C.key == key)).one()
                )
            replaced = {
                **content,
                "status": OutboxStatus.PENDING.value,
                "attempts": 0,
                "last_error": None,
                "created_at": now,
                "next_attempt_at": now,
                "finished_at": None,
                "version": _C.version + 1,
            }
            session.connection().execute(insert.on_conflict_do_update(index_elements=["key"], set_=replaced))
        return self.claim(key, holder, now, lease)

    def claim(self, key: str, holder: str, now: datetime, lease: timedelta) -> OutboxMessage | None:
        """Take (or renew) the lease of one pending row nobody else holds; its content, or None."""
        require_aware(now, "now")
        with session_scope(self._engine, write=True) as session:
            taken = (
                session.connection()
                .execute(
                    update(_TABLE)
                    .where(
                        _C.key == key,
                        _C.status == OutboxStatus.PENDING.value,
                        or_(_free(now), _C.lease_holder == holder),
                    )
                    .values(lease_holder=holder, lease_until=now + lease)
                )
                .rowcount
            )
            if taken != 1:
                return None
            return OutboxMessage.of(session.connection().execute(select(_TABLE).where(_C.key == key)).one())

    def claim_due(
        self, holder: str, now: datetime, lease: timedelta, *, limit: int = 100
    ) -> list[OutboxMessage]:
        """Take the leases of up to `limit` rows whose next attempt is due, oldest first."""
        require_aware(now, "now")
        due = (
            select(_C.key, _C.version)
            .where(_C.status == OutboxStatus.PENDING.value, _C.next_attempt_at <= now, _free(now))
            .order_by(_C.next_attempt_at, _C.created_at)
            .limit(limit)
        )
        claimed: list[OutboxMessage] = []
        with session_scope(self._engine) as session:
            candidates = list(session.connection().execute(due))
        for key, version in candidates:
            with session_scope(self._engine, write=True) as session:
                taken = (
                    session.connection()
                    .execute(
                        update(_TABLE)
                        .where(
                            _C.key == key,
                            _C.version == version,
                            _C.status == OutboxStatus.PENDING.value,
                            _free(now),
                        )
                        .values(lease_holder=holder, lease_until=now + lease)
                    )
                    .rowcount
                )
                if taken == 1:
                    claimed.append(
                        OutboxMessage.of(
                            session.connection().execute(select(_TABLE).where(_C.key == key)).one()
                        )
                    )
        return claimed

    def _settle(self, key: str, holder: str, version: int | None, values: dict[str, Any]) -> bool:
        """Change a row this process holds (and, with `version`, whose content is still what it sent)."""
        statement = update(_TABLE).where(
            _C.key == key, _C.lease_holder == holder, _C.status == OutboxStatus.PENDING.value
        )
        if version is not None:
            statement = statement.where(_C.version == version)
        with session_scope(self._engine, write=True) as session:
            return bool(
                session.connection()
                .execute(statement.values(**values, lease_holder=None, lease_until=None))
                .rowcount
                == 1
            )

    def mark_sent(self, key: str, holder: str, version: int, now: datetime, sent_ts: str | None) -> bool:
        """Done, unless the content moved on while it was being sent (then False: send the new one)."""
        return self._settle(
            key,
            holder,
            version,
            {"status": OutboxStatus.SENT.value, "finished_at": now, "sent_ts": sent_ts, "last_error": None},
        )

    def retry_at(self, key: str, holder: str, when: datetime, error: str) -> bool:
        """Count a failed attempt and let the row go until `when`."""
        return self._settle(
            key,
            holder,
            None,
            {"attempts": _C.attempts + 1, "last_error": error[:2000], "next_attempt_at": when},
        )

    def release(self, key: str, holder: str, when: datetime) -> bool:
        """Let the row go without counting an attempt (it was never tried, or its content moved on)."""
        return self._settle(key, holder, None, {"next_attempt_at": when})

    def give_up(self, key: str, holder: str, now: datetime, error: str) -> bool:
        return self._settle(
            key,
            holder,
            None,
            {
                "status": OutboxStatus.GAVE_UP.value,
                "finished_at": now,
                "attempts": _C.attempts + 1,
                "last_error": error[:2000],
            },
        )

    def get(self, key: str) -> PendingMessage | None:
        with session_scope(self._engine) as session:
            return session.get(PendingMessage, key)

    def count_pending(self) -> int:
        with session_scope(self._engine) as session:
            statement = (
                select(func.count()).select_from(_TABLE).where(_C.status == OutboxStatus.PENDING.value)
            )
            return int(session.connection().execute(statement).scalar_one())

    def purge_finished_before(self, at: datetime) -> int:
        """Forget sent and abandoned rows finished before `at`; pending rows are never purged."""
        require_aware(at, "at")
        statement = delete(_TABLE).where(_C.status != OutboxStatus.PENDING.value, _C.finished_at < at)
        with session_scope(self._engine, write=True) as session:
            return int(session.connection().execute(statement).rowcount)
