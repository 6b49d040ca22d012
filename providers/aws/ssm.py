"""Shell commands on instances through SSM Run Command (`AWS-RunShellScript`).

`SendCommand` accepts at most 50 instance ids, so a command to N instances is ⌈N/50⌉ requests and as many
command ids. `SendCommand` is not idempotent (a retried request runs the script twice), so it is retried only
when the request certainly did not run (see `providers.retry`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from providers.aws.calls import AwsCaller
from providers.aws.ec2 import chunked, unique
from providers.base import CommandResult, CommandStatus
from providers.errors import InvalidRequestError, NotFoundError

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

MAX_INSTANCES_PER_COMMAND = 50
DOCUMENT = "AWS-RunShellScript"
MAX_COMMENT = 100

_STATUS = {
    "Pending": CommandStatus.PENDING,
    "Delayed": CommandStatus.PENDING,
    "InProgress": CommandStatus.IN_PROGRESS,
    "Success": CommandStatus.SUCCESS,
    "Failed": CommandStatus.FAILED,
    "TimedOut": CommandStatus.TIMED_OUT,
    "Cancelled": CommandStatus.CANCELLED,
    "Cancelling": CommandStatus.CANCELLED,
}


def command_status(raw: str | None) -> CommandStatus:
    return _STATUS.get(raw or "", CommandStatus.UNKNOWN)


class SsmCommands:
    def __init__(self, client: SSMClient, caller: AwsCaller, *, timeout_seconds: int) -> None:
        self._client = client
        self._caller = caller
        self._timeout_seconds = timeout_seconds

    def send(self, instance_ids: Sequence[str], script: str, *, comment: str = "") -> list[str]:
        """Start `script` on every instance; one command id per chunk of 50 instances."""
        if not script.strip():
            raise InvalidRequestError("the script is empty")
        ids = unique(instance_ids)
        command_ids: list[str] = []
        for batch in chunked(ids, MAX_INSTANCES_PER_COMMAND):
            response = self._caller.call(
                "ssm:SendCommand",
                functools.partial(
                    self._client.send_command,
                    InstanceIds=batch,
                    DocumentName=DOCUMENT,
                    Comment=comment[:MAX_COMMENT],
                    Parameters={"commands": [script], "executionTimeout": [str(self._timeout_seconds)]},
                ),
                idempotent=False,
            )
            command_ids.append(str(response["Command"]["CommandId"]))
        return command_ids

    def results(self, command_id: str, instance_ids: Sequence[str]) -> list[CommandResult]:
        """Status and output per instance.

        One GetCommandInvocation per instance: ListCommandInvocations would batch this, but moto (the test
        endpoint) does not implement it. An invocation SSM does not know (yet) reads as UNKNOWN.
        """
        results: list[CommandResult] = []
        for instance_id in unique(instance_ids):
            try:
                response = self._caller.call(
                    "ssm:GetCommandInvocation",
                    functools.partial(
                        self._client.get_command_invocation, CommandId=command_id, InstanceId=instance_id
                    ),
                )
            except NotFoundError as exc:
                if exc.code != "InvocationDoesNotExist":
                    raise  # e.g. InvalidCommandId: the command itself is unknown
                results.append(CommandResult(command_id, instance_id, CommandStatus.UNKNOWN))
                continue
            code = response.get("ResponseCode")
            results.append(
                CommandResult(
                    command_id=command_id,
                    instance_id=instance_id,
                    status=command_status(response.get("Status")),
                    exit_code=int(code) if code is not None and int(code) >= 0 else None,
                    stdout=str(response.get("StandardOutputContent") or ""),
                    stderr=str(response.get("StandardErrorContent") or ""),
                )
            )
        return results
