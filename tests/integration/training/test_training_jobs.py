"""Jobs that run to the end: launched together with the real launch script, awaited with the real status
script, then checked on disk, in S3 and through `parse_status`/`classify`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.core.commands import TrainCommand
from bot.core.training import JobObservation, JobOutcome, JobState, TrainingRequest, classify, explain
from bot.core.validation import s3_uri
from tests.integration.training.conftest import (
    BUCKET,
    TRAIN_PY,
    Machine,
    build_wheel,
    list_keys,
    make_machine,
    new_job_id,
    read_object,
    tar_gz,
)
from tests.support.moto import MotoServer

WEIRD_ENTRY = "odd dir/tr;ain $(touch canary-entry) 'x' \"y\".py"
WEIRD_CODE_KEY = "weird key/$(touch canary-key)/`id`;x.tar.gz"
WEIRD_OUTPUT = "s3://" + BUCKET + "/out put/it's $(x)/"


def payloads(canary: Path, victim: Path) -> list[str]:
    """Text that would run a command, split a word or expand something if it ever reached a shell as code."""
    return [
        f"; touch {canary}/semicolon #",
        f"; rm -rf {victim} #",
        f"$(touch {canary}/dollar)",
        f"`touch {canary}/backtick`",
        f"'; touch {canary}/single; '",
        f'"; touch {canary}/double; "',
        f"line one\ntouch {canary}/newline\nline three",
        f"&& touch {canary}/and",
        f"| touch {canary}/pipe",
        f"> {canary}/redirect",
        "two  spaces\tand a tab",
        "*",
        "~",
        "$HOME ${PATH} $((1+1))",
        "{a,b}",
        "-e",
        "--resume-from",
        "",
        "back\\slash\\n",
        "ünïcødé ✓",
        "[0]=x",
    ]


@dataclass
class Fleet:
    machine: Machine
    requests: dict[str, TrainingRequest]
    seen: dict[str, JobObservation]
    canary: Path
    victim: Path

    def job(self, name: str) -> str:
        return self.requests[name].job_id

    def observation(self, name: str) -> JobObservation:
        return self.seen[self.job(name)]

    def reported(self, name: str) -> dict[str, Any]:
        path = self.machine.job_dir(self.job(name)) / "output" / "seen.json"
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded


def upload_code(s3: Any, tmp: Path) -> None:
    wheel = build_wheel(tmp)
    plain = {"train.py": TRAIN_PY.encode(), WEIRD_ENTRY: TRAIN_PY.encode()}
    with_requirements = {
        **plain,
        "requirements.txt": f"./wheels/{wheel.name}\n".encode(),
        f"wheels/{wheel.name}": wheel.read_bytes(),
    }
    s3.put_object(Bucket=BUCKET, Key="code/project.tar.gz", Body=tar_gz(with_requirements))
    s3.put_object(Bucket=BUCKET, Key="code/plain.tar.gz", Body=tar_gz(plain))
    s3.put_object(Bucket=BUCKET, Key=WEIRD_CODE_KEY, Body=tar_gz(plain))
    s3.put_object(Bucket=BUCKET, Key="code-prefix/src/train.py", Body=TRAIN_PY.encode())
    s3.put_object(Bucket=BUCKET, Key="code-prefix/README", Body=b"not code")
    s3.put_object(Bucket=BUCKET, Key="datasets/small/a.txt", Body=b"a")
    s3.put_object(Bucket=BUCKET, Key="datasets/small/nested/b.txt", Body=b"b")
    s3.put_object(Bucket=BUCKET, Key="previous/checkpoints/step-7.pt", Body=b"seven")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, moto_server: MotoServer, s3: Any) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    upload_code(s3, root)
    machine = make_machine(root / "machine", moto_server.endpoint_url)
    canary = root / "canary"
    canary.mkdir()
    victim = root / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("still here")
    texts = payloads(canary, victim)
    uri = s3_uri

    def command(code: str, **options: Any) -> TrainCommand:
        return TrainCommand(instance_id="i-0123456789abcdef0", code=uri(code), **options)

    requests = {
        "ok": TrainingRequest.from_command(
            command(
                f"s3://{BUCKET}/code/project.tar.gz",
                data=uri(f"s3://{BUCKET}/datasets/small/"),
                output=uri(f"s3://{BUCKET}/runs/ok"),
                env=(("EPOCHS", "2"),),
                script_args=("--epochs", "2", "--note", "hello world"),
            ),
            new_job_id(),
        ),
        "fail": TrainingRequest.from_command(
            command(
                f"s3://{BUCKET}/code/plain.tar.gz",
                output=uri(f"s3://{BUCKET}/runs/fail/"),
                env=(("MODE", "exit3"),),
            ),
            new_job_id(),
        ),
        "prefix": TrainingRequest.from_command(
            command(f"s3://{BUCKET}/code-prefix/", entry="src/train.py"), new_job_id()
        ),
        "inject": TrainingRequest.from_command(
            command(
                f"s3://{BUCKET}/{WEIRD_CODE_KEY}",
                entry=WEIRD_ENTRY,
                output=uri(WEIRD_OUTPUT),
                env=tuple((f"INJ_{n}", text) for n, text in enumerate(texts)),
                script_args=tuple(texts),
            ),
            new_job_id(),
        ),
        "no-entry": TrainingRequest.from_command(
            command(f"s3://{BUCKET}/code/plain.tar.gz", entry="missing.py"), new_job_id()
        ),
        "no-requirements": TrainingRequest.from_command(
            command(f"s3://{BUCKET}/code/plain.tar.gz", requirements="nope.txt"), new_job_id()
        ),
        "resume": TrainingRequest.from_command(
            command(f"s3://{BUCKET}/code/plain.tar.gz", output=uri(f"s3://{BUCKET}/runs/resumed/")),
            new_job_id(),
            resume_from=uri(f"s3://{BUCKET}/previous/checkpoints/"),
        ),
        "bad-code": TrainingRequest.from_command(
            command(f"s3://{BUCKET}/code/absent.tar.gz"),
            new_job_id(),
            checkpoint_base=uri(f"s3://{BUCKET}/checkpoint-base"),
        ),
    }
    for request in requests.values():
        report = machine.launch(request)
        assert report.started, report
        assert report.job_id == request.job_id
    seen = machine.wait_finished(request.job_id for request in requests.values())
    yield Fleet(machine, requests, seen, canary, victim)
    machine.kill_leftovers()


def test_a_job_that_exits_0_succeeded_and_says_so_in_its_status_files(fleet: Fleet) -> None:
    seen = fleet.observation("ok")
    assert classify(seen) is JobOutcome.SUCCEEDED
    assert (seen.state, seen.alive, seen.exit_code, seen.phase) == (JobState.EXITED, False, 0, "done")
    assert seen.started_at is not None and seen.finished_at is not None
    assert seen.started_at <= seen.finished_at
    assert (seen.error, seen.sync_error, seen.cancelled, seen.restarted) == (None, None, False, False)
    assert "training done" in seen.log_tail
    assert explain(seen) == "finished with exit code 0"
    job = fleet.job("ok")
    job_dir = fleet.machine.job_dir(job)
    assert fleet.machine.fact(job, "exit_code") == "0"
    assert fleet.machine.fact(job, "log") == str(job_dir / "train.log")
    assert fleet.machine.fact(job, "pid") == str(seen.pid)
    assert not (job_dir / "data").exists(), "the data copy is removed when the job ends"


def test_a_job_that_exits_3_failed_and_its_output_is_still_uploaded(fleet: Fleet, s3: Any) -> None:
    seen = fleet.observation("fail")
    assert classify(seen) is JobOutcome.FAILED
    assert seen.exit_code == 3
    assert seen.error is None
    assert "giving up with exit code 3" in seen.log_tail
    assert explain(seen) == "failed with exit code 3"
    assert list_keys(s3, "runs/fail/") == [
        "runs/fail/checkpoints/step-1.pt",
        "runs/fail/checkpoints/step-2.pt",
        "runs/fail/metrics.txt",
        "runs/fail/seen.json",
    ]


def test_output_and_checkpoints_are_synced_to_the_output_prefix(fleet: Fleet, s3: Any) -> None:
    assert list_keys(s3, "runs/ok/") == [
        "runs/ok/checkpoints/step-1.pt",
        "runs/ok/checkpoints/step-2.pt",
        "runs/ok/metrics.txt",
        "runs/ok/seen.json",
    ]
    assert read_object(s3, "runs/ok/checkpoints/step-2.pt") == b"two"
    uploaded = json.loads(read_object(s3, "runs/ok/seen.json"))
    assert uploaded == fleet.reported("ok")


def test_the_training_gets_its_environment_data_and_installed_requirements(fleet: Fleet) -> None:
    reported = fleet.reported("ok")
    job = fleet.job("ok")
    job_dir = fleet.machine.job_dir(job)
    assert reported["argv"] == ["--epochs", "2", "--note", "hello world"]
    assert reported["env"] == {
        "RUNCTL_JOB_ID": job,
        "RUNCTL_OUTPUT": str(job_dir / "output"),
        "RUNCTL_CHECKPOINT": str(job_dir / "checkpoints"),
        "RUNCTL_DATA": str(job_dir / "data"),
    }
    assert reported["cwd"] == str(job_dir / "code")
    assert reported["data"] == ["a.txt", "nested/b.txt"]
    assert reported["tinydep"] == "1.0", "requirements.txt was installed into the job's venv"
    assert reported["prefix"] == str(job_dir / "venv")
    # Its own session and process group, which is what cancel signals.
    assert reported["pid"] == reported["pgid"] == reported["sid"]
    assert fleet.machine.fact(job, "train_pid") == str(reported["pid"])


def test_code_from_a_prefix_runs_an_entry_in_a_subdirectory(fleet: Fleet) -> None:
    seen = fleet.observation("prefix")
    assert classify(seen) is JobOutcome.SUCCEEDED
    reported = fleet.reported("prefix")
    assert reported["cwd"] == str(fleet.machine.job_dir(fleet.job("prefix")) / "code")
    assert reported["tinydep"] is None
    assert "no requirements file; nothing to install" in seen.log_tail


def test_no_checkpoint_upload_without_output_or_base(fleet: Fleet) -> None:
    request = fleet.requests["prefix"]
    assert request.checkpoint_uri is None and request.output_uri is None
    assert "uploading" not in fleet.observation("prefix").log_tail


def test_injection_text_reaches_argv_and_environment_verbatim_and_runs_nothing(
    fleet: Fleet, s3: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    seen = fleet.observation("inject")
    assert classify(seen) is JobOutcome.SUCCEEDED, seen.log_tail
    request = fleet.requests["inject"]
    reported = fleet.reported("inject")
    assert reported["argv"] == list(request.script_args)
    assert {k: v for k, v in reported["env"].items() if k.startswith("INJ_")} == dict(request.env)
    assert list(fleet.canary.iterdir()) == []
    assert (fleet.victim / "keep.txt").read_text() == "still here"
    strays = list(Path(tmp_path_factory.getbasetemp()).rglob("canary-*"))
    assert strays == []
    # The odd code key, entry name and output prefix were data too.
    assert list_keys(s3, "out put/it's $(x)/") == [
        "out put/it's $(x)/checkpoints/step-1.pt",
        "out put/it's $(x)/checkpoints/step-2.pt",
        "out put/it's $(x)/metrics.txt",
        "out put/it's $(x)/seen.json",
    ]


def test_a_missing_entry_fails_during_setup_with_the_reason(fleet: Fleet) -> None:
    seen = fleet.observation("no-entry")
    assert classify(seen) is JobOutcome.FAILED
    assert (seen.exit_code, seen.phase) == (2, "done")
    assert seen.error == "the entry script missing.py is not in the code"
    assert explain(seen) == "failed with exit code 2: the entry script missing.py is not in the code"
    assert fleet.machine.fact(fleet.job("no-entry"), "train_pid") is None


def test_a_named_requirements_file_must_exist(fleet: Fleet) -> None:
    seen = fleet.observation("no-requirements")
    assert classify(seen) is JobOutcome.FAILED
    assert seen.error == "the requirements file nope.txt is not in the code"


def test_a_code_download_failure_is_a_failed_job(fleet: Fleet) -> None:
    seen = fleet.observation("bad-code")
    assert classify(seen) is JobOutcome.FAILED
    assert seen.exit_code not in (None, 0)
    assert seen.error == f"downloading the code from s3://{BUCKET}/code/absent.tar.gz failed"
    assert fleet.requests["bad-code"].checkpoint_uri == s3_uri(
        f"s3://{BUCKET}/checkpoint-base/{fleet.job('bad-code')}/"
    )


def test_resume_downloads_the_checkpoint_and_passes_resume_from(fleet: Fleet, s3: Any) -> None:
    seen = fleet.observation("resume")
    assert classify(seen) is JobOutcome.SUCCEEDED, seen.log_tail
    reported = fleet.reported("resume")
    source = f"s3://{BUCKET}/previous/checkpoints/"
    assert reported["argv"] == ["--resume-from", source]
    assert reported["env"]["RUNCTL_RESUME_FROM"] == source
    assert reported["checkpoints_at_start"] == ["step-7.pt"]
    assert list_keys(s3, "runs/resumed/checkpoints/") == [
        "runs/resumed/checkpoints/step-1.pt",
        "runs/resumed/checkpoints/step-2.pt",
        "runs/resumed/checkpoints/step-7.pt",
    ]


def test_a_second_launch_of_the_same_job_id_is_refused(fleet: Fleet) -> None:
    report = fleet.machine.launch(fleet.requests["ok"])
    assert (report.started, report.reason) == (False, "already-exists")
    assert fleet.machine.fact(fleet.job("ok"), "exit_code") == "0"


def test_parse_status_reads_every_job_in_one_answer_and_marks_unknown_ones_missing(fleet: Fleet) -> None:
    unknown = new_job_id()
    ids = [request.job_id for request in fleet.requests.values()]
    seen = fleet.machine.status([*ids, unknown], log_lines=3, log_bytes=200)
    assert set(seen) == {*ids, unknown}
    assert seen[unknown].state is JobState.MISSING
    assert classify(seen[unknown]) is JobOutcome.LOST
    ok = seen[fleet.job("ok")]
    assert ok.log_tail.count("\n") <= 3 and len(ok.log_tail.encode()) <= 200
    assert ok.log_tail.rstrip("\n").endswith("job finished with exit code 0")
