"""Listeners for the idle-reminder buttons: Keep 4 h, Keep 1 day, Stop now.

Registered on the same Bolt app by the composition root; the work is handed off after the ack (it may
run in the work process), and refusals come back privately to the clicker.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, Respond

from bot.services.container import BotServices
from bot.services.reminders import ButtonResult, IdleCycleService
from bot.slack.app import SlackBot, error_reference
from bot.slack.handoff import WorkFn
from bot.views import reminders as views

log = logging.getLogger(__name__)


def register_reminder_buttons(bot: SlackBot, services: BotServices, idle: IdleCycleService) -> None:
    policy = services.deps.policy

    def work_of(button: Callable[[int, str], ButtonResult]) -> WorkFn:
        def work(body: dict[str, Any], respond: Respond) -> None:
            user = str(body.get("user", {}).get("id", ""))
            raw = str(body.get("actions", [{}])[0].get("value", ""))
            try:
                result = button(int(raw), user) if raw.isdigit() else ButtonResult("That button is broken.")
            except Exception:
                ref = error_reference()
                log.exception("reminder button by %s on mark %s failed (reference %s)", user, raw, ref)
                result = ButtonResult(
                    f":x: That button failed unexpectedly; nothing more was done (reference `{ref}`)."
                )
            if result.ephemeral:
                try:
                    respond(text=result.ephemeral, response_type="ephemeral", replace_original=False)
                except Exception:
                    log.exception("could not answer a reminder button")

        return work

    def listener(kind: str) -> Callable[..., None]:
        def on_click(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
            bot.hand_off(kind, body, respond)
            ack()

        return on_click

    def action(name: str) -> re.Pattern[str]:
        return re.compile(rf"^{re.escape(name)}(:\d+)?$")

    buttons: dict[str, Callable[[int, str], ButtonResult]] = {
        views.KEEP_SHORT: lambda mark, user: idle.keep(mark, user, policy.keep_short),
        views.KEEP_LONG: lambda mark, user: idle.keep(mark, user, policy.keep_long),
        views.STOP_NOW: idle.stop_now,
    }
    for name, button in buttons.items():
        kind = f"reminder:{name}"
        bot.register_work(kind, work_of(button))
        bot.app.action(action(name))(listener(kind))
