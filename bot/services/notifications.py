"""What reconcile saw change, told to the owner: in the launch message's thread, else by DM.

Spot interruptions are said plainly, with the job that was running and the time AWS gives for the
reclaim. Each transition is claimed once (a `sent_notices` row, even with several bot processes); its
notice then goes through the outbox, so a Slack outage delays it instead of losing it, and the spot
handling (the job marked lost, a resume offered or started) runs on the claim, whether Slack answers or not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from bot.core.safety import format_time
from bot.services.deps import ServiceDeps
from providers.base import SPOT_INTERRUPTION_CODES, Instance, InstanceState, Lifecycle
from storage.repositories import TransitionRecord

log = logging.getLogger(__name__)

_TOLD = {
    InstanceState.RUNNING: ":large_green_circle: `{id}` ({type}) is running.",
    InstanceState.STOPPED: ":white_circle: `{id}` ({type}) has stopped.",
    InstanceState.TERMINATED: ":black_circle: `{id}` ({type}) was terminated.",
}


def spot_interrupted(t: TransitionRecord) -> bool:
    return t.lifecycle is Lifecycle.SPOT and (t.reason_code or "") in SPOT_INTERRUPTION_CODES


def spot_text(t: TransitionRecord, itype: str, job: str) -> str:
    """The reclaim time AWS gave, else plainly the time the bot noticed it."""
    when = t.cloud_at
    if when is not None:
        at = f"at {format_time(when)} (noticed {format_time(t.at)})"
    else:
        at = f"at or before {format_time(t.at)} (when the bot noticed it; AWS gave no time)"
    return f":warning: Your spot {itype} `{t.resource_id}` was reclaimed by AWS {at}{job}."


class StateNotifier:
    def __init__(
        self, deps: ServiceDeps, *, on_spot_interruption: Callable[[str], None] | None = None
    ) -> None:
        self._deps = deps
        self._on_spot = on_spot_interruption

    def tell(self, transitions: Sequence[TransitionRecord], instances: Sequence[Instance]) -> list[str]:
        """Notify owners of state changes; returns the notice keys told (sent now or queued)."""
        by_id = {i.id: i for i in instances}
        told: list[str] = []
        for t in transitions:
            if t.first_sight or t.to_state not in _TOLD:
                continue
            key = f"state:{t.resource_id}:{t.to_state.value}:{t.at.isoformat()}"
            if not self._deps.repos.notices.first_time(key, self._deps.clock.now()):
                continue
            told.append(key)
            try:
                self._send(key, t, by_id.get(t.resource_id))
            except Exception:
                log.exception("state notice %s could not be queued", key)
            if spot_interrupted(t) and self._on_spot is not None:
                try:
                    self._on_spot(t.resource_id)  # the job's thread offers (or does) a resume
                except Exception:
                    log.exception("spot interruption handling of %s failed", t.resource_id)
        return told

    def _send(self, key: str, t: TransitionRecord, inst: Instance | None) -> None:
        repos, outbox = self._deps.repos, self._deps.outbox
        row = repos.resources.get(t.resource_id)
        owner = (inst.owner if inst else None) or (row.owner if row else None)
        itype = (inst.instance_type if inst else None) or (row.instance_type if row else "?")
        if spot_interrupted(t):
            jobs = repos.jobs.list_active([t.resource_id])
            text = spot_text(t, itype, f"; job `{jobs[0].id}` was running" if jobs else "")
        else:
            text = _TOLD[t.to_state].format(id=t.resource_id, type=itype)
        op = repos.operations.get(row.operation_id) if row and row.operation_id else None
        if op is not None and op.slack_channel and op.slack_ts:
            outbox.post(key, op.slack_channel, text, None, thread_ts=op.slack_ts)
        elif owner and owner.startswith(("U", "W")):
            outbox.dm(key, owner, text, None)
