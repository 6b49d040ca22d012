from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, load_settings


def test_defaults_are_safe_and_documented() -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite:///./runctl.db"
    assert settings.port == 3000
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.min_age_command == timedelta(minutes=5)
    assert settings.min_age_idle == timedelta(hours=2)
    assert settings.grace_period == timedelta(minutes=60)
    assert settings.idle_enforce is False  # dry-run first
    assert settings.admins == settings.approvers == settings.users == []
    assert settings.socket_mode is False


def test_standard_names_and_prefixed_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1-abc")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1-abc")
    monkeypatch.setenv("DATABASE_URL", "postgresql://bot:pw@db/runctl")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("RUNCTL_ADMINS", "U01ADMIN1, U01ADMIN2")
    monkeypatch.setenv("RUNCTL_APPROVERS", "U02APPROVE")
    monkeypatch.setenv("RUNCTL_IDLE_WINDOW", "90m")
    monkeypatch.setenv("RUNCTL_GRACE_PERIOD", "7200")
    monkeypatch.setenv("RUNCTL_WORK_DAYS", "Mon,Tue,wed")
    settings = load_settings()
    assert settings.slack_bot_token is not None
    assert settings.slack_bot_token.get_secret_value() == "xoxb-1-abc"
    assert settings.socket_mode is True
    assert settings.database_url == "postgresql+psycopg://bot:pw@db/runctl"
    assert settings.aws_region == "eu-west-1"
    assert settings.admins == ["U01ADMIN1", "U01ADMIN2"]
    assert settings.idle_window == timedelta(minutes=90)
    assert settings.grace_period == timedelta(hours=2)
    assert settings.work_days == ["mon", "tue", "wed"]


def test_secrets_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-secret-value")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "shhh-signing")
    settings = load_settings()
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert "xoxb-secret-value" not in shown
    assert "shhh-signing" not in shown


def test_every_bad_value_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNCTL_PORT", "99999")
    monkeypatch.setenv("RUNCTL_ADMINS", "alice,U01OK")
    monkeypatch.setenv("RUNCTL_IDLE_WINDOW", "soon")
    monkeypatch.setenv("RUNCTL_WORK_START", "8am")
    monkeypatch.setenv("RUNCTL_DEFAULT_TIMEZONE", "Mars/Olympus")
    monkeypatch.setenv("DATABASE_URL", "mysql://x")
    monkeypatch.setenv("RUNCTL_IDLE_STATISTIC", "median")
    with pytest.raises(ConfigError) as info:
        load_settings()
    problems = "\n".join(info.value.problems)
    for name in (
        "RUNCTL_PORT",
        "RUNCTL_ADMINS",
        "RUNCTL_IDLE_WINDOW",
        "RUNCTL_WORK_START",
        "RUNCTL_DEFAULT_TIMEZONE",
        "DATABASE_URL",
        "RUNCTL_IDLE_STATISTIC",
    ):
        assert name in problems, f"{name} missing from:\n{problems}"
    assert "alice" in problems
    assert len(info.value.problems) == 7


def test_bad_token_value_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNCTL_SLACK_API_URL", "ftp://nope")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "RUNCTL_SLACK_API_URL" in info.value.problems[0]


def test_toml_file_and_env_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "runctl.toml"
    path.write_text('admins = ["U0TOMLADM"]\nidle_window = "45m"\nport = 4000\n')
    monkeypatch.setenv("RUNCTL_CONFIG", str(path))
    monkeypatch.setenv("RUNCTL_PORT", "5000")
    settings = load_settings()
    assert settings.admins == ["U0TOMLADM"]
    assert settings.idle_window == timedelta(minutes=45)
    assert settings.port == 5000  # the environment wins


def test_missing_toml_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNCTL_CONFIG", "/nonexistent/runctl.toml")
    with pytest.raises(ConfigError, match="RUNCTL_CONFIG"):
        load_settings()


def test_every_option_is_documented() -> None:
    doc = (Path(__file__).parents[3] / "docs" / "configuration.md").read_text()
    from bot.config import env_name

    for field in Settings.model_fields:
        for name in re.split(r" or ", env_name(field)):
            assert f"`{name}`" in doc, f"{name} is not documented in docs/configuration.md"


def test_the_aws_read_timeout_reaches_the_provider_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.wiring import aws_config_from

    monkeypatch.setenv("RUNCTL_AWS_READ_TIMEOUT", "2m")
    assert aws_config_from(load_settings()).read_timeout_seconds == 120.0
    monkeypatch.delenv("RUNCTL_AWS_READ_TIMEOUT")
    assert aws_config_from(load_settings()).read_timeout_seconds == 30.0
