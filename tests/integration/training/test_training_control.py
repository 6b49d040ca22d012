"""Jobs while they run: status, periodic checkpoint upload, cancel (SIGTERM, then SIGKILL), logs, refusals,
and the liveness checks of the status script against hand-made job directories."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from bot.core.training import (
    SLACK_CODE_LIMIT,
    CancelResult,
    JobOutcome,
    JobState,
    TrainingRequest,
    classify,
    explain,
    launch_script,
    parse_launch,
    slack_log_block,
)
from bot.core.validation import s3_uri
from tests.integration.training.conftest import (
    BUCKET,
    TRAIN_PY,
    Machine,
    list_keys,
    new_job_id,
    read_object,
    tar_gz,
)


@pytest.fixture(scope="module")
def code(s3: Any) -> str:
    s3.put_object(Bucket=BUCKET, Key="control/code.tar.gz", Body=tar_gz({"train.py": TRAIN_PY.encode()}))
    return f"s3://{BUCKET}/control/code.tar.gz"


def request(code: str, mode: str, **options: Any) -> TrainingRequest:
    options.setdefault("checkpoint_sync_seconds", 0)
    return TrainingRequest(job_id=new_job_id(), code_uri=s3_uri(code), env=(("MODE", mode),), **options)


def waiting_for_signal(machine: Machine, job_id: str) -> None:
    """Until the training has installed its signal handler and is idling (it prints a line when it has)."""
    machine.wait_until(
        [job_id],
        lambda seen: job_id in seen and "waiting for a signal" in seen[job_id].log_tail,
        timeout=30,
    )


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_running_job_uploads_checkpoints_and_a_cancel_lets_it_save_one_more(
    machine: Machine, code: str, s3: Any
) -> None:
    job = request(
        code,
        "sleep",
        output_uri=s3_uri(f"s3://{BUCKET}/control/sleepy/"),
        checkpoint_uri=s3_uri(f"s3://{BUCKET}/control/sleepy/checkpoints/"),
        checkpoint_sync_seconds=1,
    )
    report = machine.launch(job)
    assert report.started and report.pid is not None
    waiting_for_signal(machine, job.job_id)

    # The launch answered while the job runs on: it is detached.
    seen = machine.status([job.job_id])[job.job_id]
    assert (seen.state, seen.alive, seen.pid, seen.phase) == (JobState.RUNNING, True, report.pid, "training")
    assert classify(seen) is JobOutcome.RUNNING
    assert explain(seen) == "training"

    # Checkpoints reach S3 while the training still runs.
    machine.wait_until(
        [job.job_id],
        lambda _: len(list_keys(s3, "control/sleepy/checkpoints/")) == 2,
        timeout=20,
    )

    assert machine.cancel(job.job_id, grace_seconds=20) is CancelResult.TERMINATED
    seen = machine.wait_finished([job.job_id])[job.job_id]
    assert classify(seen) is JobOutcome.CANCELLED
    assert (seen.exit_code, seen.cancelled) == (143, True)
    assert explain(seen) == "cancelled (exit code 143)"
    assert "got SIGTERM, saved final.pt" in seen.log_tail
    # The checkpoint written on SIGTERM is uploaded after the training exits.
    assert read_object(s3, "control/sleepy/checkpoints/final.pt") == b"final"
    assert machine.cancel(job.job_id, grace_seconds=1) is CancelResult.NOT_RUNNING


def test_cancel_escalates_to_sigkill_when_the_training_ignores_sigterm(machine: Machine, code: str) -> None:
    job = request(code, "ignore-term")
    assert machine.launch(job).started
    waiting_for_signal(machine, job.job_id)
    train_pid = int(machine.fact(job.job_id, "train_pid") or "0")
    assert process_exists(train_pid)

    assert machine.cancel(job.job_id, grace_seconds=1) is CancelResult.KILLED
    seen = machine.wait_finished([job.job_id])[job.job_id]
    assert classify(seen) is JobOutcome.CANCELLED
    assert seen.exit_code == 137
    assert not process_exists(train_pid)


def test_cancel_during_setup_stops_the_runner_before_the_training_starts(
    machine: Machine, code: str, tmp_path: Path
) -> None:
    # A python that takes its time: the venv step is still running when the cancel comes.
    slow = tmp_path / "slow-python"
    started = tmp_path / "slow-python-started"
    slow.write_text(f'#!/bin/bash\ntouch {started}\nsleep 30\nexec python3 "$@"\n')
    slow.chmod(slow.stat().st_mode | stat.S_IEXEC)
    job = request(code, "", python=str(slow))
    assert machine.launch(job).started
    machine.wait_until([job.job_id], lambda _: started.exists(), timeout=20)

    assert machine.cancel(job.job_id, grace_seconds=10) is CancelResult.TERMINATED
    seen = machine.wait_finished([job.job_id])[job.job_id]
    assert classify(seen) is JobOutcome.CANCELLED
    assert (seen.exit_code, seen.error) == (143, "stopped during setup")
    assert machine.fact(job.job_id, "train_pid") is None


def test_a_job_id_that_is_running_cannot_be_launched_twice(machine: Machine, code: str) -> None:
    job = request(code, "sleep")
    assert machine.launch(job).started
    report = machine.launch(job)
    assert (report.started, report.reason) == (False, "already-running")
    assert machine.cancel(job.job_id, grace_seconds=10) in (CancelResult.TERMINATED, CancelResult.KILLED)
    assert classify(machine.wait_finished([job.job_id])[job.job_id]) is JobOutcome.CANCELLED


def test_cancel_of_an_unknown_job_says_missing(machine: Machine) -> None:
    assert machine.cancel(new_job_id(), grace_seconds=1) is CancelResult.MISSING


def test_logs_are_clamped_to_500_lines_and_cut_for_slack(machine: Machine, code: str) -> None:
    job = request(code, "chatty")
    assert machine.launch(job).started
    assert classify(machine.wait_finished([job.job_id])[job.job_id]) is JobOutcome.SUCCEEDED

    tail = machine.logs(job.job_id, 10_000)
    assert tail is not None and tail.found and tail.job_id == job.job_id
    lines = tail.text.splitlines()
    assert len(lines) == 500
    assert lines[-1].endswith("job finished with exit code 0")
    assert tail.size == (machine.job_dir(job.job_id) / "train.log").stat().st_size

    few = machine.logs(job.job_id, 0)
    assert few is not None and few.text.splitlines() == lines[-1:]

    block = slack_log_block(tail.text)
    assert len(block) <= SLACK_CODE_LIMIT
    assert block.endswith(lines[-1] + "\n```")
    assert block.startswith("… ") and "earlier lines" in block.splitlines()[0]

    missing = machine.logs(new_job_id(), 5)
    assert missing is not None and (missing.found, missing.text) == (False, "")


def test_a_relative_jobs_dir_is_refused(machine: Machine, code: str) -> None:
    job = request(code, "")
    output = machine.run(launch_script(job), env={"RUNCTL_JOBS_DIR": "relative/jobs"})
    report = parse_launch(output)
    assert report is not None and (report.started, report.reason) == (False, "bad-jobs-dir")


def test_a_missing_tool_is_refused_before_anything_is_created(machine: Machine, code: str) -> None:
    job = request(code, "", python="/nonexistent/python3")
    report = machine.launch(job)
    assert (report.started, report.reason) == (False, "missing-tool")
    assert not machine.job_dir(job.job_id).exists()


def test_the_launch_script_runs_as_ssm_runs_it_and_refuses_plain_sh(
    machine: Machine, code: str, tmp_path: Path
) -> None:
    job = request(code, "")
    script = tmp_path / "_script.sh"
    script.write_text(launch_script(job))
    script.chmod(0o700)
    # The SSM agent runs `sh -c <file>`: the kernel reads the shebang and starts bash.
    done = subprocess.run(
        ["sh", "-c", str(script)], env=machine.env, capture_output=True, text=True, check=False
    )
    report = parse_launch(done.stdout)
    assert report is not None and report.started, done.stderr
    machine.launched.append(job.job_id)
    assert classify(machine.wait_finished([job.job_id])[job.job_id]) is JobOutcome.SUCCEEDED

    # Fed to a POSIX sh as text instead, it stops at the first line rather than half-running.
    other = request(code, "")
    fed = subprocess.run(
        ["sh", "-s"], input=launch_script(other), env=machine.env, capture_output=True, text=True, check=False
    )
    assert fed.returncode == 2
    report = parse_launch(fed.stdout)
    assert report is not None and (report.started, report.reason) == (False, "needs-bash")
    assert not machine.job_dir(other.job_id).exists()


# --- liveness, against job directories made by hand ----------------------------------------------------


def fake_job(machine: Machine, *, pid: int, boot_id: str, **facts: str) -> str:
    job_id = new_job_id()
    job_dir = machine.job_dir(job_id)
    job_dir.mkdir(parents=True)
    (job_dir / "pid").write_text(f"{pid}\n")
    (job_dir / "boot_id").write_text(f"{boot_id}\n")
    (job_dir / "started_at").write_text("2026-01-02T03:04:05Z\n")
    (job_dir / "train.log").write_text("first\nlast\n")
    for name, value in facts.items():
        (job_dir / name).write_text(value)
    return job_id


def this_boot() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def test_a_live_pid_that_is_not_the_runner_is_not_taken_for_the_job(machine: Machine) -> None:
    # This test process is alive, in this boot, but it is not the job's runner.sh.
    job_id = fake_job(machine, pid=os.getpid(), boot_id=this_boot(), phase="training\n")
    seen = machine.status([job_id])[job_id]
    assert (seen.state, seen.alive, seen.exit_code, seen.restarted) == (JobState.EXITED, False, None, False)
    assert classify(seen) is JobOutcome.FAILED
    assert explain(seen) == "the process is gone without an exit code"
    assert seen.log_tail == "first\nlast\n"


def test_a_job_from_before_a_reboot_is_gone(machine: Machine) -> None:
    job_id = fake_job(machine, pid=os.getpid(), boot_id="00000000-0000-0000-0000-000000000000")
    seen = machine.status([job_id])[job_id]
    assert (seen.alive, seen.restarted) == (False, True)
    assert classify(seen) is JobOutcome.FAILED
    assert explain(seen) == "the process is gone without an exit code (the machine restarted)"


def test_torn_or_edited_status_files_read_as_absent(machine: Machine) -> None:
    job_id = fake_job(
        machine,
        pid=os.getpid(),
        boot_id=this_boot(),
        exit_code="3; rm -rf /\n",
        finished_at="yesterday\n",
        phase="Training!\n",
        sync_error="uploading the output to s3://b/o/ failed (aws exit code 1); \n",
    )
    seen = machine.status([job_id])[job_id]
    assert (seen.exit_code, seen.finished_at, seen.phase) == (None, None, None)
    assert seen.sync_error == "uploading the output to s3://b/o/ failed (aws exit code 1);"
    assert classify(seen) is JobOutcome.FAILED


def test_a_job_launched_seconds_ago_without_a_runner_pid_yet_is_starting(machine: Machine) -> None:
    fresh, stale = new_job_id(), new_job_id()
    for job_id in (fresh, stale):
        machine.job_dir(job_id).mkdir(parents=True)
        (machine.job_dir(job_id) / "launched_at").write_text("2026-01-02T03:04:05Z\n")
    two_minutes_ago = time.time() - 120
    os.utime(machine.job_dir(stale) / "launched_at", (two_minutes_ago, two_minutes_ago))
    seen = machine.status([fresh, stale])
    assert (seen[fresh].state, seen[fresh].alive, seen[fresh].phase) == (JobState.RUNNING, False, "starting")
    assert classify(seen[fresh]) is JobOutcome.RUNNING
    # Launched long ago and no runner ever wrote its pid: it never started.
    assert seen[stale].state is JobState.EXITED
    assert classify(seen[stale]) is JobOutcome.FAILED
