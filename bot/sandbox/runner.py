"""`runctl-bot sandbox`: the real bot, an embedded AWS (moto) and a local Slack page, in one process.

Everything binds 127.0.0.1 and nothing leaves the machine. The bot is built by the production
composition root and served by the production HTTP stack; only its endpoints point at local stand-ins.
The scheduler runs on a demo cadence so an idle reminder appears within a minute.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.config import load_settings
from bot.sandbox.demo import GPU_AMI_ID, DemoFleet, DemoMetrics, seed_demo_fleet
from bot.sandbox.users import ADMIN, APPROVER, DEMO_CHANNEL, DEMO_USERS, OUTSIDER, REQUESTER, role_env
from bot.sandbox.web import SandboxWeb
from bot.slack.standin import SlackStandIn
from bot.web import HttpServer, make_wsgi_app
from bot.wiring import Application, build_application
from storage.migrate import upgrade

log = logging.getLogger(__name__)

REGION = "us-east-1"

# The demo cadence: fast enough to watch, the same rules as production.
DEMO_SETTINGS = {
    "RUNCTL_RECONCILE_INTERVAL": "15s",
    "RUNCTL_IDLE_INTERVAL": "20s",
    "RUNCTL_GRACE_PERIOD": "3m",
    "RUNCTL_IDLE_ENFORCE": "true",
    "RUNCTL_BREAKER_MAX_SHARE": "1.0",
    "RUNCTL_WORK_START": "00:00",
    "RUNCTL_WORK_END": "23:59",
    "RUNCTL_WORK_DAYS": "mon,tue,wed,thu,fri,sat,sun",
    "RUNCTL_PRICING_API": "false",
    "RUNCTL_LOG_LEVEL": "WARNING",
}


@dataclass
class Sandbox:
    url: str
    bot_url: str
    fleet: DemoFleet
    application: Application
    standin: SlackStandIn
    started_in: float

    def tour(self) -> list[str]:
        ids = self.fleet.ids()
        return [
            f"1. Open {self.url} — you are {REQUESTER.user.real_name} in #{DEMO_CHANNEL.name}.",
            "2. Type `/runctl list --all` to see the demo fleet, `/runctl help` for every verb.",
            f"3. `/runctl terminate {ids.get('idle', 'i-…')}` as the requester, then switch to "
            f"{APPROVER.user.real_name} and click Approve.",
            "4. Within a minute an idle reminder arrives in the requester's DMs: try Keep 4 h or Stop now.",
            f"5. Try roles: {OUTSIDER.user.real_name} may only read; {ADMIN.user.real_name} may force.",
        ]


def _environment(data_dir: Path, endpoint: str, standin: SlackStandIn, signing_secret: str) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite:///{data_dir / 'runctl-sandbox.db'}",
        "SLACK_BOT_TOKEN": standin.bot_token,
        "SLACK_SIGNING_SECRET": signing_secret,
        "RUNCTL_SLACK_API_URL": standin.api_url,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "sandbox",
        "AWS_SECRET_ACCESS_KEY": "sandbox",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "RUNCTL_CHANNELS": DEMO_CHANNEL.id,
        "RUNCTL_TEAM_CHANNEL": DEMO_CHANNEL.id,
        "RUNCTL_AMI_ID": GPU_AMI_ID,
        **role_env(),
        **DEMO_SETTINGS,
    }


def _metrics_loop(metrics: DemoMetrics, stop: threading.Event) -> None:
    while not stop.wait(60):
        try:
            metrics.publish(datetime.now(UTC))
        except Exception:
            log.exception("demo metrics could not be published")


@contextmanager
def running_sandbox(*, port: int = 3000, data_dir: Path) -> Iterator[Sandbox]:
    """Start everything; stop it all, in reverse order, on exit."""
    from moto.server import ThreadedMotoServer

    started = time.perf_counter()
    data_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        stack.callback(moto.stop)
        host, moto_port = moto.get_host_and_port()
        endpoint = f"http://{host}:{moto_port}"

        signing_secret = secrets.token_hex(16)
        standin = SlackStandIn(users=DEMO_USERS, channels=[DEMO_CHANNEL], signing_secret=signing_secret)
        standin.start()
        stack.callback(standin.stop)

        os.environ.update(_environment(data_dir, endpoint, standin, signing_secret))
        fleet = seed_demo_fleet(endpoint, REGION, now=datetime.now(UTC))
        settings = load_settings()
        upgrade(settings.database_url)
        application = build_application(settings, role="all")
        server = HttpServer(
            make_wsgi_app(SlackRequestHandler(application.slack_app), ready=application.readiness),
            "127.0.0.1",
            0,
            threads=settings.workers,
        )
        bot_thread = threading.Thread(
            target=server.serve_forever, kwargs={"handle_signals": False}, daemon=True
        )
        bot_thread.start()
        stack.callback(bot_thread.join, 5)
        stack.callback(server.close)
        bot_url = f"http://127.0.0.1:{server.port}/slack/events"

        web = SandboxWeb(standin, bot_url, signing_secret, channel_id=DEMO_CHANNEL.id, port=port).start()
        stack.callback(web.stop)

        application.start()
        stack.callback(application.stop)
        stop_metrics = threading.Event()
        metrics_thread = threading.Thread(
            target=_metrics_loop, args=(DemoMetrics(fleet, endpoint), stop_metrics), daemon=True
        )
        metrics_thread.start()
        stack.callback(stop_metrics.set)
        yield Sandbox(web.url, bot_url, fleet, application, standin, time.perf_counter() - started)


def run_sandbox(*, port: int, data_dir: Path) -> int:
    """Foreground entry point: print the URL and the tour, then wait for Ctrl-C or SIGTERM."""
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with running_sandbox(port=port, data_dir=data_dir) as sandbox:
        lines = [
            f"runctl-bot sandbox is up in {sandbox.started_in:.1f} s: {sandbox.url}",
            "Nothing leaves this machine: AWS is an embedded emulator and Slack a local page.",
            "",
            *sandbox.tour(),
            "",
            "Demo fleet:",
            *(f"  {line}" for line in sandbox.fleet.summary_lines()),
            "",
            "Press Ctrl-C to stop.",
        ]
        print("\n".join(lines), flush=True)  # noqa: T201
        stop.wait()
        print("stopping…", flush=True)  # noqa: T201
    print("stopped cleanly", flush=True)  # noqa: T201
    return 0
