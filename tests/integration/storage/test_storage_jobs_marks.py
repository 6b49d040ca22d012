"""JobRepository and CleanupMarkRepository."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from sqlalchemy.exc import IntegrityError

from storage.errors import AlreadyExists
from storage.models import JobStatus, MarkState, TrainingJob
from storage.repositories import Repositories

At = Callable[[float], datetime]


def _job(
    job_id: str, at: At, *, instance_id: str = "i-1", owner: str = "U1", minutes: float = 0
) -> TrainingJob:
    return TrainingJob(
        id=job_id,
        instance_id=instance_id,
        owner=owner,
        code_uri="s3://bucket/code/abc.tar.gz",
        entry="train.py",
        args=["--epochs", "3"],
        env={"WANDB_MODE": "offline"},
        output_uri="s3://bucket/out/",
        started_at=at(minutes),
    )


def test_job_round_trip_and_transitions(repos: Repositories, at: At) -> None:
    job = repos.jobs.create(_job("j1", at))
    stored = repos.jobs.get(job.id)
    assert stored is not None
    assert (stored.status, stored.args, stored.env, stored.auto_resume, stored.resume_count) == (
        "starting",
        ["--epochs", "3"],
        {"WANDB_MODE": "offline"},
        False,
        0,
    )
    assert stored.started_at == at(0) and stored.finished_at is None

    assert repos.jobs.transition("j1", JobStatus.STARTING, JobStatus.RUNNING, command_id="cmd-1") is True
    # The poller and a cancel click race: only one of them ends the job.
    assert repos.jobs.transition("j1", "running", "succeeded", exit_code=0, finished_at=at(90)) is True
    assert repos.jobs.transition("j1", ["starting", "running"], "cancelled") is False

    final = repos.jobs.get("j1")
    assert final is not None
    assert (final.status, final.command_id, final.exit_code, final.finished_at, final.version) == (
        "succeeded",
        "cmd-1",
        0,
        at(90),
        2,
    )
    assert repos.jobs.set_slack_message("j1", "C1", "1.2") is True
    with pytest.raises(AlreadyExists):
        repos.jobs.create(_job("j1", at))
    with pytest.raises(ValueError):
        repos.jobs.transition("j1", "succeeded", "lost", bogus=True)


def test_resumed_jobs_point_at_a_real_job(repos: Repositories, at: At) -> None:
    repos.jobs.create(_job("j1", at))
    resumed = _job("j2", at, minutes=30)
    resumed.resumed_from, resumed.resume_count, resumed.auto_resume = "j1", 1, True
    repos.jobs.create(resumed)
    stored = repos.jobs.get("j2")
    assert stored is not None and (stored.resumed_from, stored.resume_count, stored.auto_resume) == (
        "j1",
        1,
        True,
    )
    dangling = _job("j3", at)
    dangling.resumed_from = "never-existed"
    with pytest.raises(IntegrityError):
        repos.jobs.create(dangling)


def test_active_jobs_and_an_owners_history(repos: Repositories, at: At) -> None:
    repos.jobs.create(_job("j1", at, instance_id="i-1", minutes=0))
    repos.jobs.create(_job("j2", at, instance_id="i-2", minutes=10))
    repos.jobs.create(_job("j3", at, instance_id="i-2", minutes=20, owner="U2"))
    repos.jobs.transition("j2", "starting", "running")
    repos.jobs.transition("j1", "starting", "failed", exit_code=1)

    assert [j.id for j in repos.jobs.list_active()] == ["j2", "j3"]
    assert [j.id for j in repos.jobs.list_active(["i-1"])] == []
    assert [j.id for j in repos.jobs.list_active(["i-2"])] == ["j2", "j3"]
    assert [j.id for j in repos.jobs.list_by_status("failed")] == ["j1"]
    assert [j.id for j in repos.jobs.list_for_owner("U1")] == ["j2", "j1"]
    assert [j.id for j in repos.jobs.list_for_owner("U1", limit=1)] == ["j2"]


def test_marking_twice_returns_the_open_mark(repos: Repositories, at: At) -> None:
    first = repos.cleanup_marks.mark("i-1", "idle", at=at(0), owner="U1", evidence={"cpu_max": 1.5})
    again = repos.cleanup_marks.mark("i-1", "idle", at=at(5), owner="U1", evidence={"cpu_max": 0.5})
    other_rule = repos.cleanup_marks.mark("i-1", "stopped-too-long", at=at(5))

    assert first.created and not again.created and other_rule.created
    assert again.mark.id == first.mark.id
    assert again.mark.evidence == {"cpu_max": 1.5} and again.mark.marked_at == at(0)
    assert first.mark.dry_run is True and first.mark.state == MarkState.MARKED
    open_marks = repos.cleanup_marks.list_open()
    assert [(m.instance_id, m.rule) for m in open_marks] == [("i-1", "idle"), ("i-1", "stopped-too-long")]
    assert [m.rule for m in repos.cleanup_marks.list_open(["i-1"], rule="idle")] == ["idle"]
    assert repos.cleanup_marks.list_open(["i-2"]) == []


def test_mark_notify_keep_act_and_mark_again(repos: Repositories, at: At) -> None:
    mark = repos.cleanup_marks.mark("i-1", "idle", at=at(0), dry_run=False).mark
    assert mark.id is not None
    assert repos.cleanup_marks.transition(mark.id, "marked", "notified", notified_at=at(1)) is True
    assert repos.cleanup_marks.set_dm_message(mark.id, "D1", "1.1") is True
    assert repos.cleanup_marks.set_slack_message(mark.id, "C1", "2.2") is True
    assert repos.cleanup_marks.keep(mark.id, at(241)) is True
    assert repos.cleanup_marks.keep(mark.id, at(1441), expected_version=2) is True
    assert repos.cleanup_marks.keep(mark.id, at(2000), expected_version=2) is False

    kept = repos.cleanup_marks.get(mark.id)
    assert kept is not None
    assert (kept.state, kept.keep_until, kept.keep_count, kept.notified_at) == ("kept", at(1441), 2, at(1))
    assert (kept.dm_channel, kept.dm_ts, kept.slack_channel, kept.slack_ts) == ("D1", "1.1", "C1", "2.2")

    assert repos.cleanup_marks.transition(mark.id, MarkState.KEPT, MarkState.ACTED, acted_at=at(1500)) is True
    assert repos.cleanup_marks.get_open("i-1", "idle") is None
    assert repos.cleanup_marks.keep(mark.id, at(3000)) is False  # closed marks cannot be kept

    fresh = repos.cleanup_marks.mark("i-1", "idle", at=at(2000))
    assert fresh.created and fresh.mark.id != mark.id
    # Reopening the old mark would make two open marks for the same instance and rule.
    assert repos.cleanup_marks.transition(mark.id, "acted", "marked") is False
    assert [m.id for m in repos.cleanup_marks.list_open()] == [fresh.mark.id]


def test_mark_transitions_check_state_and_fields(repos: Repositories, at: At) -> None:
    mark = repos.cleanup_marks.mark("i-1", "idle", at=at(0)).mark
    assert mark.id is not None
    assert repos.cleanup_marks.transition(mark.id, "notified", "acted") is False
    with pytest.raises(ValueError, match="open_key"):
        repos.cleanup_marks.transition(mark.id, "marked", "unmarked", open_key=None)
    assert repos.cleanup_marks.transition(mark.id, "marked", "unmarked") is True
    closed = repos.cleanup_marks.get(mark.id)
    assert closed is not None and closed.open_key is None and closed.state == "unmarked"
    # A closed mark may be reopened when nothing else holds its slot.
    assert repos.cleanup_marks.transition(mark.id, "unmarked", "marked") is True
    reopened = repos.cleanup_marks.get_open("i-1", "idle")
    assert reopened is not None and reopened.id == mark.id
    assert repos.cleanup_marks.get(10_000) is None
