"""The **Resume on a new spot instance** button under a reclaimed job's thread."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, Respond

from bot.services.training import TrainingService
from bot.slack.app import SlackBot, error_reference
from bot.views import training as views

log = logging.getLogger(__name__)

WORK_RESUME = "training:resume"


def register_training_buttons(bot: SlackBot, training: TrainingService) -> None:
    def work(body: dict[str, Any], respond: Respond) -> None:
        user = str(body.get("user", {}).get("id", ""))
        job_id = str(body.get("actions", [{}])[0].get("value", ""))
        try:
            outcome = training.resume_button(job_id, user)
            text = None if outcome.message is not None and outcome.ok else outcome.text
        except Exception:
            ref = error_reference()
            log.exception("resume of %s by %s failed (reference %s)", job_id, user, ref)
            text = f":x: The resume failed unexpectedly; nothing more was done (reference `{ref}`)."
        if text:
            try:
                respond(text=text, response_type="ephemeral", replace_original=False)
            except Exception:
                log.exception("could not answer the resume button")

    def resume(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        bot.hand_off(WORK_RESUME, body, respond)
        ack()

    bot.register_work(WORK_RESUME, work)
    bot.app.action(views.RESUME_SPOT)(resume)
