"""Cancel, logs, jobs, checkpoints, resume and spot recovery, over moto and the Slack stand-in (with the real
on-machine scripts where the test needs what a machine prints)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.core.training import TrainingRequest, cancel_script, launch_script, logs_script
from bot.core.validation import S3Uri, s3_uri
from bot.services.training import TrainStatus
from bot.views.training import RESUME_SPOT
from storage.models import JobStatus, TrainingJob
from tests.integration.training_service.conftest import (
    BUCKET,
    MachinesOverSsm,
    ServiceFactory,
    actor,
    replies_text,
    seed_spot,
    seen,
    slack_errors,
    thread,
    train_command,
    wait_finished,
)
from tests.support.harness import Bot, buttons, rendered
from tests.support.moto import FaultInjector
from tests.support.slack import ALICE, BOB, CAROL, DAVE, FLEET


def job_row(bot: Bot, job_id: str | None) -> TrainingJob:
    assert job_id is not None
    row = bot.repos.jobs.get(job_id)
    assert row is not None
    return row


def sent_scripts(bot: Bot) -> list[str]:
    return [p["Parameters"]["commands"][0] for p in bot.calls.params("ssm.SendCommand")]


# --- cancel ---------------------------------------------------------------------------------------------


def test_the_owner_cancels_a_running_job_and_the_poller_reports_it_cancelled(
    bot: Bot, machines: MachinesOverSsm, make_service: ServiceFactory
) -> None:
    service = make_service(machines)
    [iid] = bot.seed(1, owner=BOB.id)
    started = service.train(
        actor(bot, BOB.id), train_command(iid, output=None, mode="sleep"), channel=FLEET.id
    )
    job_id = started.job_id
    assert job_id is not None
    machines.machine(iid).wait_until(
        [job_id], lambda s: job_id in s and "waiting for a signal" in s[job_id].log_tail, timeout=30
    )
    bot.calls.reset()

    outcome = service.cancel(actor(bot, BOB.id), job_id)

    assert outcome.status is TrainStatus.CANCELLING and outcome.message is not None
    assert sent_scripts(bot) == [cancel_script(job_id)]
    ended = wait_finished(
        machines, iid, job_id
    )  # the real cancel script sent SIGTERM; the job saved and left
    assert ended.cancelled and ended.exit_code == 143
    service.poll()
    service.poll()
    row = job_row(bot, job_id)
    assert (row.status, row.exit_code) == (JobStatus.CANCELLED, 143)
    said = replies_text(bot, row)
    assert f"<@{BOB.id}> asked to cancel" in said and "was cancelled" in said and "got SIGTERM" in said


def test_only_owners_approvers_and_admins_may_cancel(bot: Bot, make_service: ServiceFactory) -> None:
    service = make_service()
    [iid, other] = bot.seed(2, owner=BOB.id)
    started = service.train(actor(bot, BOB.id), train_command(iid), channel=FLEET.id)
    job_id = started.job_id
    assert job_id is not None
    bot.calls.reset()

    refused = service.cancel(actor(bot, DAVE.id), job_id)
    assert refused.status is TrainStatus.REFUSED
    assert f"belongs to <@{BOB.id}>" in refused.summary
    assert f"<@{ALICE.id}>" in refused.summary and f"<@{CAROL.id}>" in refused.summary  # who can
    assert bot.calls.count("ssm.SendCommand") == 0

    by_approver = service.cancel(actor(bot, CAROL.id), job_id)
    assert by_approver.status is TrainStatus.CANCELLING
    assert sent_scripts(bot) == [cancel_script(job_id)]
    assert bot.calls.params("ssm.SendCommand")[0]["InstanceIds"] == [iid]

    done = service.train(actor(bot, BOB.id), train_command(other), channel=FLEET.id)
    assert done.job_id is not None
    bot.repos.jobs.transition(done.job_id, JobStatus.STARTING, JobStatus.SUCCEEDED, exit_code=0)
    late = service.cancel(actor(bot, BOB.id), done.job_id)
    assert late.status is TrainStatus.REFUSED and "is not running" in late.summary
    assert seen(bot, job_id).status == JobStatus.STARTING  # a cancel never settles a job by itself


# --- logs and jobs --------------------------------------------------------------------------------------


def test_logs_are_read_with_one_command_and_cut_to_slack_limits(
    bot: Bot, machines: MachinesOverSsm, make_service: ServiceFactory
) -> None:
    service = make_service(machines)
    [iid] = bot.seed(1, owner=BOB.id)
    started = service.train(
        actor(bot, BOB.id), train_command(iid, output=None, mode="chatty"), channel=FLEET.id
    )
    job_id = started.job_id
    assert job_id is not None
    wait_finished(machines, iid, job_id)
    bot.calls.reset()

    reply = service.logs(actor(bot, CAROL.id), job_id, 500)

    assert sent_scripts(bot) == [logs_script(job_id, 500)]
    assert bot.calls.count("ssm.GetCommandInvocation") == 1
    assert slack_errors(reply.blocks) == ()
    code = [b["text"]["text"] for b in reply.blocks if "```" in b.get("text", {}).get("text", "")]
    assert len(code) == 1 and len(code[0]) <= 3000
    assert "chatty line 599" in code[0] and "training done" in code[0]
    assert "earlier lines" in code[0] and "chatty line 0\n" not in code[0]  # the start is what is cut
    # A machine id reads its latest job's log.
    by_machine = service.logs(actor(bot, BOB.id), iid, 5)
    assert "job finished with exit code 0" in rendered_reply(by_machine)

    # Without an answer (moto's SSM prints nothing), the reply says so instead of showing an empty log.
    plain = make_service().logs(actor(bot, BOB.id), job_id, 50)
    assert "not available yet" in plain.text and "```" not in rendered_reply(plain)


def rendered_reply(reply: Any) -> str:
    return "\n".join([reply.text, *(b.get("text", {}).get("text", "") for b in reply.blocks)])


def test_jobs_come_from_the_database_running_first(bot: Bot, make_service: ServiceFactory) -> None:
    service = make_service()
    mine_a, mine_b = bot.seed(2, owner=BOB.id)
    [hers] = bot.seed(1, owner=ALICE.id)
    old = service.train(actor(bot, BOB.id), train_command(mine_a), channel=FLEET.id)
    bot.clock.advance(timedelta(minutes=5))
    new = service.train(actor(bot, BOB.id), train_command(mine_b), channel=FLEET.id)
    other = service.train(actor(bot, ALICE.id), train_command(hers), channel=FLEET.id)
    assert old.job_id and new.job_id and other.job_id
    bot.repos.jobs.transition(
        new.job_id, JobStatus.STARTING, JobStatus.FAILED, exit_code=1, finished_at=bot.clock.now()
    )
    bot.calls.reset()

    mine = rendered_reply(service.jobs(actor(bot, BOB.id)))
    everyone = rendered_reply(service.jobs(actor(bot, BOB.id), all_users=True))

    assert bot.calls.total() == 0
    assert old.job_id in mine and new.job_id in mine and other.job_id not in mine
    assert mine.index(old.job_id) < mine.index(new.job_id)  # the running one first, though older
    assert all(j in everyone for j in (old.job_id, new.job_id, other.job_id)) and f"<@{ALICE.id}>" in everyone


# --- checkpoints ----------------------------------------------------------------------------------------


def put_after_the_next_second(s3: Any, earlier_key: str) -> None:
    """S3 times have one-second resolution: wait (by the wall clock) until a new put is surely newer."""
    stamp = s3.head_object(Bucket=BUCKET, Key=earlier_key)["LastModified"]
    while datetime.now(UTC) < stamp + timedelta(seconds=1, milliseconds=50):
        time.sleep(0.02)


def test_checkpoints_are_listed_newest_first_with_what_a_resume_would_use(
    bot: Bot, s3: Any, make_service: ServiceFactory
) -> None:
    service = make_service()
    [iid, other] = bot.seed(2, owner=BOB.id)
    started = service.train(actor(bot, BOB.id), train_command(iid, output="out/ck"), channel=FLEET.id)
    base = "out/ck/checkpoints/"
    s3.put_object(Bucket=BUCKET, Key=base + "step-10.pt", Body=b"0123456789")
    put_after_the_next_second(s3, base + "step-10.pt")
    s3.put_object(Bucket=BUCKET, Key=base + "step-2.pt", Body=b"22")
    s3.put_object(Bucket=BUCKET, Key=base + "step-3/model.pt", Body=b"333")
    s3.put_object(Bucket=BUCKET, Key=base + "step-3/optim.pt", Body=b"4444")
    s3.put_object(Bucket=BUCKET, Key="out/ck/metrics.txt", Body=b"not a checkpoint")

    assert started.job_id is not None
    by_job = service.checkpoints(started.job_id)
    by_prefix = service.checkpoints(s3_uri(f"s3://{BUCKET}/out/ck/checkpoints"))

    assert by_job == by_prefix
    shown = rendered_reply(by_job)
    names = ["step-3/optim.pt", "step-3/model.pt", "step-2.pt", "step-10.pt"]
    positions = [shown.index(f"`{name}`") for name in names]
    assert positions == sorted(positions), shown  # newest first, though step-10 sorts last by name
    assert "metrics.txt" not in shown and "10 B" in shown
    resume_line = next(line for line in shown.splitlines() if "resume" in line and "starts from" in line)
    assert "step-3/optim.pt" in resume_line  # the newest checkpoint is the folder step-3/
    assert slack_errors(by_job.blocks) == ()

    no_output = service.train(actor(bot, BOB.id), train_command(other, output=None), channel=FLEET.id)
    assert no_output.job_id is not None
    assert "on its machine only" in service.checkpoints(no_output.job_id).text


# --- resume ---------------------------------------------------------------------------------------------


def test_resume_runs_the_same_job_from_its_latest_checkpoint(
    bot: Bot, s3: Any, machines: MachinesOverSsm, make_service: ServiceFactory
) -> None:
    service = make_service(machines)
    first_iid, second_iid = bot.seed(2, owner=BOB.id)
    cmd = train_command(first_iid, output="out/r", script_args=("--epochs", "3"))
    first = service.train(actor(bot, BOB.id), cmd, channel=FLEET.id)
    assert first.job_id is not None
    wait_finished(machines, first_iid, first.job_id)  # it uploaded step-1.pt and step-2.pt at its end

    early = service.resume(actor(bot, BOB.id), first.job_id, on_instance=second_iid)
    assert early.status is TrainStatus.REFUSED and "still starting" in early.summary
    service.poll()
    service.poll()
    assert seen(bot, first.job_id).status == JobStatus.SUCCEEDED
    bot.calls.reset()

    outcome = service.resume(actor(bot, BOB.id), first.job_id, on_instance=second_iid, channel=FLEET.id)

    assert outcome.status is TrainStatus.STARTED, outcome.summary
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="out/r/checkpoints/")["Contents"]
    newest = max(item["LastModified"] for item in listing)
    latest_key = max((i["Key"] for i in listing if i["LastModified"] == newest), key=lambda k: (len(k), k))
    latest = S3Uri(BUCKET, latest_key)
    expected = replace(TrainingRequest.from_command(cmd, str(outcome.job_id)), resume_from=latest)
    assert sent_scripts(bot) == [launch_script(expected)]
    assert bot.calls.params("ssm.SendCommand")[0]["InstanceIds"] == [second_iid]
    resumed = job_row(bot, outcome.job_id)
    assert (resumed.resumed_from, resumed.resume_count, resumed.instance_id) == (first.job_id, 1, second_iid)
    assert f"Resumed as `{outcome.job_id}` on `{second_iid}`" in replies_text(bot, job_row(bot, first.job_id))

    # On the machine, the real runner fetched that checkpoint and passed it on.
    wait_finished(machines, second_iid, str(outcome.job_id))
    seen_json = machines.machine(second_iid).job_dir(str(outcome.job_id)) / "output" / "seen.json"
    record = json.loads(seen_json.read_text())
    assert record["argv"] == ["--epochs", "3", "--resume-from", str(latest)]
    assert latest_key.rsplit("/", 1)[1] in record["checkpoints_at_start"]

    again = service.resume(actor(bot, BOB.id), first.job_id, on_instance=first_iid)
    assert again.status is TrainStatus.REFUSED and f"already resumed as `{outcome.job_id}`" in again.summary
    stranger = service.resume(actor(bot, CAROL.id), str(outcome.job_id))
    assert stranger.status is TrainStatus.REFUSED and "owner" in stranger.summary


# --- spot recovery --------------------------------------------------------------------------------------


def test_a_reclaimed_spot_machine_offers_a_resume_button_that_resumes_on_a_new_spot_machine(
    bot: Bot, make_service: ServiceFactory
) -> None:
    service = make_service()
    spot = seed_spot(bot, owner=BOB.id)
    started = service.train(actor(bot, BOB.id), train_command(spot, output="out/spot"), channel=FLEET.id)
    job_id = started.job_id
    assert job_id is not None
    bot.ec2.terminate_instances(InstanceIds=[spot])
    bot.calls.reset()

    service.on_spot_interruption(spot)

    row = job_row(bot, job_id)
    assert row.status == JobStatus.LOST and row.finished_at is not None
    [notice] = [m for m in thread(bot, row) if m.is_reply]
    assert f"AWS reclaimed the spot t3.micro `{spot}`" in rendered(notice)
    assert buttons(notice) == [RESUME_SPOT]
    [button] = [e for b in notice.blocks if b["type"] == "actions" for e in b["elements"]]
    assert button["value"] == job_id
    assert bot.calls.count("ec2.RunInstances") == 0  # no --auto-resume: nothing happens unasked
    service.on_spot_interruption(spot)  # a second notice for the same machine changes nothing
    assert len([m for m in thread(bot, row) if m.is_reply]) == 1

    # The click launches a new spot machine; its SSM agent is not registered yet the first time.
    provider: Any = bot.application.services.deps.provider
    FaultInjector().attach(provider.clients.ssm).error(
        "ssm", "SendCommand", code="InvalidInstanceId", times=1
    )
    clicked = service.resume_button(job_id, BOB.id)

    assert clicked.status is TrainStatus.PENDING, clicked.summary
    assert bot.calls.count("ec2.RunInstances") == 1
    new_job = job_row(bot, clicked.job_id)
    assert (new_job.status, new_job.command_id, new_job.resumed_from) == (JobStatus.STARTING, None, job_id)
    fresh = bot.describe(new_job.instance_id)
    assert (fresh.get("InstanceLifecycle"), fresh["InstanceType"]) == ("spot", "t3.micro")

    service.poll()  # the machine answers now: the job is sent

    new_job = job_row(bot, clicked.job_id)
    assert new_job.command_id is not None and new_job.slack_ts is not None
    assert "from the beginning (no checkpoint yet)" in replies_text(bot, row)
    twice = service.resume_button(job_id, BOB.id)
    assert twice.status is TrainStatus.REFUSED and f"already resumed as `{new_job.id}`" in twice.summary
    assert bot.calls.count("ec2.RunInstances") == 1


def test_auto_resume_follows_spot_interruptions_up_to_the_limit(
    bot: Bot, make_service: ServiceFactory
) -> None:
    service = make_service()  # at most 3 automatic resumes, the default
    machine = seed_spot(bot, owner=BOB.id)
    first = service.train(
        actor(bot, BOB.id), train_command(machine, output="out/auto", auto_resume=True), channel=FLEET.id
    )
    assert first.job_id is not None
    current = job_row(bot, first.job_id)
    for number in (1, 2, 3):
        bot.ec2.terminate_instances(InstanceIds=[current.instance_id])
        bot.application.services.tracking.reconcile()

        service.on_spot_interruption(current.instance_id)

        lost = job_row(bot, current.id)
        assert lost.status == JobStatus.LOST
        notice = next(m for m in thread(bot, lost) if m.is_reply)
        assert f"resume {number} of at most 3" in rendered(notice) and buttons(notice) == []
        [following] = bot.repos.jobs.list_active()
        assert (following.resumed_from, following.resume_count, following.auto_resume) == (
            current.id,
            number,
            True,
        )
        assert following.command_id is not None  # sent at once: moto's machine runs immediately
        launched = bot.describe(following.instance_id)
        assert (launched.get("InstanceLifecycle"), launched["InstanceType"]) == ("spot", "t3.micro")
        current = following

    bot.ec2.terminate_instances(InstanceIds=[current.instance_id])
    bot.calls.reset()
    service.on_spot_interruption(current.instance_id)

    assert job_row(bot, current.id).status == JobStatus.LOST
    assert bot.repos.jobs.list_active() == [] and bot.calls.count("ec2.RunInstances") == 0
    notice = next(m for m in thread(bot, job_row(bot, current.id)) if m.is_reply)
    assert "stops here" in rendered(notice) and buttons(notice) == [RESUME_SPOT]
