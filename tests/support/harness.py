"""The whole bot on 127.0.0.1 for end-to-end tests: moto server + Slack stand-in + the real app.

The app is built by the production composition root (`bot.wiring.build_application`) and served by the
production HTTP stack (`bot.web`); tests talk to it only through signed HTTP, the stand-in and moto.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.config import Settings, load_settings
from bot.core.clock import ShiftedClock
from bot.slack.standin import Message, SlackStandIn
from bot.slack.standin.delivery import DeliveryResponse, block_actions_request, send, slash_command_request
from bot.web import HttpServer, make_wsgi_app
from bot.wiring import Application, aws_config_from, build_application
from providers.aws.config import AwsConfig
from providers.aws.provider import AwsProvider
from providers.retry import RetryPolicy
from storage.engine import make_engine
from storage.migrate import upgrade
from storage.repositories import Repositories
from tests.support.moto import ApiCallCounter, MotoServer
from tests.support.slack import ALICE, BOB, CAROL, DAVE, FLEET, retry_handlers

ADMIN, REQUESTER, APPROVER, OUTSIDER = ALICE, BOB, CAROL, DAVE
FAST_RETRY = RetryPolicy(
    max_attempts=5, max_total_seconds=10.0, base_wait_seconds=0.001, max_wait_seconds=0.004
)


@dataclass
class Bot:
    standin: SlackStandIn
    aws: MotoServer
    application: Application
    server: HttpServer
    clock: ShiftedClock
    calls: ApiCallCounter
    settings: Settings

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/slack/events"

    @property
    def repos(self) -> Repositories:
        return self.application.services.deps.repos

    def command(
        self, user: str, text: str, *, channel: str = FLEET.id, retry_num: int | None = None
    ) -> DeliveryResponse:
        request = slash_command_request(
            self.standin, command="/runctl", text=text, user=user, channel=channel
        )
        return send(self.standin, self.url, request, retry_num=retry_num)

    def click(self, user: str, message: Message, action_id: str) -> DeliveryResponse:
        request = block_actions_request(self.standin, user=user, action_id=action_id, message=message)
        return send(self.standin, self.url, request)

    def wait_idle(self, timeout: float = 20.0) -> None:
        """Wait until every piece of work the bot accepted has finished."""
        if not self.application.services.drain(timeout):
            raise AssertionError("the bot's work queue did not drain")


def bot_settings(db_path: Path, standin: SlackStandIn, aws: MotoServer, **extra: str) -> dict[str, str]:
    env = {
        "DATABASE_URL": f"sqlite:///{db_path}",
        "SLACK_BOT_TOKEN": standin.bot_token,
        "SLACK_SIGNING_SECRET": standin.signing_secret,
        "RUNCTL_SLACK_API_URL": standin.api_url,
        "AWS_ENDPOINT_URL": aws.endpoint_url,
        "RUNCTL_ADMINS": ADMIN.id,
        "RUNCTL_APPROVERS": CAROL.id,
        "RUNCTL_USERS": BOB.id,
        "RUNCTL_WORKERS": "8",
    }
    env.update(extra)
    return env


@contextmanager
def running_bot(
    tmp_path: Path,
    standin: SlackStandIn,
    aws: MotoServer,
    monkeypatch: Any,
    **extra: str,
) -> Iterator[Bot]:
    for name, value in bot_settings(tmp_path / "bot.db", standin, aws, **extra).items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    upgrade(settings.database_url)
    clock = ShiftedClock()
    calls = ApiCallCounter()
    session = aws.session()
    calls.attach(session)
    config: AwsConfig = replace(aws_config_from(settings), retry=FAST_RETRY)
    repos = Repositories.from_engine(make_engine(settings.database_url))
    provider = AwsProvider(config, session=session, price_cache=repos.prices, clock=clock.now)
    application = build_application(
        settings, clock=clock, provider=provider, slack_retry_handlers=retry_handlers()
    )
    server = HttpServer(
        make_wsgi_app(SlackRequestHandler(application.slack_app), ready=application.readiness),
        "127.0.0.1",
        0,
        threads=8,
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    application.start()
    try:
        yield Bot(standin, aws, application, server, clock, calls, settings)
    finally:
        server.close()
        thread.join(5)
        application.stop()


__all__ = ["ADMIN", "APPROVER", "OUTSIDER", "REQUESTER", "Bot", "running_bot"]
