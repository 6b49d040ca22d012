"""Fire-and-forget Slack messages that survive an outage: written first, sent now, re-sent by `drain`.

A message is stored under its idempotency key before the first try (so a crash between the two loses
nothing), then sent through the `Notifier`, whose slack_sdk retry handlers already retried 429s, 5xx and
connection errors. If they gave up, the row waits and the scheduler's `drain` tries again with
exponential back-off, until the message is older than the configured bound; then it is dropped with an
error log and the `runctl_slack_outbox_total{outcome="gave_up"}` counter. Errors Slack will always give
for this message (an archived channel, a deleted message) are not retried.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from bot.core.clock import Clock
from bot.metrics import OUTBOX_MESSAGES
from bot.services.ports import Blocks, MessageRef, Notifier
from storage.models import OutboxKind
from storage.repos.outbox import OutboxMessage, OutboxRepository

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE = timedelta(hours=12)

# Slack `error`s that the same request will get again however long we wait.
PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_arguments",
        "message_not_found",
        "cant_update_message",
        "edit_window_closed",
        "user_not_found",
        "user_not_visible",
        "cannot_dm_bot",
        "restricted_action",
        "too_many_attachments",
    }
)


def slack_error(exc: BaseException) -> tuple[str, bool]:
    """A short description of a failed send, and whether it is permanent.

    Read from the `SlackApiError` shape (`response.status_code`, `response["error"]`) without importing
    slack_sdk here; anything else (a timeout, a refused connection) is transient.
    """
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    error: Any = None
    if response is not None:
        try:
            error = response.get("error")
        except Exception:
            error = None
    if status is None:
        return f"{type(exc).__name__}: {exc}", False
    described = f"HTTP {status} {error or ''}".strip()
    permanent = isinstance(status, int) and status < 500 and status != 429 and error in PERMANENT_ERRORS
    return described, permanent


@dataclass(frozen=True)
class Backoff:
    """Waits between re-sends: `first`, doubled per failed attempt, at most `cap`."""

    first: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(minutes=15)

    def after(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failed attempt (1-based)."""
        return min(self.cap, self.first * (1 << min(max(attempts - 1, 0), 20)))


class Outcome(StrEnum):
    SENT = "sent"  # delivered by this call
    QUEUED = "queued"  # Slack failed; stored for `drain`
    DUPLICATE = "duplicate"  # this key was queued or sent before (or another process is sending it)
    FAILED = "failed"  # Slack refused it for good; not retried


@dataclass(frozen=True)
class Delivery:
    outcome: Outcome
    ref: MessageRef | None = None


@dataclass
class DrainReport:
    sent: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # claimed but not tried: Slack was still failing


class Outbox:
    """Post, DM and update through the outbox. Cheap to build; the state is in the database."""

    def __init__(
        self,
        repo: OutboxRepository,
        notifier: Notifier,
        clock: Clock,
        *,
        backoff: Backoff | None = None,
        lease: timedelta = timedelta(minutes=2),
        holder: str | None = None,
    ) -> None:
        self._repo = repo
        self._notifier = notifier
        self._clock = clock
        self._backoff = backoff or Backoff()
        self._lease = lease
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    # --- sending ---------------------------------------------------------------------------------

    def post(
        self, key: str, channel: str, text: str, blocks: Blocks | None = None, *, thread_ts: str | None = None
    ) -> Delivery:
        """chat.postMessage once per `key` (in `thread_ts`'s thread when given)."""
        return self._enqueue_and_send(key, OutboxKind.POST, channel, text, blocks, thread_ts=thread_ts)

    def dm(self, key: str, user: str, text: str, blocks: Blocks | None = None) -> Delivery:
        """A direct message to `user` once per `key`."""
        return self._enqueue_and_send(key, OutboxKind.DM, user, text, blocks)

    def update(
        self, ref: MessageRef, text: str, blocks: Blocks | None = None, *, key: str | None = None
    ) -> Delivery:
        """chat.update of `ref`; a newer update of the same message replaces a queued older one."""
        return self._enqueue_and_send(
            key or update_key(ref), OutboxKind.UPDATE, ref.channel, text, blocks, ts=ref.ts
        )

    def _enqueue_and_send(
        self,
        key: str,
        kind: OutboxKind,
        channel: str,
        text: str,
        blocks: Blocks | None,
        *,
        thread_ts: str | None = None,
        ts: str | None = None,
    ) -> Delivery:
        now = self._clock.now()
        message = self._repo.enqueue(
            key,
            kind,
            channel,
            text,
            list(blocks) if blocks is not None else None,
            now=now,
            holder=self.holder,
            lease=self._lease,
            thread_ts=thread_ts,
            ts=ts,
        )
        if message is None:
            if kind is OutboxKind.UPDATE:
                return Delivery(Outcome.QUEUED)  # its current sender sends this content after its own
            return Delivery(Outcome.DUPLICATE)
        outcome, ref = self._attempt(message, first=True)
        return Delivery(outcome, ref)

    def _attempt(self, message: OutboxMessage, *, first: bool) -> tuple[Outcome, MessageRef | None]:
        """Send a message this process holds, and settle its row."""
        for _ in range(3):  # an update replaced while we sent it: send the newer content
            try:
                ref = self._send(message)
            except Exception as exc:
                return self._failed(message, exc, first=first), None
            now = self._clock.now()
            if self._repo.mark_sent(message.key, self.holder, message.version, now, ref.ts if ref else None):
                OUTBOX_MESSAGES.labels("sent" if first else "resent").inc()
                return Outcome.SENT, ref
            fresh = self._repo.claim(message.key, self.holder, now, self._lease)
            if fresh is None:
                # The lease ran out mid-send and another process took the row: it sends the latest.
                return Outcome.SENT, ref
            message = fresh
        self._repo.release(message.key, self.holder, self._clock.now())
        return Outcome.QUEUED, None

    def _send(self, message: OutboxMessage) -> MessageRef | None:
        notifier = self._notifier
        if message.kind is OutboxKind.UPDATE:
            notifier.update(MessageRef(message.channel, message.ts or ""), message.text, message.blocks)
            return MessageRef(message.channel, message.ts or "")
        if message.kind is OutboxKind.DM:
            return notifier.dm(message.channel, message.text, message.blocks)
        return notifier.post(message.channel, message.text, message.blocks, thread_ts=message.thread_ts)

    def _failed(self, message: OutboxMessage, exc: Exception, *, first: bool) -> Outcome:
        error, permanent = slack_error(exc)
        now = self._clock.now()
        if permanent:
            self._repo.give_up(message.key, self.holder, now, error)
            OUTBOX_MESSAGES.labels("gave_up").inc()
            log.error("Slack refused message %s for good (%s); not retrying", message.key, error)
            return Outcome.FAILED
        attempts = message.attempts + 1
        self._repo.retry_at(message.key, self.holder, now + self._backoff.after(attempts), error)
        if first:
            OUTBOX_MESSAGES.labels("queued").inc()
        log.warning(
            "message %s not delivered (attempt %d: %s); queued for a retry", message.key, attempts, error
        )
        return Outcome.QUEUED

    # --- draining --------------------------------------------------------------------------------

    def drain(self, max_age: timedelta = DEFAULT_MAX_AGE, *, limit: int = 100) -> DrainReport:
        """Re-send what is due; give up on messages older than `max_age`.

        The first transient failure ends the run: Slack is most likely still down, and each further try
        would wait out slack_sdk's retries again. The rest go back untried, and the next run goes on.
        """
        report = DrainReport()
        now = self._clock.now()
        claimed = self._repo.claim_due(self.holder, now, self._lease, limit=limit)
        for index, message in enumerate(claimed):
            if self._clock.now() - message.created_at > max_age:
                self._abandon(message, max_age)
                report.gave_up.append(message.key)
                continue
            outcome, _ = self._attempt(message, first=False)
            if outcome is Outcome.SENT:
                report.sent.append(message.key)
            elif outcome is Outcome.FAILED:
                report.gave_up.append(message.key)
            else:
                report.retrying.append(message.key)
                rest = claimed[index + 1 :]
                self._put_back(rest)
                report.deferred += [m.key for m in rest]
                break
        return report

    def _abandon(self, message: OutboxMessage, max_age: timedelta) -> None:
        error = f"undelivered for more than {max_age} ({message.attempts} attempts)"
        if self._repo.give_up(message.key, self.holder, self._clock.now(), error):
            OUTBOX_MESSAGES.labels("gave_up").inc()
            log.error(
                "gave up on Slack message %s to %s after %s: %s",
                message.key,
                message.channel,
                max_age,
                message.text[:200],
            )

    def _put_back(self, messages: Sequence[OutboxMessage]) -> None:
        now = self._clock.now()
        for message in messages:
            self._repo.release(message.key, self.holder, now)


def update_key(ref: MessageRef) -> str:
    """The one outbox row per Slack message that its updates share."""
    return f"update:{ref.channel}:{ref.ts}"
