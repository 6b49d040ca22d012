"""`--version`, `migrate` and `check` as real processes."""

from __future__ import annotations

from pathlib import Path

from bot import __version__
from bot.slack.standin import SlackStandIn
from storage.engine import make_engine
from storage.migrate import check, current_revision, head_revision
from tests.integration.cli.conftest import base_env, moto_env, run_cli
from tests.support.moto import MotoServer


def test_version(tmp_path: Path) -> None:
    result = run_cli(["--version"], base_env(tmp_path))
    assert result.returncode == 0
    assert result.stdout.strip() == f"runctl-bot {__version__}"


def test_migrate_from_empty_then_models_match(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    result = run_cli(["migrate"], env)
    assert result.returncode == 0, result.stderr
    assert head_revision() in result.stdout
    url = env["DATABASE_URL"]
    engine = make_engine(url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
    assert check(url) == []  # what `alembic check` reports: models and migrations agree
    again = run_cli(["migrate"], env)  # idempotent
    assert again.returncode == 0, again.stderr

    back = run_cli(["migrate", "--to", "0001"], env)  # a rollback
    assert back.returncode == 0, back.stderr
    assert "migrated to 0001" in back.stdout
    forward = run_cli(["migrate"], env)
    assert forward.returncode == 0 and f"migrated to {head_revision()}" in forward.stdout
    assert run_cli(["migrate", "--to", "9999"], env).returncode == 2


def test_check_reports_every_problem_at_once(tmp_path: Path) -> None:
    result = run_cli(["check"], base_env(tmp_path))
    assert result.returncode == 2
    out = result.stdout
    assert "SLACK_BOT_TOKEN is not set" in out
    assert "SLACK_SIGNING_SECRET is not set" in out
    assert "runctl-bot migrate" in out  # unmigrated database, with the fix
    assert "AWS credentials not found" in out
    assert "RUNCTL_APPROVERS is empty" in out  # a warning, with how to fix it
    assert "problem(s) found" in out


def test_check_bad_configuration_names_the_variables(tmp_path: Path) -> None:
    env = base_env(tmp_path, {"RUNCTL_PORT": "-1", "RUNCTL_ADMINS": "bob"})
    result = run_cli(["check"], env)
    assert result.returncode == 2
    assert "RUNCTL_PORT" in result.stdout
    assert "RUNCTL_ADMINS" in result.stdout


def test_check_passes_against_slack_and_aws(tmp_path: Path, standin: SlackStandIn, aws: MotoServer) -> None:
    env = base_env(
        tmp_path,
        {
            "SLACK_BOT_TOKEN": standin.bot_token,
            "SLACK_SIGNING_SECRET": "s3cr3t-signing",
            "RUNCTL_SLACK_API_URL": standin.api_url,
            "RUNCTL_ADMINS": "U0ALICE001",
            "RUNCTL_APPROVERS": "U0CAROL003",
            "RUNCTL_USERS": "U0BOB00002",
            **moto_env(aws),
        },
    )
    assert run_cli(["migrate"], env).returncode == 0
    result = run_cli(["check"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Slack auth.test" in result.stdout
    assert "AWS sts get-caller-identity: account" in result.stdout
    assert "All checks passed." in result.stdout
    assert standin.bot_token not in result.stdout + result.stderr
    assert len(standin.calls("auth.test")) == 1


def test_check_refused_token(tmp_path: Path, standin: SlackStandIn, aws: MotoServer) -> None:
    env = base_env(
        tmp_path,
        {
            "SLACK_BOT_TOKEN": "xoxb-wrong-token",
            "SLACK_SIGNING_SECRET": "s3cr3t-signing",
            "RUNCTL_SLACK_API_URL": standin.api_url,
            **moto_env(aws),
        },
    )
    run_cli(["migrate"], env)
    result = run_cli(["check"], env)
    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN: Slack refused it (invalid_auth)" in result.stdout
    assert "xoxb-wrong-token" not in result.stdout
