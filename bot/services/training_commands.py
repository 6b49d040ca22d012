"""The training verbs on the dispatcher: `train`, `logs`, `jobs`, `cancel`, `checkpoints`, `resume`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.core import commands as cmds
from bot.services.deps import ServiceDeps
from bot.services.dispatch import Origin, Reply
from bot.services.training import TrainingReply, TrainingService, TrainOutcome


def _reply(result: TrainOutcome | TrainingReply) -> Reply:
    if isinstance(result, TrainOutcome) and result.message is not None:
        return Reply("")  # posted in the channel already, and updated there as the job runs
    return Reply(result.text, list(result.blocks))


class TrainingCommands:
    def __init__(self, deps: ServiceDeps, training: TrainingService) -> None:
        self._deps = deps
        self._t = training

    def handlers(self) -> dict[str, Callable[[Any, Origin], Reply]]:
        return {
            "train": self.train,
            "logs": self.logs,
            "jobs": self.jobs,
            "cancel": self.cancel,
            "checkpoints": self.checkpoints,
            "resume": self.resume,
        }

    def _actor(self, origin: Origin) -> Any:
        return self._deps.roles.actor(origin.user)

    def train(self, c: cmds.TrainCommand, o: Origin) -> Reply:
        return _reply(self._t.train(self._actor(o), c, channel=o.channel))

    def logs(self, c: cmds.LogsCommand, o: Origin) -> Reply:
        return _reply(self._t.logs(self._actor(o), c.job_id or c.instance_id or "", c.lines))

    def jobs(self, c: cmds.JobsCommand, o: Origin) -> Reply:
        return _reply(self._t.jobs(self._actor(o), c.all_users))

    def cancel(self, c: cmds.CancelCommand, o: Origin) -> Reply:
        return _reply(self._t.cancel(self._actor(o), c.job_id))

    def checkpoints(self, c: cmds.CheckpointsCommand, o: Origin) -> Reply:
        target: Any = c.job_id if c.job_id else c.prefix
        return _reply(self._t.checkpoints(target))

    def resume(self, c: cmds.ResumeCommand, o: Origin) -> Reply:
        return _reply(
            self._t.resume(
                self._actor(o), c.job_id, on_instance=c.on_instance, spot_type=c.spot_type, channel=o.channel
            )
        )
