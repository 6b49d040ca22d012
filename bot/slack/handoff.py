"""How work leaves a Slack listener once it has acked: a named kind of work plus the Slack payload.

A listener decides and acks (parse, authorise, refuse, help); everything slower is a `kind` registered
here with a function of the payload alone. Because the work is described as data rather than a closure,
it can run on this process's executor (`InlineHandoff`: tests, the sandbox) or in a separate work process
(`bot.work_process.ProcessHandoff`: `serve`), where cloud calls and rendering never compete with acks for
the interpreter lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from slack_bolt import Respond

from bot.services.container import BotServices

log = logging.getLogger(__name__)

WorkFn = Callable[[dict[str, Any], Respond], None]


def respond_for(body: dict[str, Any]) -> Respond:
    """A `respond` built from the payload, as Bolt builds one: the work process has no Bolt context."""
    url = body.get("response_url")
    if not url:
        urls = body.get("response_urls") or []
        url = urls[0].get("response_url") if urls else None
    return Respond(response_url=str(url) if url else None)


class WorkKinds:
    """Kind name → work function; every process registers the same kinds from the same listeners."""

    def __init__(self) -> None:
        self._kinds: dict[str, WorkFn] = {}

    def register(self, kind: str, work: WorkFn) -> None:
        if kind in self._kinds:
            raise ValueError(f"work kind {kind!r} is registered twice")
        self._kinds[kind] = work

    def __contains__(self, kind: object) -> bool:
        return kind in self._kinds

    def run(self, kind: str, body: dict[str, Any], respond: Respond) -> None:
        """Run one delivery's work; a failure is logged here, the work function tells the user."""
        work = self._kinds.get(kind)
        if work is None:
            log.error("no work registered for kind %r; the delivery was dropped", kind)
            return
        try:
            work(body, respond)
        except Exception:
            log.exception("work of kind %s failed", kind)


class Handoff(Protocol):
    def put(self, kind: str, body: dict[str, Any], respond: Respond) -> None:
        """Queue the work; returns in microseconds, before the listener acks."""

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every queued piece of work has finished; True when none is left."""


class InlineHandoff:
    """Runs the work on this process's bounded executor, with Bolt's own `respond`."""

    def __init__(self, services: BotServices, kinds: WorkKinds) -> None:
        self.services = services
        self.kinds = kinds

    def put(self, kind: str, body: dict[str, Any], respond: Respond) -> None:
        if kind not in self.kinds:
            raise ValueError(f"unknown work kind {kind!r}")
        self.services.submit(self.kinds.run, kind, body, respond)

    def drain(self, timeout: float = 30.0) -> bool:
        return self.services.drain(timeout)
