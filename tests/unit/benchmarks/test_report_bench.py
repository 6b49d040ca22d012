"""The report benchmark's checks (Slack calls per channel, the profile split) and the work process's
start-up warm-up that its production first-report figure measures."""

from __future__ import annotations

import cProfile
import logging
import pstats
from pathlib import Path

import pytest
from sqlalchemy import Engine

from benchmarks.bench_report import (
    CALLS_PER_CHANNEL,
    check_slack_calls,
    profile_parts,
    slack_calls,
)
from bot.config import load_settings
from bot.services import warmup
from bot.services.container import BotServices
from bot.slack.client import make_web_client
from bot.slack.notifier import SlackNotifier
from bot.slack.standin import SlackStandIn
from bot.wiring import build_services
from storage.engine import make_engine
from storage.migrate import upgrade
from tests.support.harness import bot_settings
from tests.support.moto import MotoServer
from tests.support.slack import FLEET, OPS

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _notifier(
    standin: SlackStandIn, tmp_path: Path, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> SlackNotifier:
    for name, value in bot_settings(tmp_path / "bot.db", standin, aws).items():
        monkeypatch.setenv(name, value)
    return SlackNotifier(make_web_client(load_settings()))


def _post_report(notifier: SlackNotifier, channel: str) -> None:
    """What `ReportService.post` sends: one message, then the chart in its thread."""
    ref = notifier.post(channel, "Fleet report", None)
    notifier.upload(channel, "chart.png", PNG, title="Fleet cost", alt_text="chart", thread_ts=ref.ts)


def test_two_calls_name_each_channel_and_the_upload_steps_name_none(
    standin: SlackStandIn, tmp_path: Path, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    notifier = _notifier(standin, tmp_path, aws, monkeypatch)
    standin.reset()
    for channel in (FLEET.id, OPS.id):
        _post_report(notifier, channel)
    calls = slack_calls(standin)
    assert calls["per_channel"] == {FLEET.id: CALLS_PER_CHANNEL, OPS.id: CALLS_PER_CHANNEL}
    assert calls["without_channel"] == {"files.getUploadURLExternal": 2, "upload of the bytes": 2}
    assert check_slack_calls(calls, [FLEET.id, OPS.id]) == []


def test_an_extra_call_in_a_channel_misses_the_goal(
    standin: SlackStandIn, tmp_path: Path, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    notifier = _notifier(standin, tmp_path, aws, monkeypatch)
    standin.reset()
    _post_report(notifier, FLEET.id)
    notifier.post(FLEET.id, "and one more", None)
    problems = check_slack_calls(slack_calls(standin), [FLEET.id])
    assert problems == [f"{FLEET.id}: {{'chat.postMessage': 2, 'files.completeUploadExternal': 1}}"]


def test_profile_parts_split_a_real_profile() -> None:
    import botocore.session

    session = botocore.session.get_session()
    profile = cProfile.Profile()
    profile.enable()
    session.create_client("sts", region_name="us-east-1")
    profile.disable()
    parts = profile_parts(pstats.Stats(profile))
    assert set(parts) == {"imports", "botocore client creation", "SQLAlchemy statement compilation"}
    assert parts["botocore client creation"] > 0
    assert parts["SQLAlchemy statement compilation"] == 0


def _services(
    tmp_path: Path,
    standin: SlackStandIn,
    aws: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
    *,
    migrate: bool,
) -> tuple[BotServices, Engine]:
    for name, value in bot_settings(tmp_path / "bot.db", standin, aws).items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    if migrate:
        upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    return build_services(settings, engine=engine, notifier=SlackNotifier(make_web_client(settings))), engine


def test_warm_up_renders_a_chart_reads_history_and_builds_clients(
    tmp_path: Path, standin: SlackStandIn, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    services, engine = _services(tmp_path, standin, aws, monkeypatch, migrate=True)
    try:
        standin.reset()
        thread = warmup.start(services)
        thread.join(120)
        assert not thread.is_alive()
        seconds = warmup.warm_up(services)
        assert set(seconds) == {"chart", "history", "clients"}
        assert standin.calls() == []  # nothing is sent anywhere: it only loads and computes
    finally:
        services.shutdown()
        engine.dispose()


def test_a_failing_warm_up_step_is_logged_and_the_others_still_run(
    tmp_path: Path,
    standin: SlackStandIn,
    aws: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    services, engine = _services(tmp_path, standin, aws, monkeypatch, migrate=False)  # no tables
    try:
        with caplog.at_level(logging.WARNING, logger="bot.services.warmup"):
            seconds = warmup.warm_up(services)
        assert set(seconds) == {"chart", "clients"}
        assert "warm-up step history failed" in caplog.text
    finally:
        services.shutdown()
        engine.dispose()
