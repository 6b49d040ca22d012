"""The pure half of bot.core.training: request validation, rendering, parsing, verdicts and the Slack cut.

Lives beside the integration tests because the rendering checks hand the scripts to the real bash."""

from __future__ import annotations

import base64
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.commands import TrainCommand
from bot.core.training import (
    CancelResult,
    CodeForm,
    JobObservation,
    JobOutcome,
    JobState,
    LaunchReport,
    LogTail,
    TrainingRequest,
    cancel_script,
    classify,
    code_form,
    explain,
    launch_script,
    logs_script,
    parse_cancel,
    parse_launch,
    parse_logs,
    parse_status,
    slack_log_block,
    status_script,
)
from bot.core.validation import S3Uri, ValidationError, s3_uri

JOB = "job-0123456789ab"
CODE = s3_uri("s3://bucket-a/code/project.tar.gz")


def command(**options: object) -> TrainCommand:
    return TrainCommand(instance_id="i-0123456789abcdef0", code=CODE, **options)  # type: ignore[arg-type]


# --- the request ---------------------------------------------------------------------------------------


def test_from_command_puts_checkpoints_under_the_output_prefix() -> None:
    request = TrainingRequest.from_command(command(output=s3_uri("s3://bucket-a/runs/one")), JOB)
    assert request.output_uri == S3Uri("bucket-a", "runs/one/")
    assert request.checkpoint_uri == S3Uri("bucket-a", "runs/one/checkpoints/")
    assert (request.entry, request.requirements, request.python) == ("train.py", None, "python3")


def test_from_command_falls_back_to_the_configured_checkpoint_base_then_to_none() -> None:
    base = s3_uri("s3://bucket-b/ckpt")
    assert TrainingRequest.from_command(command(), JOB, checkpoint_base=base).checkpoint_uri == S3Uri(
        "bucket-b", f"ckpt/{JOB}/"
    )
    assert TrainingRequest.from_command(command(), JOB).checkpoint_uri is None


def test_argv_appends_resume_from_after_the_users_arguments() -> None:
    resume = s3_uri("s3://bucket-a/runs/one/checkpoints/")
    request = TrainingRequest.from_command(command(script_args=("--lr", "0.1")), JOB, resume_from=resume)
    assert request.argv == ("--lr", "0.1", "--resume-from", "s3://bucket-a/runs/one/checkpoints/")
    assert TrainingRequest.from_command(command(script_args=("a",)), JOB).argv == ("a",)


def test_code_forms() -> None:
    assert code_form(s3_uri("s3://bucket-a/code/x.tar.gz")) is CodeForm.ARCHIVE
    assert code_form(s3_uri("s3://bucket-a/code/x.tgz")) is CodeForm.ARCHIVE
    assert code_form(s3_uri("s3://bucket-a/code/")) is CodeForm.PREFIX
    assert code_form(s3_uri("s3://bucket-a")) is CodeForm.PREFIX
    with pytest.raises(ValidationError, match=r"neither a \.tar\.gz object nor a prefix"):
        code_form(s3_uri("s3://bucket-a/code/x.zip"))


def test_entry_is_normalised_and_may_not_leave_the_code_directory() -> None:
    assert TrainingRequest(JOB, CODE, entry="./src//train.py").entry == "src/train.py"
    for bad in ("../train.py", "/etc/passwd", "src/../../x.py", ""):
        with pytest.raises(ValidationError):
            TrainingRequest(JOB, CODE, entry=bad)
    with pytest.raises(ValidationError):
        TrainingRequest(JOB, CODE, requirements="../requirements.txt")


@pytest.mark.parametrize(
    "env",
    [
        (("lower", "x"),),
        (("RUNCTL_JOB_ID", "x"),),
        (("LD_PRELOAD", "/tmp/x.so"),),
        (("PATH", "/tmp"),),
        (("A", "x"), ("A", "y")),
        (("A", "nul\x00"),),
        (("A=B", "x"),),
    ],
)
def test_env_is_validated_again(env: tuple[tuple[str, str], ...]) -> None:
    with pytest.raises(ValidationError):
        TrainingRequest(JOB, CODE, env=env)


def test_other_fields_are_validated_again() -> None:
    with pytest.raises(ValidationError):
        TrainingRequest("JOB-0123456789AB", CODE)
    with pytest.raises(ValidationError):
        TrainingRequest("job-1; id", CODE)
    with pytest.raises(ValidationError):
        TrainingRequest(JOB, s3_uri("s3://bucket-a/code/x.py"))
    with pytest.raises(ValidationError):
        TrainingRequest(JOB, CODE, script_args=("nul\x00",))
    with pytest.raises(ValidationError):
        TrainingRequest(JOB, CODE, script_args=("x",) * 201)
    with pytest.raises(ValidationError, match="surrogate"):
        TrainingRequest(JOB, CODE, script_args=("\ud800",))
    with pytest.raises(ValidationError, match="surrogate"):
        TrainingRequest(JOB, CODE, env=(("A", "\udfff"),))
    for python in ("python3 -c 1", "-python", "py$(id)", ""):
        with pytest.raises(ValidationError):
            TrainingRequest(JOB, CODE, python=python)
    assert (
        TrainingRequest(JOB, CODE, python="/opt/conda/bin/python3.11").python == "/opt/conda/bin/python3.11"
    )
    for seconds in (-1, 86_401):
        with pytest.raises(ValidationError):
            TrainingRequest(JOB, CODE, checkpoint_sync_seconds=seconds)
    assert TrainingRequest(JOB, CODE, checkpoint_sync_seconds=0).checkpoint_sync_seconds == 0


# --- rendering -----------------------------------------------------------------------------------------


def all_scripts() -> dict[str, str]:
    full = TrainingRequest(
        JOB,
        CODE,
        requirements="req/dev.txt",
        data_uri=s3_uri("s3://bucket-a/data/x.bin"),
        output_uri=s3_uri("s3://bucket-a/out/"),
        env=(("A", "1"),),
        script_args=("x",),
        checkpoint_uri=s3_uri("s3://bucket-a/out/checkpoints/"),
        resume_from=s3_uri("s3://bucket-a/old/step.pt"),
    )
    return {
        "launch": launch_script(full),
        "launch-minimal": launch_script(TrainingRequest(JOB, CODE)),
        "status": status_script([JOB, "job-abcdefgh"]),
        "cancel": cancel_script(JOB),
        "logs": logs_script(JOB, 50),
    }


@pytest.mark.parametrize("name", ["launch", "launch-minimal", "status", "cancel", "logs"])
def test_every_script_is_complete_bash(name: str) -> None:
    script = all_scripts()[name]
    assert script.startswith("#!/bin/bash\n")
    assert "@@" not in script
    checked = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr


def test_script_parameters_are_clamped_and_ids_checked() -> None:
    assert "lines=500\n" in logs_script(JOB, 10_000)
    assert "lines=1\n" in logs_script(JOB, -5)
    assert "grace=600\n" in cancel_script(JOB, 99_999)
    assert "grace=0\n" in cancel_script(JOB, -1)
    assert f"job_ids=({JOB})" in status_script([JOB, JOB.upper(), JOB])
    with pytest.raises(ValidationError):
        status_script(["job-1; id"])
    with pytest.raises(ValidationError):
        cancel_script("$(id)")
    with pytest.raises(ValueError, match="at least one"):
        status_script([])


def launch_head_values(request: TrainingRequest) -> tuple[list[str], list[str]]:
    """Run only the assignments at the top of the launch script and print the arrays back, NUL-separated."""
    script = launch_script(request)
    head = script[: script.index("\nrefuse() {")]
    probe = head + '\nprintf "%s\\0" "${#script_args[@]}" "${script_args[@]}" "${job_env[@]}"\n'
    done = subprocess.run(["bash", "-c", probe], capture_output=True, check=True)
    items = [item.decode() for item in done.stdout.split(b"\x00")[:-1]]
    count = int(items[0])
    return items[1 : 1 + count], items[1 + count :]


TEXT = st.text(alphabet=st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=20)


@settings(max_examples=60, deadline=None)
@given(
    args=st.lists(TEXT, min_size=1, max_size=5),
    value=TEXT,
)
def test_any_text_survives_the_quoting_unchanged(args: list[str], value: str) -> None:
    request = TrainingRequest(JOB, CODE, script_args=tuple(args), env=(("VALUE", value),))
    assert launch_head_values(request) == (args, [f"VALUE={value}"])


# --- parsing -------------------------------------------------------------------------------------------


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def status_line(**overrides: str) -> str:
    fields = {
        "job": JOB,
        "state": "exited",
        "alive": "0",
        "pid": "42",
        "exit_code": "0",
        "phase": "done",
        "started_at": "2026-01-02T03:04:05Z",
        "finished_at": "2026-01-02T04:04:05Z",
        "cancelled": "0",
        "restarted": "0",
        "sync_error": "",
        "error": "",
        "log": b64("a\nb\n"),
    }
    fields.update(overrides)
    return "RUNCTL_JOB " + " ".join(f"{k}={v}" for k, v in fields.items()) + " end=1"


def test_parse_status_reads_a_full_line() -> None:
    seen = parse_status(status_line(sync_error=b64("uploading failed; "), error=b64("boom\n")))[JOB]
    assert seen == JobObservation(
        job_id=JOB,
        state=JobState.EXITED,
        alive=False,
        pid=42,
        exit_code=0,
        phase="done",
        started_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        finished_at=datetime(2026, 1, 2, 4, 4, 5, tzinfo=UTC),
        sync_error="uploading failed;",
        error="boom",
        log_tail="a\nb\n",
    )
    assert seen.duration(datetime(2030, 1, 1, tzinfo=UTC)) == timedelta(hours=1)


def test_parse_status_skips_anything_not_whole_and_well_formed() -> None:
    good = status_line()
    other = "job-abcdefgh1234"
    stdout = "\n".join(
        [
            "some noise from a profile script",
            good[:-6],  # cut short by SSM's output limit
            status_line(job=other, log="not*base64"),
            status_line(job="job-1;id"),
            status_line(state="zombie"),
            good.replace(" phase=done", ""),
            good.replace(" phase=done", " phase=done phase=done"),
            good.replace("RUNCTL_JOB ", "RUNCTL_JOBS "),
        ]
    )
    assert parse_status(stdout) == {}
    assert set(parse_status(stdout + "\n" + good)) == {JOB}


def test_parse_status_keeps_the_last_line_for_a_job_and_tolerates_odd_values() -> None:
    stdout = status_line(exit_code="1") + "\n" + status_line(exit_code="99999999999", started_at="never")
    seen = parse_status(stdout)[JOB]
    assert (seen.exit_code, seen.started_at) == (None, None)
    assert seen.duration(datetime(2030, 1, 1, tzinfo=UTC)) is None


def observation(**fields: object) -> JobObservation:
    return JobObservation(**{"job_id": JOB, "state": JobState.EXITED, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "outcome", "words"),
    [
        ({"state": JobState.RUNNING, "alive": True, "phase": "setup"}, JobOutcome.RUNNING, "setting up"),
        ({"state": JobState.RUNNING, "alive": True, "phase": "syncing"}, JobOutcome.RUNNING, "uploading"),
        ({"state": JobState.RUNNING, "phase": "starting"}, JobOutcome.RUNNING, "starting"),
        ({"exit_code": 0}, JobOutcome.SUCCEEDED, "finished with exit code 0"),
        ({"exit_code": 0, "alive": True}, JobOutcome.SUCCEEDED, "finished with exit code 0"),
        ({"exit_code": 3}, JobOutcome.FAILED, "failed with exit code 3"),
        ({"exit_code": 137}, JobOutcome.FAILED, "failed with exit code 137"),
        ({}, JobOutcome.FAILED, "the process is gone without an exit code"),
        ({"restarted": True}, JobOutcome.FAILED, "(the machine restarted)"),
        ({"exit_code": 143, "cancelled": True}, JobOutcome.CANCELLED, "cancelled (exit code 143)"),
        ({"exit_code": 0, "cancelled": True}, JobOutcome.CANCELLED, "cancelled (exit code 0)"),
        ({"cancelled": True}, JobOutcome.CANCELLED, "cancelled"),
        ({"state": JobState.RUNNING, "alive": True, "cancelled": True}, JobOutcome.RUNNING, "running"),
        ({"state": JobState.MISSING}, JobOutcome.LOST, "no record of this job"),
        (
            {"exit_code": 2, "error": "the entry script x.py is not in the code"},
            JobOutcome.FAILED,
            ": the entry",
        ),
        (
            {"exit_code": 0, "sync_error": "uploading x failed; "},
            JobOutcome.SUCCEEDED,
            "0; uploading x failed",
        ),
    ],
)
def test_classify_and_explain(fields: dict[str, object], outcome: JobOutcome, words: str) -> None:
    seen = observation(**fields)
    assert classify(seen) is outcome
    assert words in explain(seen)


def test_only_exit_code_0_is_success() -> None:
    for code in range(256):
        expected = JobOutcome.SUCCEEDED if code == 0 else JobOutcome.FAILED
        assert classify(observation(exit_code=code)) is expected


def test_parse_launch_cancel_and_logs() -> None:
    assert parse_launch(f"noise\nRUNCTL_JOB_STARTED job={JOB} pid=123\n") == LaunchReport(JOB, True, pid=123)
    assert parse_launch(f"RUNCTL_JOB_REFUSED job={JOB} reason=already-running") == LaunchReport(
        JOB, False, reason="already-running"
    )
    assert parse_launch("") is None
    assert parse_launch("RUNCTL_JOB_STARTED job=x pid=abc") is None
    assert parse_cancel(f"RUNCTL_CANCEL job={JOB} result=killed\n") is CancelResult.KILLED
    assert parse_cancel(f"RUNCTL_CANCEL job={JOB} result=exploded\n") is None
    assert parse_cancel("") is None
    data = b64("x\ny\n")
    assert parse_logs(f"RUNCTL_LOG job={JOB} found=1 size=10 data={data} end=1\n") == LogTail(
        JOB, True, "x\ny\n", 10
    )
    assert parse_logs(f"RUNCTL_LOG job={JOB} found=1 size=10 data={data[:-2]}") is None
    assert parse_logs(f"RUNCTL_LOG job={JOB} found=0 size= data= end=1") == LogTail(JOB, False, "", None)


# --- Slack ---------------------------------------------------------------------------------------------


def test_a_short_log_is_shown_whole_and_escaped() -> None:
    text = "step 1 <@U123> & done\r\nuse ```code```\n\n"
    assert slack_log_block(text) == "```\nstep 1 &lt;@U123&gt; &amp; done\nuse ``\u200b`code``\u200b`\n```"
    assert slack_log_block("") == "_The log is empty._"
    assert slack_log_block("\n\n") == "_The log is empty._"


def test_a_long_log_keeps_its_end_and_says_what_was_cut() -> None:
    lines = [f"line {n:04d} " + "x" * 40 for n in range(1000)]
    block = slack_log_block("\n".join(lines), limit=500)
    assert len(block) <= 500
    note, body = block.split("\n", 1)
    shown = body.removeprefix("```\n").removesuffix("\n```").split("\n")
    assert shown == lines[-len(shown) :]
    cut = 1000 - len(shown)
    cut_chars = len("\n".join(lines)) - len("\n".join(shown))
    assert note == f"… {cut} earlier lines ({cut_chars} characters) not shown"


def test_one_huge_line_is_cut_inside_the_line() -> None:
    block = slack_log_block("a" * 10_000 + "<END>", limit=300)
    assert len(block) <= 300
    assert block.endswith("&lt;END&gt;\n```")
    assert block.startswith("… 0 earlier lines (")


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from("ab<>&`\n\r é"), max_size=3000),
    limit=st.integers(min_value=120, max_value=3000),
)
def test_the_block_never_exceeds_the_limit_and_shows_an_end_of_the_text(text: str, limit: int) -> None:
    block = slack_log_block(text, limit=limit)
    assert len(block) <= limit
    if block == "_The log is empty._":
        assert text.replace("\r\n", "\n").strip("\n") == ""
        return
    body = block[block.index("```\n") + 4 : -4]
    raw = body.replace("\u200b", "").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    normalised = text.replace("\r\n", "\n").rstrip("\n")
    assert normalised.endswith(raw)
    assert ("earlier line" in block) == (raw != normalised)
