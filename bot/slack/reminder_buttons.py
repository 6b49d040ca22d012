"""Listeners for the idle-reminder buttons: Keep 4 h, Keep 1 day, Stop now.

Registered on the same Bolt app by the composition root; the work runs on the services' executor after
the ack, and refusals come back privately to the clicker.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, Respond

from bot.services.container import BotServices
from bot.services.reminders import ButtonResult, IdleCycleService
from bot.views import reminders as views

log = logging.getLogger(__name__)


def register_reminder_buttons(app: App, services: BotServices, idle: IdleCycleService) -> None:
    policy = services.deps.policy

    def handler(work: Callable[[int, str], ButtonResult]) -> Callable[..., None]:
        def listener(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
            user = str(body.get("user", {}).get("id", ""))
            raw = str(body.get("actions", [{}])[0].get("value", ""))

            def run() -> None:
                try:
                    result = work(int(raw), user) if raw.isdigit() else ButtonResult("That button is broken.")
                except Exception:
                    log.exception("reminder button by %s on mark %s failed", user, raw)
                    result = ButtonResult(":x: That button failed unexpectedly; nothing more was done.")
                if result.ephemeral:
                    try:
                        respond(text=result.ephemeral, response_type="ephemeral", replace_original=False)
                    except Exception:
                        log.exception("could not answer a reminder button")

            services.submit(run)
            ack()

        return listener

    def action(name: str) -> re.Pattern[str]:
        return re.compile(rf"^{re.escape(name)}(:\d+)?$")

    app.action(action(views.KEEP_SHORT))(handler(lambda mark, user: idle.keep(mark, user, policy.keep_short)))
    app.action(action(views.KEEP_LONG))(handler(lambda mark, user: idle.keep(mark, user, policy.keep_long)))
    app.action(action(views.STOP_NOW))(handler(idle.stop_now))
