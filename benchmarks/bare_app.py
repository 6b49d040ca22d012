"""The ack benchmark's floor, as a process: `python -m benchmarks.bare_app [--inline]`.

A Bolt app whose only listener is `ack()`, served as `runctl-bot serve` serves the bot: the same settings
from the environment (`RUNCTL_HOST`, `RUNCTL_PORT`, `RUNCTL_WORKERS`, the signing secret, the Web API
client), the same HTTP stack (`bot.web.HttpServer`, i.e. waitress, + `make_wsgi_app` + Bolt's WSGI
adapter) and the same interpreter tuning (`settle_heap`).

Without `--inline` the app keeps Bolt's defaults: the listener runs in Bolt's pool while the request
thread polls for `ack()` every 10 ms. With `--inline` it also takes the bot's own Bolt setting
(`PROCESS_BEFORE_RESPONSE`, listener pool size), so what is left between it and the bot is the bot's own
ack path and the work it does after the ack.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from bot.config import load_settings
from bot.runtime import settle_heap
from bot.slack.app import COMMAND, PROCESS_BEFORE_RESPONSE
from bot.slack.client import make_web_client
from bot.web import HttpServer, make_wsgi_app


def build(signing_secret: str, workers: int, client: WebClient, *, inline: bool) -> App:
    like_the_bot: dict[str, Any] = {
        "listener_executor": ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bare"),
        "process_before_response": PROCESS_BEFORE_RESPONSE,
    }
    app = App(
        client=client,
        signing_secret=signing_secret,
        token_verification_enabled=False,
        **(like_the_bot if inline else {}),
    )
    app.command(COMMAND)(lambda ack: ack())
    return app


def main() -> None:
    settings = load_settings()
    if settings.slack_signing_secret is None:
        raise SystemExit("bare_app: SLACK_SIGNING_SECRET is not set")
    inline = "--inline" in sys.argv[1:]
    app = build(
        settings.slack_signing_secret.get_secret_value(),
        settings.workers,
        make_web_client(settings),
        inline=inline,
    )
    server = HttpServer(
        make_wsgi_app(SlackRequestHandler(app)), settings.host, settings.port, threads=settings.workers
    )
    settle_heap()
    server.serve_forever()


if __name__ == "__main__":
    main()
