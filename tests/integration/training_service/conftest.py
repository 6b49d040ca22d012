"""The training service inside the whole bot (moto for EC2, SSM and S3; the Slack stand-in for Slack).

moto's SSM answers every command at once with "Success" and an empty output: it never runs anything. Where
a test needs what a machine would have printed, `MachinesOverSsm` stands in for that one missing piece: it
runs the script the service sent — the real generated script, with bash, in a jobs directory of its own
per instance, against moto's S3, exactly as `tests/integration/training` runs them — and hands that output
back through `command_results`. Every SendCommand and GetCommandInvocation still goes to moto (so the
calls' shape and counts are real and counted); only the empty output is replaced. It is a test double for
SSM's execution on the machine, not for the service under test.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.core.commands import TrainCommand
from bot.core.safety import Actor
from bot.core.training import JobObservation, JobOutcome, classify
from bot.core.validation import s3_uri
from bot.services.training import ListObjects, TrainingService
from bot.slack.standin import Message, SlackStandIn
from bot.slack.standin.blockkit import validate_blocks
from providers import tags as tagschema
from providers.base import (
    CommandResult,
    CommandStatus,
    Instance,
    InstanceState,
    LaunchResult,
    LaunchSpec,
    Price,
    Provider,
    UtilisationSeries,
)
from storage.models import TrainingJob
from tests.integration.training.conftest import TRAIN_PY, Machine, make_machine, tar_gz
from tests.support.harness import Bot, rendered, running_bot
from tests.support.moto import MotoServer, tag_specifications
from tests.support.slack import BOB, FLEET

BUCKET = "runctl-service-tests"
CODE_URI = f"s3://{BUCKET}/code/train.tar.gz"
_JOB_LINE = re.compile(r"^job_id=(job-[0-9a-z]+)$", re.MULTILINE)
# The provider sends one SendCommand per 50 instances, in the order it was given them.
SSM_CHUNK = 50


@pytest.fixture
def bot(
    tmp_path: Path, standin: SlackStandIn, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Bot]:
    with running_bot(tmp_path, standin, aws, monkeypatch) as running:
        yield running


@pytest.fixture
def s3(aws: MotoServer) -> Any:
    """moto's S3 with the bucket and the training code (the script of the training tests, as a tarball)."""
    client = aws.client("s3")
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="code/train.tar.gz", Body=tar_gz({"train.py": TRAIN_PY.encode()}))
    return client


def s3_lister(client: Any) -> ListObjects:
    """What the lead builds from the provider's boto3 session: every object under a prefix, paginated."""

    def list_objects(bucket: str, prefix: str) -> list[dict[str, Any]]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [dict(item) for page in pages for item in page.get("Contents", [])]

    return list_objects


class MachinesOverSsm:
    """The bot's real AWS provider with SSM's missing half: the sent script really runs (see the module doc).

    `execute=False` only passes through (the calls go to moto, nothing runs, outputs stay empty);
    `hold=True` makes every answer read "in progress", as a just-sent command does in real AWS.
    `before_send` sees each script before it is sent (to check what the database held at that moment).
    """

    def __init__(self, real: Provider, root: Path, endpoint_url: str, *, execute: bool = True) -> None:
        self.real = real
        self.name = real.name
        self.region = real.region
        self.execute = execute
        self.hold = False
        self.unreachable: set[str] = set()  # machines whose scripts never run (their answers stay empty)
        self.before_send: Callable[[Sequence[str], str], None] | None = None
        self.sent: list[tuple[str, list[str], str]] = []
        self._root = root
        self._endpoint_url = endpoint_url
        self._machines: dict[str, Machine] = {}
        self._outputs: dict[tuple[str, str], str] = {}

    def machine(self, instance_id: str) -> Machine:
        if instance_id not in self._machines:
            self._machines[instance_id] = make_machine(self._root / instance_id, self._endpoint_url)
        return self._machines[instance_id]

    def cleanup(self) -> None:
        for machine in self._machines.values():
            if machine.jobs_dir.exists():
                machine.launched.extend(p.name for p in machine.jobs_dir.iterdir())
            machine.kill_leftovers()

    # -- the SSM half -------------------------------------------------------------------------------

    def run_command(self, instance_ids: Sequence[str], script: str, *, comment: str = "") -> list[str]:
        if self.before_send is not None:
            self.before_send(instance_ids, script)
        command_ids = self.real.run_command(instance_ids, script, comment=comment)
        ids = list(dict.fromkeys(instance_ids))
        chunks = [ids[i : i + SSM_CHUNK] for i in range(0, len(ids), SSM_CHUNK)]
        for command_id, chunk in zip(command_ids, chunks, strict=True):
            self.sent.append((command_id, chunk, script))
            if self.execute:
                for instance_id in (i for i in chunk if i not in self.unreachable):
                    self._outputs[(command_id, instance_id)] = self.machine(instance_id).run(script)
        return command_ids

    def command_results(self, command_id: str, instance_ids: Sequence[str]) -> list[CommandResult]:
        answered = self.real.command_results(command_id, instance_ids)
        if self.hold:
            return [replace(r, status=CommandStatus.IN_PROGRESS, stdout="", exit_code=None) for r in answered]
        return [replace(r, stdout=self._outputs.get((command_id, r.instance_id), r.stdout)) for r in answered]

    # -- everything else: the real provider ---------------------------------------------------------

    def launch(self, spec: LaunchSpec) -> LaunchResult:
        return self.real.launch(spec)

    def list_managed(self) -> list[Instance]:
        return self.real.list_managed()

    def list_unmanaged_running(self) -> list[Instance]:
        return self.real.list_unmanaged_running()

    def describe_many(self, instance_ids: Sequence[str]) -> dict[str, Instance]:
        return self.real.describe_many(instance_ids)

    def describe(self, instance_id: str) -> Instance | None:
        return self.real.describe(instance_id)

    def find_by_operation(self, operation_id: str) -> Instance | None:
        return self.real.find_by_operation(operation_id)

    def start(self, instance_ids: Sequence[str]) -> dict[str, InstanceState]:
        return self.real.start(instance_ids)

    def stop(self, instance_ids: Sequence[str]) -> dict[str, InstanceState]:
        return self.real.stop(instance_ids)

    def terminate(self, instance_ids: Sequence[str]) -> dict[str, InstanceState]:
        return self.real.terminate(instance_ids)

    def set_tags(self, instance_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        self.real.set_tags(instance_ids, tags)

    def remove_tags(self, instance_ids: Sequence[str], keys: Sequence[str]) -> None:
        self.real.remove_tags(instance_ids, keys)

    def utilisation(
        self,
        instance_ids: Sequence[str],
        *,
        end: datetime,
        window: timedelta,
        period_seconds: int = 300,
        instance_types: Mapping[str, str] | None = None,
    ) -> dict[str, dict[str, UtilisationSeries]]:
        return self.real.utilisation(
            instance_ids,
            end=end,
            window=window,
            period_seconds=period_seconds,
            instance_types=instance_types,
        )

    def on_demand_price(self, instance_type: str) -> Price:
        return self.real.on_demand_price(instance_type)

    def spot_prices(self, instance_types: Sequence[str]) -> list[Price]:
        return self.real.spot_prices(instance_types)


@pytest.fixture
def machines(bot: Bot, tmp_path: Path) -> Iterator[MachinesOverSsm]:
    double = MachinesOverSsm(
        bot.application.services.deps.provider, tmp_path / "machines", bot.aws.endpoint_url
    )
    yield double
    double.cleanup()


ServiceFactory = Callable[..., TrainingService]


@pytest.fixture
def make_service(bot: Bot, s3: Any) -> ServiceFactory:
    """A TrainingService over the bot's own services; `provider` swaps in the SSM double."""

    def make(provider: Provider | None = None, **options: Any) -> TrainingService:
        services = bot.application.services
        deps = services.deps if provider is None else replace(services.deps, provider=provider)
        options.setdefault("list_objects", s3_lister(s3))
        options.setdefault("sleep", lambda _seconds: None)
        return TrainingService(deps, services.operations, services.auditor, **options)

    return make


# --- helpers -------------------------------------------------------------------------------------------


def train_command(
    instance_id: str, *, output: str | None = "out", mode: str = "", **options: Any
) -> TrainCommand:
    env = (("MODE", mode),) if mode else ()
    return TrainCommand(
        instance_id=instance_id,
        code=s3_uri(CODE_URI),
        output=s3_uri(f"s3://{BUCKET}/{output}/") if output else None,
        env=env,
        **options,
    )


def actor(bot: Bot, user: str) -> Actor:
    return bot.application.services.deps.roles.actor(user)


def job_id_in(script: str) -> str | None:
    found = _JOB_LINE.search(script)
    return found.group(1) if found else None


def seed_spot(bot: Bot, *, owner: str = BOB.id, instance_type: str = "t3.micro") -> str:
    """A managed spot machine, as the bot would have launched it, known to the database."""
    tags = {tagschema.MANAGED: "true", tagschema.OWNER: owner, tagschema.PROJECT: "llm"}
    response = bot.ec2.run_instances(
        ImageId="ami-0d27e0fb3bac4d724",
        InstanceType=instance_type,
        MinCount=1,
        MaxCount=1,
        InstanceMarketOptions={"MarketType": "spot"},
        TagSpecifications=tag_specifications(tags),
    )
    bot.application.services.tracking.reconcile()
    bot.calls.reset()
    return str(response["Instances"][0]["InstanceId"])


def wait_finished(machines: MachinesOverSsm, instance_id: str, job_id: str) -> JobObservation:
    """Until the real job ended on its stand-in machine (polling its real status script)."""
    seen = machines.machine(instance_id).wait_until(
        [job_id], lambda s: job_id in s and classify(s[job_id]) is not JobOutcome.RUNNING, timeout=45
    )
    return seen[job_id]


def slack_errors(blocks: list[dict[str, Any]]) -> tuple[str, ...]:
    """What Slack would reject in these blocks (the stand-in applies Slack's limits)."""
    ids = itertools.count()
    return validate_blocks(blocks, new_id=lambda: f"block-{next(ids)}", has_text_fallback=True).errors


def thread(bot: Bot, job: TrainingJob) -> list[Message]:
    """The job's message and its thread replies, oldest first."""
    assert job.slack_channel == FLEET.id and job.slack_ts
    return bot.standin.messages(job.slack_channel, thread_ts=job.slack_ts)


def thread_text(bot: Bot, job: TrainingJob) -> str:
    return "\n".join(rendered(m) for m in thread(bot, job))


def replies_text(bot: Bot, job: TrainingJob) -> str:
    return "\n".join(rendered(m) for m in thread(bot, job) if m.is_reply)


@dataclass(frozen=True)
class Seen:
    """A job row as read back, for compact assertions."""

    status: str
    exit_code: int | None
    version: int


def seen(bot: Bot, job_id: str) -> Seen:
    row = bot.repos.jobs.get(job_id)
    assert row is not None
    return Seen(row.status, row.exit_code, row.version)
