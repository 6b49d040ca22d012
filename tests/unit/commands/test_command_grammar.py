"""`/runctl` text in, a Command or a ParseError out: every verb, right and wrong."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from bot.core.commands import (
    KEEP_MAX,
    VERBS,
    CancelCommand,
    CheckpointsCommand,
    CleanupPlanCommand,
    CleanupRunCommand,
    Command,
    ConfigCommand,
    CostCommand,
    CreateCommand,
    Frequency,
    HelpCommand,
    JobsCommand,
    KeepCommand,
    ListCommand,
    LogsCommand,
    ParseError,
    Period,
    ProtectCommand,
    ReportCommand,
    ResumeCommand,
    Role,
    StartCommand,
    StateFilter,
    StatusCommand,
    StopCommand,
    SubscribeCommand,
    TerminateCommand,
    TrainCommand,
    UnprotectCommand,
    UnsubscribeCommand,
    parse,
)
from bot.core.validation import S3Uri, Weekday

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
I1 = "i-0123456789abcdef0"
I2 = "i-0fedcba9876543210"
I3 = "i-89abcdef"
JOB = "job-3f9a1c2b7d4e"


def ok(text: str, now: datetime | None = NOW) -> Command:
    result = parse(text, now)
    assert not isinstance(result, ParseError), result.render()
    return result


def fails(text: str, now: datetime | None = NOW) -> ParseError:
    result = parse(text, now)
    assert isinstance(result, ParseError), f"{text!r} parsed as {result!r}"
    return result


HAPPY: list[tuple[str, Command]] = [
    # help
    ("", HelpCommand()),
    ("   ", HelpCommand()),
    ("help", HelpCommand()),
    ("help stop", HelpCommand(topic="stop")),
    ("help ls", HelpCommand(topic="list")),
    ("help cleanup", HelpCommand(topic="cleanup")),
    ("help cleanup run", HelpCommand(topic="cleanup run")),
    ("HELP Train", HelpCommand(topic="train")),
    ("?", HelpCommand()),
    ("stop --help", HelpCommand(topic="stop")),
    ("create g5.xlarge -h", HelpCommand(topic="create")),
    ("cleanup --help", HelpCommand(topic="cleanup")),
    # create
    ("create g5.xlarge", CreateCommand(instance_type="g5.xlarge")),
    (
        "create g5.xlarge --spot --project llama",
        CreateCommand(instance_type="g5.xlarge", spot=True, project="llama"),
    ),
    (
        "create P4D.24XLARGE --spot --max-price $12.50 --no-fallback --ami ami-0123456789abcdef0 --disk 200",
        CreateCommand(
            instance_type="p4d.24xlarge",
            spot=True,
            max_price=Decimal("12.50"),
            fallback_to_on_demand=False,
            ami="ami-0123456789abcdef0",
            disk_gb=200,
        ),
    ),
    ("new t3.micro --project=exp.1", CreateCommand(instance_type="t3.micro", project="exp.1")),
    ("launch m7i-flex.large --disk=8", CreateCommand(instance_type="m7i-flex.large", disk_gb=8)),
    # list
    ("list", ListCommand()),
    ("ls --all", ListCommand(all_users=True)),
    ("list -a --state running", ListCommand(all_users=True, state=StateFilter.RUNNING)),
    ("list --state=STOPPED --project llama", ListCommand(state=StateFilter.STOPPED, project="llama")),
    ("list --user <@U0123ABCD|alice>", ListCommand(user="U0123ABCD")),
    ("list --user U0123ABCD --project p", ListCommand(user="U0123ABCD", project="p")),
    # status
    (f"status {I1}", StatusCommand(instance_id=I1)),
    (f"describe {I3.upper()}", StatusCommand(instance_id=I3)),
    # start / stop / terminate
    (f"start {I1}", StartCommand(instance_ids=(I1,))),
    (f"start {I1} {I2} {I1}", StartCommand(instance_ids=(I1, I2))),
    (f"stop {I1}", StopCommand(instance_ids=(I1,))),
    (
        f'stop {I1} {I2} --force --reason "done for today"',
        StopCommand(instance_ids=(I1, I2), force=True, reason="done for today"),
    ),
    (f"pause {I1} -f", StopCommand(instance_ids=(I1,), force=True)),
    (f"stop --reason='it is idle' {I1}", StopCommand(instance_ids=(I1,), reason="it is idle")),
    (f"terminate {I1}", TerminateCommand(instance_ids=(I1,))),
    (
        f"rm {I1} --reason 'experiment finished' --force",
        TerminateCommand(instance_ids=(I1,), force=True, reason="experiment finished"),
    ),
    # protect / unprotect
    (f"protect {I1} {I3}", ProtectCommand(instance_ids=(I1, I3))),
    (f"protect {I1} --reason 'long eval'", ProtectCommand(instance_ids=(I1,), reason="long eval")),
    (f"unprotect {I1}", UnprotectCommand(instance_ids=(I1,))),
    # keep
    (f"keep {I1} 4h", KeepCommand(instance_id=I1, duration=timedelta(hours=4))),
    (f"keep {I1} +1h30m", KeepCommand(instance_id=I1, duration=timedelta(hours=1, minutes=30))),
    (f"keep {I1} 2d", KeepCommand(instance_id=I1, duration=timedelta(days=2))),
    (f"keep {I1} 2026-12-01", KeepCommand(instance_id=I1, until=datetime(2026, 12, 1, tzinfo=UTC))),
    (
        f"keep {I1} 2026-07-01T18:00+02:00",
        KeepCommand(instance_id=I1, until=datetime(2026, 7, 1, 16, 0, tzinfo=UTC)),
    ),
    (f"keep {I1} never", KeepCommand(instance_id=I1, forever=True)),
    (f"keep {I1} NEVER", KeepCommand(instance_id=I1, forever=True)),
    # cost
    ("cost", CostCommand()),
    ("cost --all --period week", CostCommand(all_users=True, period=Period.WEEK)),
    ("cost --user <@U0123ABCD>", CostCommand(user="U0123ABCD")),
    ("cost --project llama --period today", CostCommand(project="llama", period=Period.TODAY)),
    # cleanup
    ("cleanup plan", CleanupPlanCommand()),
    (
        "cleanup plan --window 2h --min-age 3h --cpu-threshold 2.5",
        CleanupPlanCommand(window=timedelta(hours=2), min_age=timedelta(hours=3), cpu_threshold=2.5),
    ),
    ("cleanup plan --cpu-threshold 10%", CleanupPlanCommand(cpu_threshold=10.0)),
    ("Cleanup PLAN --window=30m", CleanupPlanCommand(window=timedelta(minutes=30))),
    ("cleanup run", CleanupRunCommand()),
    ("cleanup run --yes", CleanupRunCommand(yes=True)),
    ("cleanup run -y", CleanupRunCommand(yes=True)),
    # config / report
    ("config", ConfigCommand()),
    ("report", ReportCommand()),
    # subscribe / unsubscribe
    ("subscribe daily 09:00", SubscribeCommand(frequency=Frequency.DAILY, at=time(9, 0))),
    (
        "subscribe <#C0123ABCD|ml-team> daily 9:30 Europe/London",
        SubscribeCommand(
            frequency=Frequency.DAILY, at=time(9, 30), channel="C0123ABCD", timezone=ZoneInfo("Europe/London")
        ),
    ),
    (
        "subscribe weekly mon 09:00",
        SubscribeCommand(frequency=Frequency.WEEKLY, at=time(9, 0), weekday=Weekday.MON),
    ),
    (
        "sub C0123ABCD weekly Friday 17:45 america/new_york",
        SubscribeCommand(
            frequency=Frequency.WEEKLY,
            at=time(17, 45),
            channel="C0123ABCD",
            weekday=Weekday.FRI,
            timezone=ZoneInfo("America/New_York"),
        ),
    ),
    ("unsubscribe", UnsubscribeCommand()),
    ("unsubscribe weekly", UnsubscribeCommand(frequency=Frequency.WEEKLY)),
    (
        "unsubscribe <#C0123ABCD|ml-team> daily",
        UnsubscribeCommand(channel="C0123ABCD", frequency=Frequency.DAILY),
    ),
    ("unsub <#C0123ABCD>", UnsubscribeCommand(channel="C0123ABCD")),
    # train
    (
        f"train {I1} s3://ml-code/llama/v3.tar.gz",
        TrainCommand(instance_id=I1, code=S3Uri("ml-code", "llama/v3.tar.gz")),
    ),
    (
        f"train {I1} s3://ml-code/llama/ --entry src/train.py --requirements reqs/gpu.txt"
        " --data s3://ml-data/c4/ --output s3://ml-out/llama/ --env EPOCHS=3 --env WANDB_MODE=offline"
        " --auto-resume -- --epochs 3 --lr 3e-4",
        TrainCommand(
            instance_id=I1,
            code=S3Uri("ml-code", "llama/"),
            entry="src/train.py",
            requirements="reqs/gpu.txt",
            data=S3Uri("ml-data", "c4/"),
            output=S3Uri("ml-out", "llama/"),
            env=(("EPOCHS", "3"), ("WANDB_MODE", "offline")),
            auto_resume=True,
            script_args=("--epochs", "3", "--lr", "3e-4"),
        ),
    ),
    (
        f"train {I1} s3://ml-code/c.tar.gz --",
        TrainCommand(instance_id=I1, code=S3Uri("ml-code", "c.tar.gz")),
    ),
    # logs / jobs / cancel / checkpoints / resume
    (f"logs {JOB}", LogsCommand(job_id=JOB)),
    (f"logs {I1} --lines 500", LogsCommand(instance_id=I1, lines=500)),
    (f"log {JOB.upper()} -n 1", LogsCommand(job_id=JOB, lines=1)),
    ("jobs", JobsCommand()),
    ("jobs --all", JobsCommand(all_users=True)),
    (f"cancel {JOB}", CancelCommand(job_id=JOB)),
    (f"checkpoints {JOB}", CheckpointsCommand(job_id=JOB)),
    ("ckpt s3://ml-out/llama/checkpoints/", CheckpointsCommand(prefix=S3Uri("ml-out", "llama/checkpoints/"))),
    (f"resume {JOB}", ResumeCommand(job_id=JOB)),
    (f"resume {JOB} --on {I2}", ResumeCommand(job_id=JOB, on_instance=I2)),
    (f"resume {JOB} --spot g5.xlarge", ResumeCommand(job_id=JOB, spot_type="g5.xlarge")),
]


@pytest.mark.parametrize(("text", "expected"), HAPPY, ids=[text or "<empty>" for text, _ in HAPPY])
def test_parses(text: str, expected: Command) -> None:
    assert ok(text) == expected


def test_every_verb_has_a_happy_case() -> None:
    covered = {expected.verb for _, expected in HAPPY}
    assert covered == set(VERBS)


BAD: list[tuple[str, str | None, str]] = [
    # (text, verb of the error, fragment of the message)
    ("lst", None, "Did you mean `list`?"),
    ("terminat i-0123abcd", None, "Did you mean `terminate`?"),
    ("frobnicate", None, "`/runctl help` lists them all"),
    ("help frobnicate", "help", "is not a `/runctl` command"),
    ("help stop now", "help", "Unexpected `now`"),
    ("help cleanup later", "help", "not part of `cleanup`"),
    # create
    ("create", "create", "Missing `instance-type`"),
    (
        "create g5.xlarg",
        "create",
        "`g5.xlarg` is not an EC2 instance type (expected family.size, e.g. g5.xlarge).",
    ),
    ("create g5", "create", "not an EC2 instance type"),
    ("create g5..xlarge", "create", "not an EC2 instance type"),
    ("create g5.xlarge g5.2xlarge", "create", "Unexpected `g5.2xlarge`"),
    ("create g5.xlarge --spto", "create", "Did you mean `--spot`?"),
    ("create g5.xlarge --spot --spot", "create", "`--spot` is given twice"),
    ("create g5.xlarge --project a --project b", "create", "`--project` is given twice"),
    ("create g5.xlarge --project", "create", "`--project` needs a value"),
    ("create g5.xlarge --project --spot", "create", "`--project` needs a value"),
    ("create g5.xlarge --project 'my project'", "create", "not a valid project name"),
    ("create g5.xlarge --max-price 1", "create", "add `--spot`"),
    ("create g5.xlarge --no-fallback", "create", "add `--spot`"),
    ("create g5.xlarge --spot --max-price -1", "create", "not an amount of money"),
    ("create g5.xlarge --spot --max-price 5000", "create", "limit of $1000"),
    ("create g5.xlarge --disk 4", "create", "out of range"),
    ("create g5.xlarge --disk big", "create", "not a whole number"),
    ("create g5.xlarge --ami ubuntu", "create", "not an AMI id"),
    ("create g5.xlarge --spot=yes", "create", "`--spot` takes no value"),
    ("create g5.xlarge --count 3", "create", "is not a flag of `create`"),
    ("create g5.xlarge -- --x", "create", "only `train` takes"),
    # list
    ("list --all --user U0123ABCD", "list", "can't be used together"),
    ("list --state terminated", "list", "expected running, stopped, all"),
    ("list --user @alice", "list", "not a Slack user"),
    ("list mine", "list", "takes no arguments"),
    ("list --sate running", "list", "Did you mean `--state`?"),
    # status / start / stop / terminate / protect / unprotect
    ("status", "status", "Missing `instance-id`"),
    ("status i-123", "status", "not an EC2 instance id"),
    (f"status {I1} {I2}", "status", "Unexpected"),
    ("start", "start", "Missing `instance-id`"),
    (f"start {I1} nope", "start", "`nope` is not an EC2 instance id"),
    (f"start {I1} --force", "start", "`start` takes no flags"),
    ("start " + " ".join(f"i-{n:08x}" for n in range(21)), "start", "at most 20"),
    ("stop", "stop", "Missing `instance-id`"),
    (f"stop {I1} --reason", "stop", "`--reason` needs a value"),
    (f"stop {I1} --reason ''", "stop", "is empty"),
    (f"stop {I1} --reason a --reason b", "stop", "given twice"),
    (f"stop {I1} --forse", "stop", "Did you mean `--force`?"),
    (f"stop {I1} --reason '{'x' * 501}'", "stop", "longer than 500"),
    (f"terminate {I1} -f -f", "terminate", "given twice"),
    ("terminate", "terminate", "Missing"),
    (f"protect {I1} --force", "protect", "is not a flag of `protect`"),
    (f"unprotect {I1} --reason x", "unprotect", "is not a flag of `unprotect`"),
    # keep
    ("keep", "keep", "Missing `instance-id`"),
    (f"keep {I1}", "keep", "Missing `duration|date|never`"),
    (f"keep {I1} tomorrow", "keep", "is not a duration or a date"),
    (f"keep {I1} 0h", "keep", "more than zero"),
    (f"keep {I1} 4y", "keep", "months or years"),
    (f"keep {I1} 400d", "keep", "longer than the limit of 366d"),
    (f"keep {I1} 2026-05-01", "keep", "in the past"),
    (f"keep {I1} 2028-01-01", "keep", "more than 366d away"),
    (f"keep {I1} 2026-02-30", "keep", "not a real date"),
    (f"keep {I1} 4h extra", "keep", "Unexpected `extra`"),
    # cost
    ("cost --all --project p", "cost", "can't be used together"),
    ("cost --user U0123ABCD --project p", "cost", "can't be used together"),
    ("cost --period year", "cost", "expected today, week, month"),
    # cleanup
    ("cleanup", "cleanup", "Say which"),
    ("cleanup plna", "cleanup", "Did you mean `cleanup plan`?"),
    ("cleanup plan --window 5m", "cleanup plan", "shorter than the minimum of 10m"),
    ("cleanup plan --window 2d", "cleanup plan", "longer than the limit of 1d"),
    ("cleanup plan --cpu-threshold 0", "cleanup plan", "not a percentage"),
    ("cleanup plan --cpu-threshold 101", "cleanup plan", "not a percentage"),
    ("cleanup plan --yes", "cleanup plan", "is not a flag of `cleanup plan`"),
    ("cleanup run --window 1h", "cleanup run", "is not a flag of `cleanup run`"),
    ("cleanup run now", "cleanup run", "takes no arguments"),
    # config / report
    ("config set x", "config", "takes no arguments"),
    ("report --all", "report", "is not a flag of `report`"),
    # subscribe / unsubscribe
    ("subscribe", "subscribe", "daily` or `weekly"),
    ("subscribe hourly 09:00", "subscribe", "expected daily, weekly"),
    ("subscribe daily", "subscribe", "a time like `09:00`"),
    ("subscribe daily 25:00", "subscribe", "HH:MM"),
    ("subscribe weekly 09:00", "subscribe", "day of the week"),
    ("subscribe weekly", "subscribe", "needs a day and a time"),
    ("subscribe daily 09:00 Mars/Base", "subscribe", "not a time zone"),
    ("subscribe daily 09:00 UTC extra", "subscribe", "Unexpected `extra`"),
    ("subscribe #ml-team daily 09:00", "subscribe", "channel name, not a link"),
    ("unsubscribe monthly", "unsubscribe", "expected daily, weekly"),
    ("unsubscribe daily weekly", "unsubscribe", "Unexpected `weekly`"),
    # train
    ("train", "train", "Missing `instance-id`"),
    (f"train {I1}", "train", "Missing `code-s3-uri`"),
    (f"train {I1} code.tar.gz", "train", "not an S3 URI"),
    (f"train {I1} s3://Bad_Bucket/c.tar.gz", "train", "bad bucket name"),
    (f"train {I1} s3://b/c.tar.gz", "train", "3-63 characters"),
    (f"train {I1} s3://ml-code/c.tar.gz --entry ../x.py", "train", ".. component"),
    (f"train {I1} s3://ml-code/c.tar.gz --entry /etc/x.py", "train", "relative"),
    (f"train {I1} s3://ml-code/c.tar.gz --requirements ~/r.txt", "train", "relative"),
    (f"train {I1} s3://ml-code/c.tar.gz --data /data", "train", "not an S3 URI"),
    (f"train {I1} s3://ml-code/c.tar.gz --output s3://xn--out/", "train", "xn--"),
    (f"train {I1} s3://ml-code/c.tar.gz --env lower=1", "train", "invalid variable name"),
    (f"train {I1} s3://ml-code/c.tar.gz --env RUNCTL_JOB_ID=x", "train", "RUNCTL_"),
    (f"train {I1} s3://ml-code/c.tar.gz --env LD_PRELOAD=/x.so", "train", "does not allow"),
    (f"train {I1} s3://ml-code/c.tar.gz --env A=1 --env A=2", "train", "`--env A` is given twice"),
    (f"train {I1} s3://ml-code/c.tar.gz --entry a.py --entry b.py", "train", "given twice"),
    (f"train {I1} s3://ml-code/c.tar.gz --epochs 3", "train", "is not a flag of `train`"),
    (f"train {I1} s3://ml-code/c.tar.gz --auto-resum", "train", "Did you mean `--auto-resume`?"),
    (f"train {I1} s3://ml-code/c.tar.gz extra", "train", "Unexpected `extra`"),
    # logs / jobs / cancel / checkpoints / resume
    ("logs", "logs", "Missing"),
    ("logs train-1", "logs", "neither a job id nor an instance id"),
    (f"logs {JOB} --lines 0", "logs", "expected 1-500"),
    (f"logs {JOB} --lines 501", "logs", "expected 1-500"),
    (f"logs {JOB} -n", "logs", "needs a value"),
    ("jobs mine", "jobs", "takes no arguments"),
    ("jobs --mine", "jobs", "is not a flag of `jobs`"),
    ("cancel", "cancel", "Missing `job-id`"),
    (f"cancel {I1}", "cancel", "not a job id"),
    ("checkpoints", "checkpoints", "Missing"),
    ("checkpoints ./ckpt", "checkpoints", "neither a job id nor an S3 prefix"),
    ("checkpoints s3://UPPER/x", "checkpoints", "bad bucket name"),
    ("resume", "resume", "Missing `job-id`"),
    (f"resume {JOB} --on {I1} --spot g5.xlarge", "resume", "can't be used together"),
    (f"resume {JOB} --spot g5", "resume", "not an EC2 instance type"),
    (f"resume {JOB} --on g5.xlarge", "resume", "not an EC2 instance id"),
    # tokenising
    ("stop 'unclosed", "stop", "A quote is not closed"),
    ('stop i-0123abcd --reason "unclosed', "stop", "A quote is not closed"),
    ("stop i-0123abcd \\", "stop", "lone backslash"),
    ('"unclosed', None, "A quote is not closed"),
]


@pytest.mark.parametrize(("text", "verb", "fragment"), BAD, ids=[text[:60] for text, _, _ in BAD])
def test_rejects(text: str, verb: str | None, fragment: str) -> None:
    error = fails(text)
    assert error.verb == verb
    assert fragment in error.message
    rendered = error.render()
    assert "Usage: `/runctl" in rendered and "Example: `/runctl" in rendered


def test_every_verb_has_a_bad_case() -> None:
    assert {verb for _, verb, _ in BAD} >= set(VERBS)


def test_render_shape_matches_the_brief() -> None:
    error = fails("create g5.xlarg")
    lines = error.render().split("\n")
    assert lines[0] == "`g5.xlarg` is not an EC2 instance type (expected family.size, e.g. g5.xlarge)."
    assert lines[1].startswith("Usage: `/runctl create &lt;instance-type&gt; [--spot] [--max-price")
    assert lines[2] == "Example: `/runctl create g5.xlarge --spot --project llama`"
    assert error.usage.startswith("/runctl create <instance-type> [--spot]")


def test_unknown_verb_error_points_at_help() -> None:
    error = fails("lsit --all")
    assert error.verb is None
    assert error.example == "/runctl help"
    assert "Did you mean `list`?" in error.message


def test_rendered_errors_escape_user_input() -> None:
    error = fails("status <@U0123ABCD|alice>")
    assert "<@" not in error.render()
    assert "&lt;@U0123ABCD&gt;" in error.message


# --- quoting and Slack's encoding --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f'stop {I1} --reason "long text with  two spaces"', "long text with  two spaces"),
        (f"stop {I1} --reason 'single quoted'", "single quoted"),
        (f'stop {I1} --reason "it\'s fine"', "it's fine"),
        (f"stop {I1} --reason it\\'s", "it's"),
        (f'stop {I1} --reason "say \\"hi\\""', 'say "hi"'),
        (f"stop {I1} --reason \u201clong text\u201d", "long text"),
        (f"stop {I1} --reason don\u2019t", "don\u2019t"),
        (f"stop {I1} --reason 'a &amp;&amp; b &lt;c&gt;'", "a && b <c>"),
        (f"stop {I1} --reason '# not a comment'", "# not a comment"),
        (f"stop {I1} --reason=--leading-dashes", "--leading-dashes"),
        (f"stop {I1} --reason 'ask <@U0123ABCD|bob>'", "ask <@U0123ABCD>"),
        (f"stop {I1} --reason 'see <https://wiki.example.com/x>'", "see https://wiki.example.com/x"),
    ],
)
def test_quoting(text: str, reason: str) -> None:
    command = ok(text)
    assert isinstance(command, StopCommand)
    assert command.reason == reason


def test_slack_autolinked_file_names_become_plain_text() -> None:
    command = ok(f"train {I1} s3://ml-code/c.tar.gz --entry <http://train.py|train.py>")
    assert isinstance(command, TrainCommand)
    assert command.entry == "train.py"


def test_mention_labels_with_spaces_and_quotes_do_not_split_words() -> None:
    command = ok("list --user <@U0123ABCD|o'brien smith>")
    assert command == ListCommand(user="U0123ABCD")


def test_non_breaking_spaces_separate_words() -> None:
    assert ok(f"status\u00a0{I1}") == StatusCommand(instance_id=I1)


# --- script arguments are data ------------------------------------------------------------------------------

NASTY_ARGS = [
    "; rm -rf / #",
    "$(id)",
    "`id`",
    "$HOME",
    "${PATH}",
    "'single'",
    '"double"',
    "it's",
    "line1\nline2",
    "tab\there",
    "",
    " leading and trailing ",
    "--",
    "--help",
    "-h",
    "&& reboot",
    "| nc evil 1",
    "> /etc/passwd",
    "*",
    "~",
    "\\",
    "ünïcode ✓",
]


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_script_args_reach_the_command_verbatim() -> None:
    typed = f"train {I1} s3://ml-code/c.tar.gz --env X=1 -- " + shlex.join(NASTY_ARGS)
    command = ok(_slack_escape(typed))
    assert isinstance(command, TrainCommand)
    assert command.script_args == tuple(NASTY_ARGS)
    assert command.env == (("X", "1"),)


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        ("-- '; rm -rf / #'", ("; rm -rf / #",)),
        ("-- ; rm -rf / #", (";", "rm", "-rf", "/", "#")),
        ('-- "$(id)" `whoami`', ("$(id)", "`whoami`")),
        ("-- --lr 3e-4 --name 'run 1'", ("--lr", "3e-4", "--name", "run 1")),
        ("-- 'multi\nline'", ("multi\nline",)),
        ("-- --entry evil.py", ("--entry", "evil.py")),
    ],
)
def test_script_args_examples(tail: str, expected: tuple[str, ...]) -> None:
    command = ok(f"train {I1} s3://ml-code/c.tar.gz {tail}")
    assert isinstance(command, TrainCommand)
    assert command.script_args == expected
    assert command.entry == "train.py"


def test_script_args_are_capped() -> None:
    error = fails(f"train {I1} s3://ml-code/c.tar.gz -- " + "a " * 201)
    assert "at most 200" in error.message


# --- roles and metadata -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "role", "mutating"),
    [
        ("list", Role.USER, False),
        ("create g5.xlarge", Role.USER, True),
        (f"terminate {I1}", Role.USER, True),
        (f"terminate {I1} --force", Role.ADMIN, True),
        (f"keep {I1} 4h", Role.USER, True),
        (f"keep {I1} never", Role.ADMIN, True),
        ("cleanup plan", Role.USER, False),
        ("cleanup run", Role.ADMIN, True),
        ("subscribe daily 09:00", Role.ADMIN, True),
        ("unsubscribe", Role.ADMIN, True),
        (f"logs {JOB}", Role.USER, False),
        (f"cancel {JOB}", Role.USER, True),
    ],
)
def test_required_role_and_mutating(text: str, role: Role, mutating: bool) -> None:
    command = ok(text)
    assert command.required_role is role
    assert command.mutating is mutating


def test_role_order() -> None:
    assert Role.ADMIN.allows(Role.USER)
    assert Role.ADMIN.allows(Role.APPROVER)
    assert Role.APPROVER.allows(Role.USER)
    assert Role.USER.allows(Role.USER)
    assert not Role.USER.allows(Role.APPROVER)
    assert not Role.APPROVER.allows(Role.ADMIN)


def test_commands_are_frozen() -> None:
    command = ok(f"stop {I1}")
    assert isinstance(command, StopCommand)
    with pytest.raises(AttributeError):
        command.force = True  # type: ignore[misc]


# --- keep and the clock -----------------------------------------------------------------------------------


def test_keep_deadline() -> None:
    later = NOW + timedelta(hours=3)
    relative = ok(f"keep {I1} 4h")
    assert isinstance(relative, KeepCommand)
    assert relative.deadline(later) == later + timedelta(hours=4)
    absolute = ok(f"keep {I1} 2026-12-01")
    assert isinstance(absolute, KeepCommand)
    assert absolute.deadline(later) == datetime(2026, 12, 1, tzinfo=UTC)
    forever = ok(f"keep {I1} never")
    assert isinstance(forever, KeepCommand)
    assert forever.deadline(later) is None


def test_keep_dates_read_in_the_given_zone() -> None:
    command = parse(f"keep {I1} 2026-07-01", NOW, tz=ZoneInfo("America/New_York"))
    assert command == KeepCommand(instance_id=I1, until=datetime(2026, 7, 1, 4, 0, tzinfo=UTC))


def test_keep_without_a_clock_checks_shape_only() -> None:
    assert parse(f"keep {I1} 2020-01-01") == KeepCommand(
        instance_id=I1, until=datetime(2020, 1, 1, tzinfo=UTC)
    )
    assert isinstance(parse(f"keep {I1} 2020-02-30"), ParseError)
    assert parse(f"keep {I1} 4h") == KeepCommand(instance_id=I1, duration=timedelta(hours=4))


def test_keep_bound() -> None:
    assert ok(f"keep {I1} {KEEP_MAX.days}d") == KeepCommand(instance_id=I1, duration=KEEP_MAX)


def test_parse_needs_an_aware_clock() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse("list", datetime(2026, 6, 1, 12, 0))
