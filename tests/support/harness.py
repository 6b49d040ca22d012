"""The whole bot on 127.0.0.1 for end-to-end tests: moto server + Slack stand-in + the real app.

The app is built by the production composition root (`bot.wiring.build_application`) and served by the
production HTTP stack (`bot.web`); tests talk to it only through signed HTTP, the stand-in and moto.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk.http_retry import (
    HttpRequest,
    HttpResponse,
    RateLimitErrorRetryHandler,
    RetryHandler,
    RetryState,
)
from sqlalchemy import text as sql_text

from bot.config import Settings, load_settings
from bot.core.clock import ShiftedClock
from bot.slack.standin import Ephemeral, Message, SlackStandIn
from bot.slack.standin.delivery import DeliveryResponse, block_actions_request, send, slash_command_request
from bot.web import HttpServer, make_wsgi_app
from bot.wiring import Application, aws_config_from, build_application
from providers import tags as tagschema
from providers.aws.config import AwsConfig
from providers.aws.provider import AwsProvider
from providers.retry import RetryPolicy
from storage.engine import make_engine
from storage.migrate import upgrade
from storage.repositories import Repositories
from tests.support.moto import ApiCallCounter, FaultInjector, MotoServer, run_instances
from tests.support.slack import ALICE, BOB, CAROL, DAVE, FLEET, retry_handlers

ADMIN, REQUESTER, APPROVER, OUTSIDER = ALICE, BOB, CAROL, DAVE
# Every AWS call that changes the fleet; "nothing changed" means none of these were sent.
MUTATING_CALLS = (
    "ec2.RunInstances",
    "ec2.StartInstances",
    "ec2.StopInstances",
    "ec2.TerminateInstances",
    "ec2.CreateTags",
    "ec2.DeleteTags",
)
TABLES = (
    "operations",
    "approvals",
    "audit_events",
    "slack_deliveries",
    "resources",
    "state_transitions",
)
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
    faults: FaultInjector

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
        if not self.application.drain(timeout):
            raise AssertionError("the bot's work queue did not drain")

    # --- driving ---------------------------------------------------------------------------------

    def run(self, user: str, text: str, *, channel: str = FLEET.id) -> DeliveryResponse:
        """Deliver `/runctl <text>`, insist on a 200, and wait until the work it started is done."""
        response = self.command(user, text, channel=channel)
        assert response.status == 200, f"/runctl {text}: HTTP {response.status} {response.text}"
        self.wait_idle()
        return response

    def press(self, user: str, message: Message, action_id: str) -> DeliveryResponse:
        """Click a button, insist on a 200, and wait until the work it started is done."""
        response = self.click(user, message, action_id)
        assert response.status == 200, f"click {action_id}: HTTP {response.status} {response.text}"
        self.wait_idle()
        return response

    # --- the cloud -------------------------------------------------------------------------------

    def seed(
        self,
        count: int = 1,
        *,
        owner: str = REQUESTER.id,
        project: str = "demo",
        instance_type: str = "t3.micro",
        tags: dict[str, str] | None = None,
        managed: bool = True,
    ) -> list[str]:
        """Machines in moto as the bot would have launched them, known to the bot's database (as after a
        reconcile); the AWS call counter starts from zero afterwards."""
        all_tags = {tagschema.OWNER: owner, tagschema.PROJECT: project, **(tags or {})}
        if managed:
            all_tags[tagschema.MANAGED] = "true"
        ids = run_instances(self.ec2, count, tags=all_tags, instance_type=instance_type)
        self.application.services.tracking.reconcile()
        self.calls.reset()
        return ids

    @cached_property
    def ec2(self) -> Any:
        """A boto3 EC2 client on moto for seeding and reading back; its calls are not counted."""
        return self.aws.client("ec2")

    def describe(self, instance_id: str) -> dict[str, Any]:
        reservations = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        instance: dict[str, Any] = reservations[0]["Instances"][0]
        return instance

    def state(self, instance_id: str) -> str:
        return str(self.describe(instance_id)["State"]["Name"])

    def tags(self, instance_id: str) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in self.describe(instance_id).get("Tags", [])}

    def fleet(self) -> dict[str, tuple[str, dict[str, str]]]:
        """Every machine in moto with its state and tags, to compare before and after."""
        out: dict[str, tuple[str, dict[str, str]]] = {}
        pages = self.ec2.get_paginator("describe_instances").paginate()
        for page in pages:
            for reservation in page["Reservations"]:
                for inst in reservation["Instances"]:
                    tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
                    out[inst["InstanceId"]] = (inst["State"]["Name"], tags)
        return out

    def mutations(self) -> int:
        """AWS calls the bot made that change the fleet."""
        return sum(self.calls.count(name) for name in MUTATING_CALLS)

    # --- what Slack shows ------------------------------------------------------------------------

    def replies(self, user: str) -> list[str]:
        """Everything only `user` saw (ephemerals: synchronous replies and respond()), oldest first."""
        return [rendered(e) for e in self.standin.ephemerals(user=user)]

    def last_reply(self, user: str) -> str:
        replies = self.replies(user)
        assert replies, f"{user} got no private reply"
        return replies[-1]

    def posts(self, channel: str = FLEET.id) -> list[Message]:
        """Top-level messages the bot posted in a channel, oldest first (as they look now)."""
        return [m for m in self.standin.messages(channel) if m.is_bot_message and not m.is_reply]

    def with_button(self, action_id: str, channel: str = FLEET.id) -> Message:
        """The newest message in `channel` that still carries a button `action_id`."""
        for message in reversed(self.posts(channel)):
            if action_id in buttons(message):
                return message
        raise AssertionError(f"no message in {channel} has a {action_id!r} button")

    def current(self, message: Message) -> Message:
        """The message as it is now (after chat.update)."""
        fresh = self.standin.message(message.channel, message.ts)
        assert fresh is not None, f"message {message.ts} is gone"
        return fresh

    def rows(self) -> dict[str, int]:
        """Rows per table in the bot's database."""
        with self.application.engine.connect() as conn:
            return {t: int(conn.execute(sql_text(f"SELECT COUNT(*) FROM {t}")).scalar_one()) for t in TABLES}


def _texts(node: Any) -> list[str]:
    """Every human-readable string in a block tree (section text, fields, context, headers, buttons)."""
    if isinstance(node, dict):
        found = [node["text"]] if isinstance(node.get("text"), str) else []
        for key, value in node.items():
            if key != "text" or not isinstance(value, str):
                found += _texts(value)
        return found
    if isinstance(node, list):
        return [t for item in node for t in _texts(item)]
    return []


def rendered(message: Message | Ephemeral) -> str:
    """What a person reads: the fallback text and every text in the blocks, one per line."""
    return "\n".join([message.text, *_texts(message.blocks)])


def buttons(message: Message | Ephemeral) -> list[str]:
    """The action ids of the buttons in a message."""
    ids: list[str] = []
    for block in message.blocks:
        if block.get("type") == "actions":
            ids += [str(e.get("action_id")) for e in block.get("elements", []) if e.get("type") == "button"]
        accessory = block.get("accessory")
        if isinstance(accessory, dict) and accessory.get("type") == "button":
            ids.append(str(accessory.get("action_id")))
    return ids


class ExactRetryAfter(RateLimitErrorRetryHandler):
    """Honours Slack's Retry-After to the second. slack_sdk adds up to a second of random jitter to every
    wait, which proves nothing here and would add seconds to each rate-limit test."""

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        if response is None:
            raise error or RuntimeError("a rate-limit retry without a response")
        state.next_attempt_requested = True
        headers = {k.lower(): v for k, v in response.headers.items()}
        retry_after = headers.get("retry-after")
        time.sleep(int(retry_after[0]) if retry_after else 1)
        state.increment_current_attempt()


def fast_retry_handlers() -> list[RetryHandler]:
    """The bot's retry set (rate limits, 5xx, connection errors) with test-speed waits."""
    handlers = retry_handlers()
    return [
        ExactRetryAfter(max_retry_count=h.max_retry_count) if isinstance(h, RateLimitErrorRetryHandler) else h
        for h in handlers
    ]


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
        "RUNCTL_PRICING_API": "false",  # moto has no Pricing API; the shipped table answers
    }
    env.update(extra)
    return env


@contextmanager
def running_bot(
    tmp_path: Path,
    standin: SlackStandIn,
    aws: MotoServer,
    monkeypatch: Any,
    work_process: bool = False,
    **extra: str,
) -> Iterator[Bot]:
    """The bot on 127.0.0.1; `work_process=True` runs the work after each ack in a child, as `serve` does.

    The child builds its own provider and clock from the settings, so a test using it cannot move the
    bot's clock or count AWS calls in-process: it asserts on the stand-in, moto and the database.
    """
    for name, value in bot_settings(tmp_path / "bot.db", standin, aws, **extra).items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    upgrade(settings.database_url)
    clock = ShiftedClock()
    calls = ApiCallCounter()
    session = aws.session()
    calls.attach(session)
    faults = FaultInjector().attach(session)
    config: AwsConfig = replace(aws_config_from(settings), retry=FAST_RETRY)
    repos = Repositories.from_engine(make_engine(settings.database_url))
    provider = AwsProvider(config, session=session, price_cache=repos.prices, clock=clock.now)
    application = build_application(
        settings, clock=clock, provider=provider, slack_retry_handlers=fast_retry_handlers()
    )
    if work_process:
        application.use_work_process(scheduler=False)
    server = HttpServer(
        make_wsgi_app(SlackRequestHandler(application.slack_app), ready=application.readiness),
        "127.0.0.1",
        0,
        threads=8,
    )
    # waitress notices close() at its next poll; the default 1 s poll would add a second to every test.
    server._server.adj.asyncore_loop_timeout = 0.02  # type: ignore[assignment]
    thread = threading.Thread(target=server.serve_forever, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    application.start()
    if application.worker is not None and not application.worker.wait_ready(60):
        raise AssertionError("the work process did not start")
    try:
        yield Bot(standin, aws, application, server, clock, calls, settings, faults)
    finally:
        server.close()  # hands the close to waitress's own loop thread and waits for it
        thread.join(5)
        application.stop()


__all__ = [
    "ADMIN",
    "APPROVER",
    "MUTATING_CALLS",
    "OUTSIDER",
    "REQUESTER",
    "Bot",
    "buttons",
    "rendered",
    "running_bot",
]
