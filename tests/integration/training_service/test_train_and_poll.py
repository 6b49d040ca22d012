"""`train` and the job poller: rows before SSM, the exact launch script, refusals, and jobs settled only on
what the machines really answered."""

from __future__ import annotations

import re
from typing import Any

from bot.core.training import TrainingRequest, launch_script, status_script
from bot.services.training import TrainStatus
from storage.models import JobStatus, TrainingJob
from tests.integration.training_service.conftest import (
    CODE_URI,
    MachinesOverSsm,
    ServiceFactory,
    actor,
    job_id_in,
    replies_text,
    seen,
    train_command,
    wait_finished,
)
from tests.support.harness import Bot, rendered
from tests.support.slack import ALICE, BOB, CAROL, FLEET


def test_train_records_the_job_before_sending_exactly_the_launch_script(
    bot: Bot, machines: MachinesOverSsm, make_service: ServiceFactory
) -> None:
    machines.execute = False  # this test is about what is recorded and sent, not what runs
    service = make_service(machines)
    [iid] = bot.seed(1, owner=BOB.id)
    rows_at_send: list[TrainingJob | None] = []

    def before_send(instance_ids: Any, script: str) -> None:
        job_id = job_id_in(script)
        assert job_id is not None
        rows_at_send.append(bot.repos.jobs.get(job_id))

    machines.before_send = before_send
    cmd = train_command(iid, output="out/first", script_args=("--epochs", "3; rm -rf / #"))

    outcome = service.train(actor(bot, BOB.id), cmd, channel=FLEET.id)

    assert outcome.status is TrainStatus.STARTED, outcome.summary
    job_id = outcome.job_id
    assert job_id is not None and re.fullmatch(r"job-[0-9a-f]{12}", job_id)
    # The row existed, starting and without a command, when the command left.
    [before] = rows_at_send
    assert before is not None and (before.status, before.command_id) == (JobStatus.STARTING, None)
    # One SendCommand to that machine, whose script is exactly the launch script of this request.
    assert bot.calls.count("ssm.SendCommand") == 1
    [sent] = bot.calls.params("ssm.SendCommand")
    assert sent["InstanceIds"] == [iid] and sent["DocumentName"] == "AWS-RunShellScript"
    expected = launch_script(TrainingRequest.from_command(cmd, job_id))
    assert sent["Parameters"]["commands"] == [expected]
    assert job_id in sent["Parameters"]["commands"][0]
    row = bot.repos.jobs.get(job_id)
    assert row is not None and row.status == JobStatus.STARTING and row.owner == BOB.id
    listed = bot.aws.client("ssm").list_commands(CommandId=row.command_id)["Commands"]
    assert [c["CommandId"] for c in listed] == [row.command_id]
    assert (row.code_uri, row.entry, row.output_uri) == (CODE_URI, "train.py", str(cmd.output))
    assert row.args == ["--epochs", "3; rm -rf / #"]
    # The request is an operation holding the whole spec (a resume runs the same job).
    op = bot.repos.operations.get(job_id)
    assert op is not None and op.kind == "train" and op.status == "succeeded"
    assert op.params["spec"]["checkpoint_uri"] == f"{cmd.output}checkpoints/"
    # The result message: job, machine, code, entry, output, running; the row points at it.
    assert outcome.message is not None and (row.slack_channel, row.slack_ts) == (
        outcome.message.channel,
        outcome.message.ts,
    )
    message = bot.standin.message(FLEET.id, outcome.message.ts)
    assert message is not None
    shown = rendered(message)
    for part in (job_id, iid, CODE_URI, "train.py", str(cmd.output), "running"):
        assert part in shown


def test_train_is_refused_to_others_than_the_owner_and_on_a_busy_machine(
    bot: Bot, make_service: ServiceFactory
) -> None:
    service = make_service()
    [mine, stopped] = bot.seed(2, owner=BOB.id)
    bot.ec2.stop_instances(InstanceIds=[stopped])

    other = service.train(actor(bot, CAROL.id), train_command(mine), channel=FLEET.id)
    assert other.status is TrainStatus.REFUSED and other.message is None
    assert f"Only the owner of `{mine}` (<@{BOB.id}>) or an admin" in other.summary
    assert bot.calls.count("ssm.SendCommand") == 0 and bot.repos.jobs.list_active() == []

    off = service.train(actor(bot, BOB.id), train_command(stopped), channel=FLEET.id)
    assert off.status is TrainStatus.REFUSED and "is stopped" in off.summary
    missing = service.train(actor(bot, BOB.id), train_command("i-0000000000000dead"), channel=FLEET.id)
    assert missing.status is TrainStatus.REFUSED and "was not found" in missing.summary

    # An admin may train on anyone's machine; after that the machine is busy, for its owner too.
    admin = service.train(actor(bot, ALICE.id), train_command(mine), channel=FLEET.id)
    assert admin.status is TrainStatus.STARTED
    busy = service.train(actor(bot, BOB.id), train_command(mine), channel=FLEET.id)
    assert busy.status is TrainStatus.REFUSED
    assert f"`{mine}` is busy: job `{admin.job_id}`" in busy.summary and "One job per machine" in busy.summary
    assert bot.calls.count("ssm.SendCommand") == 1
    assert [j.id for j in bot.repos.jobs.list_active([mine])] == [admin.job_id]


def test_poll_settles_succeeded_failed_and_lost_jobs_and_tells_their_threads(
    bot: Bot, machines: MachinesOverSsm, make_service: ServiceFactory
) -> None:
    service = make_service(machines)
    ok_iid, bad_iid, gone_iid = bot.seed(3, owner=BOB.id)
    bob = actor(bot, BOB.id)
    machines.unreachable.add(gone_iid)  # its job never gets to run: the machine is terminated below
    ok = service.train(bob, train_command(ok_iid, output=None), channel=FLEET.id)
    bad = service.train(bob, train_command(bad_iid, output=None, mode="exit3"), channel=FLEET.id)
    gone = service.train(bob, train_command(gone_iid, output=None), channel=FLEET.id)
    assert ok.job_id and bad.job_id and gone.job_id
    wait_finished(machines, ok_iid, ok.job_id)
    wait_finished(machines, bad_iid, bad.job_id)
    bot.ec2.terminate_instances(InstanceIds=[gone_iid])
    bot.calls.reset()

    # Cycle 1: the launch answers prove two jobs run; the terminated machine's job is lost; status goes out.
    first = service.poll()
    assert sorted(first) == sorted([ok.job_id, bad.job_id, gone.job_id])
    assert (seen(bot, ok.job_id).status, seen(bot, bad.job_id).status) == (
        JobStatus.RUNNING,
        JobStatus.RUNNING,
    )
    assert seen(bot, gone.job_id).status == JobStatus.LOST
    [status_call] = bot.calls.params("ssm.SendCommand")
    order = sorted([(ok_iid, ok.job_id), (bad_iid, bad.job_id)])
    assert status_call["InstanceIds"] == [iid for iid, _ in order]
    assert status_call["Parameters"]["commands"] == [status_script([job for _, job in order])]

    # Cycle 2: the answers to cycle 1's status command settle both.
    second = service.poll()
    assert sorted(second) == sorted([ok.job_id, bad.job_id])
    assert (seen(bot, ok.job_id).status, seen(bot, ok.job_id).exit_code) == (JobStatus.SUCCEEDED, 0)
    assert (seen(bot, bad.job_id).status, seen(bot, bad.job_id).exit_code) == (JobStatus.FAILED, 3)
    for job_id in (ok.job_id, bad.job_id, gone.job_id):
        row = bot.repos.jobs.get(job_id)
        assert row is not None and row.finished_at is not None

    ok_row, bad_row, gone_row = (bot.repos.jobs.get(j) for j in (ok.job_id, bad.job_id, gone.job_id))
    assert ok_row and bad_row and gone_row
    said = replies_text(bot, ok_row)
    assert "succeeded" in said and "finished with exit code 0" in said
    assert "Ran for" in said and "$" in said and "/h" in said  # cost at the machine's price
    assert "training done" in said and "```" in said  # the last log lines, as a code block
    said = replies_text(bot, bad_row)
    assert "failed with exit code 3" in said and "giving up with exit code 3" in said
    said = replies_text(bot, gone_row)
    assert "was lost" in said and f"its machine `{gone_iid}` was terminated" in said
    # Each job's own message now says how it ended (edited in place).
    card = bot.standin.message(FLEET.id, str(ok_row.slack_ts))
    assert card is not None and "succeeded" in rendered(card)

    # A third cycle finds nothing left to follow: no more commands.
    bot.calls.reset()
    assert service.poll() == []
    assert bot.calls.count("ssm.SendCommand") == 0


def test_empty_answers_from_moto_change_nothing_and_120_machines_take_three_commands(
    bot: Bot, make_service: ServiceFactory
) -> None:
    service = make_service()  # the real provider on moto: every answer is "Success" with no output
    ids = bot.seed(120, owner=BOB.id)
    now = bot.clock.now()
    for number, iid in enumerate(ids):
        bot.repos.jobs.create(
            TrainingJob(
                id=f"job-{number:012x}",
                instance_id=iid,
                owner=BOB.id,
                status=JobStatus.RUNNING,
                code_uri=CODE_URI,
                entry="train.py",
                command_id=f"launch-{number}",
                started_at=now,
            )
        )
    before = {j.id: (j.status, j.version) for j in bot.repos.jobs.list_active()}

    assert service.poll() == []
    assert bot.calls.count("ssm.SendCommand") == 3
    assert [len(p["InstanceIds"]) for p in bot.calls.params("ssm.SendCommand")] == [50, 50, 20]
    assert bot.calls.count("ssm.GetCommandInvocation") == 0
    first_group = bot.calls.params("ssm.SendCommand")[0]
    asked = sorted(ids)[:50]
    assert first_group["InstanceIds"] == asked
    by_instance = {j.instance_id: j.id for j in bot.repos.jobs.list_active()}
    assert first_group["Parameters"]["commands"] == [status_script([by_instance[i] for i in asked])]

    bot.calls.reset()
    assert service.poll() == []
    assert bot.calls.count("ssm.GetCommandInvocation") == 120  # last cycle's answers, read once each
    assert bot.calls.count("ssm.SendCommand") == 3
    assert bot.calls.count("ec2.DescribeInstances") == 1  # one listing, no describe per machine
    after = {j.id: (j.status, j.version) for j in bot.repos.jobs.list_active()}
    assert after == before
    assert bot.standin.messages(FLEET.id) == []


def test_a_command_still_in_progress_is_read_again_and_never_changes_the_job(
    bot: Bot, machines: MachinesOverSsm, make_service: ServiceFactory
) -> None:
    machines.execute = False
    machines.hold = True  # as in real AWS right after a send: the answer is not there yet
    service = make_service(machines)
    [iid] = bot.seed(1, owner=BOB.id)
    started = service.train(actor(bot, BOB.id), train_command(iid), channel=FLEET.id)
    assert started.job_id is not None
    before = seen(bot, started.job_id)

    bot.calls.reset()
    assert service.poll() == []  # the launch answer is in progress: still starting
    assert bot.calls.count("ssm.SendCommand") == 1  # the first status command
    assert service.poll() == []  # its answer is in progress too: it is read again, not sent again
    assert bot.calls.count("ssm.SendCommand") == 1
    assert bot.calls.count("ssm.GetCommandInvocation") == 3  # launch, launch + status
    assert seen(bot, started.job_id) == before
    assert replies_text_or_empty(bot, started.job_id) == ""


def replies_text_or_empty(bot: Bot, job_id: str) -> str:
    row = bot.repos.jobs.get(job_id)
    assert row is not None and row.slack_ts is not None
    return "\n".join(
        rendered(m) for m in bot.standin.messages(FLEET.id, thread_ts=row.slack_ts) if m.is_reply
    )


def test_a_job_its_machine_never_reports_on_is_lost_after_the_start_timeout(
    bot: Bot, make_service: ServiceFactory
) -> None:
    """moto's SSM answers "Success" with no output, as a machine whose agent runs nothing would: left
    "starting", the job would shield its machine from idle cleanup for ever."""
    service = make_service()  # the real provider on moto
    [iid] = bot.seed(1, owner=BOB.id)
    started = service.train(actor(bot, BOB.id), train_command(iid), channel=FLEET.id)
    assert started.job_id is not None

    assert service.poll() == []
    bot.clock.advance(minutes=14)
    assert service.poll() == []
    assert seen(bot, started.job_id).status == JobStatus.STARTING

    bot.clock.advance(minutes=2)
    assert service.poll() == [started.job_id]
    assert seen(bot, started.job_id).status == JobStatus.LOST
    assert bot.repos.jobs.list_active([iid]) == []
    row = bot.repos.jobs.get(started.job_id)
    assert row is not None
    said = replies_text(bot, row)
    assert "was lost" in said and "has not reported on it in the 16 min since the launch" in said
    assert "is the SSM agent on the machine running?" in said


def test_a_launch_still_in_progress_after_the_start_timeout_keeps_the_job_starting(
    bot: Bot, machines: MachinesOverSsm, make_service: ServiceFactory
) -> None:
    machines.execute = False
    machines.hold = True  # every answer, the launch's included, reads "in progress"
    service = make_service(machines)
    [iid] = bot.seed(1, owner=BOB.id)
    started = service.train(actor(bot, BOB.id), train_command(iid), channel=FLEET.id)
    assert started.job_id is not None

    for _ in range(3):
        bot.clock.advance(minutes=10)
        assert service.poll() == []
    assert seen(bot, started.job_id).status == JobStatus.STARTING
