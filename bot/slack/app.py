"""The Bolt app factory: verification, dedup, authorisation, then listeners that ack in milliseconds.

Nothing here is module-level or reconfigured per request. Listeners parse and authorise (pure, fast),
ack, and hand the work off as data (`bot.slack.handoff`: this process's bounded executor, or the work
process under `serve`); answers go back through `respond`
(private) or the Notifier (public, updated in place). Every failure becomes a short private message
with the operation id; the stack trace goes to the log only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import Ack, App, BoltResponse, Respond
from slack_sdk import WebClient

from bot.config import Settings
from bot.core import commands as cmds
from bot.core.approvals import Decision
from bot.logs import log_context
from bot.metrics import COMMANDS
from bot.services.container import BotServices
from bot.services.dispatch import CommandDispatcher, Origin, Reply, config_rows
from bot.services.ports import MessageRef
from bot.slack.handoff import Handoff, InlineHandoff, WorkFn, WorkKinds
from bot.views import blocks as bk
from bot.views import operations as op_views
from providers.errors import ProviderError, TransientError

log = logging.getLogger(__name__)

COMMAND = "/runctl"
WORK_COMMAND = "command"
WORK_APPROVE = "approve"
WORK_DENY = "deny"
WORK_START_BACK = "start_back"


def _delivery_key(body: dict[str, Any]) -> str | None:
    """What makes a Slack delivery unique: redeliveries (X-Slack-Retry-Num) carry the same key."""
    if body.get("event_id"):
        return f"event:{body['event_id']}"
    if body.get("command") and body.get("trigger_id"):
        return f"command:{body['trigger_id']}"
    return None


def _what_needs(parsed: cmds.Command) -> str:
    """How a refusal names the request: a flag that raised the role is part of it."""
    if parsed.required_role is parsed.spec.role:
        return parsed.verb
    if isinstance(parsed, cmds.KeepCommand) and parsed.forever:
        return "keep … never"
    if isinstance(parsed, cmds.TerminateCommand) and parsed.force:
        return f"{parsed.verb} --force"
    return parsed.verb


#: Bolt runs each listener in the request thread and answers as soon as it returns. Every listener here
#: only parses, authorises and queues its work (well under a millisecond), so the ack needs neither a hop
#: to Bolt's listener pool nor Bolt's 10 ms polling for `ack()`: measured in docs/performance.md.
PROCESS_BEFORE_RESPONSE = True


def _operation_id(key: str) -> str:
    """A deterministic operation id per delivery: a redelivered launch finds its first attempt."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def error_reference() -> str:
    """For a failure with no operation: shown to the person and logged with the exception, to grep for."""
    return f"err-{uuid.uuid4().hex[:12]}"


def _click_key(body: dict[str, Any]) -> str | None:
    """What makes a button click unique: Slack gives every click its own trigger id."""
    action = (body.get("actions") or [{}])[0]
    trigger = body.get("trigger_id") or action.get("action_ts")
    return f"click:{trigger}:{action.get('action_id', '')}" if trigger else None


# "Start it back" is one button on a stop message, or one per machine (`start_it_back:<n>`) where a message
# stopped several; Slack wants the action ids in a message to differ.
START_BACK_ACTION = re.compile(rf"^{re.escape(op_views.START_BACK)}(:\d+)?$")


class SlackBot:
    """Holds what the listeners share; `app` is the Bolt app to serve."""

    def __init__(self, settings: Settings, services: BotServices, client: WebClient) -> None:
        self.settings = settings
        self.services = services
        self.dispatcher = CommandDispatcher(services, config_rows(settings))
        self.app = App(
            client=client,
            signing_secret=settings.slack_signing_secret.get_secret_value()
            if settings.slack_signing_secret
            else None,
            token_verification_enabled=False,
            request_verification_enabled=not settings.socket_mode,
            listener_executor=ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="bolt"),
            process_before_response=PROCESS_BEFORE_RESPONSE,
        )
        self.kinds = WorkKinds()
        self.handoff: Handoff = InlineHandoff(services, self.kinds)
        self.kinds.register(WORK_COMMAND, self._work_command)
        self.kinds.register(WORK_APPROVE, self._work_decide(Decision.APPROVE))
        self.kinds.register(WORK_DENY, self._work_decide(Decision.DENY))
        self.kinds.register(WORK_START_BACK, self._work_start_back)
        self.app.command(COMMAND)(self._on_command)
        self.app.action(op_views.APPROVE)(self._on_approve)
        self.app.action(op_views.DENY)(self._on_deny)
        self.app.action(START_BACK_ACTION)(self._on_start_back)
        self.app.error(self._on_error)

    # --- hand-off ------------------------------------------------------------------------------

    def use_handoff(self, handoff: Handoff) -> None:
        """Send the work elsewhere (the work process); kinds stay registered for the inline path."""
        self.handoff = handoff

    def hand_off(self, kind: str, body: dict[str, Any], respond: Respond) -> None:
        self.handoff.put(kind, body, respond)

    def register_work(self, kind: str, work: WorkFn) -> None:
        self.kinds.register(kind, work)

    # --- delivery dedup --------------------------------------------------------------------------

    def _first_delivery(self, key: str | None) -> bool:
        """Claim the delivery in the database, in the work rather than before the ack.

        A redelivery (X-Slack-Retry-Num) is acked like the first one, but its work finds the key taken,
        across every bot process, and does nothing.
        """
        if key is None:
            return True
        if self.services.deps.repos.deliveries.claim(key, self.services.deps.clock.now()):
            return True
        log.info("duplicate Slack delivery %s ignored", key)
        return False

    # --- slash command ---------------------------------------------------------------------------

    def _judge(self, command: dict[str, Any]) -> cmds.Command | str:
        """The parsed command when it may run, else the private answer that refuses or helps."""
        user = str(command.get("user_id", ""))
        channel = command.get("channel_id")
        parsed = cmds.parse(str(command.get("text", "")), self.services.deps.clock.now())
        if isinstance(parsed, cmds.ParseError):
            COMMANDS.labels(parsed.verb or "unknown", "parse_error").inc()
            return parsed.render()
        roles = self.services.deps.roles
        gate = roles.check_channel(channel)
        if gate.allowed:
            gate = roles.check_verb(
                user, parsed.verb, required=parsed.required_role, what=_what_needs(parsed)
            )
        if not gate.allowed:
            COMMANDS.labels(parsed.verb, "denied").inc()
            self.services.auditor.event(
                user, f"request:{parsed.verb}", "denied", detail={"reason": gate.reason}
            )
            return f":no_entry: {gate.reason}"
        if isinstance(parsed, cmds.HelpCommand):
            COMMANDS.labels("help", "ok").inc()
            return cmds.help_text(parsed.topic)
        return parsed

    def _on_command(self, ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        judged = self._judge(command)
        if isinstance(judged, str):
            ack(response_type="ephemeral", text=judged)
            return
        # Queued before the ack returns, so the work is accounted for (drain, shutdown) the moment Slack
        # hears back; queueing takes microseconds.
        self.hand_off(WORK_COMMAND, command, respond)
        ack()

    def _work_command(self, command: dict[str, Any], respond: Respond) -> None:
        """The command's work, from the payload alone (it may run in another process than the ack)."""
        parsed = cmds.parse(str(command.get("text", "")), self.services.deps.clock.now())
        if isinstance(parsed, cmds.ParseError | cmds.HelpCommand):
            log.error("a command that was acked as work no longer parses as work: %r", command.get("text"))
            return
        key = _delivery_key(command)
        origin = Origin(
            str(command.get("user_id", "")), command.get("channel_id"), _operation_id(key) if key else None
        )
        self._run(parsed, origin, respond, key)

    def _run(self, parsed: cmds.Command, origin: Origin, respond: Respond, key: str | None = None) -> None:
        with log_context(
            request_id=key, operation_id=origin.operation_id, user=origin.user, verb=parsed.verb
        ):
            self._run_logged(parsed, origin, respond, key)

    def _run_logged(self, parsed: cmds.Command, origin: Origin, respond: Respond, key: str | None) -> None:
        if not self._first_delivery(key):
            return
        try:
            reply = self.dispatcher.run(parsed, origin)
            COMMANDS.labels(parsed.verb, "ok").inc()
        except ProviderError as exc:
            COMMANDS.labels(parsed.verb, "provider_error").inc()
            # The cloud failed (after every retry, for what is worth retrying): what it said is safe to show.
            ref = origin.operation_id or "none"
            log.warning(
                "command %s by %s failed in the provider (operation %s): %s",
                parsed.verb,
                origin.user,
                ref,
                exc,
            )
            transient = isinstance(exc, TransientError)
            what = "could not reach AWS" if transient else "was refused by AWS"
            hint = " Try again in a minute." if transient else ""
            self._safe_respond(
                respond,
                Reply(
                    f":x: `/runctl {parsed.verb}` {what} (operation `{ref}`): {bk.clip(str(exc), 500)}.{hint}"
                ),
            )
            return
        except Exception:
            COMMANDS.labels(parsed.verb, "error").inc()
            ref = origin.operation_id or "none"
            log.exception("command %s by %s failed (operation %s)", parsed.verb, origin.user, ref)
            self._safe_respond(
                respond,
                Reply(
                    f":x: `/runctl {parsed.verb}` failed unexpectedly (operation `{ref}`). "
                    "The details are in the bot's log; nothing more was done."
                ),
            )
            return
        if reply.text:
            self._safe_respond(respond, reply)

    @staticmethod
    def _safe_respond(respond: Respond, reply: Reply) -> None:
        try:
            respond(
                text=reply.text,
                blocks=reply.blocks or None,
                response_type="in_channel" if reply.public else "ephemeral",
                replace_original=False,
            )
        except Exception:
            log.exception("could not answer through response_url")

    # --- buttons ---------------------------------------------------------------------------------

    def _on_approve(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        self.hand_off(WORK_APPROVE, body, respond)
        ack()

    def _on_deny(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        self.hand_off(WORK_DENY, body, respond)
        ack()

    def _approval_reference(self, approval_id: str) -> str:
        """The operation the approval decides, which is what the logs and the request message name."""
        try:
            approval = self.services.deps.repos.approvals.get(approval_id)
        except Exception:
            log.exception("could not look approval %s up", approval_id)
            approval = None
        return approval.operation_id if approval is not None else error_reference()

    def _work_decide(self, decision: Decision) -> WorkFn:
        def work(body: dict[str, Any], respond: Respond) -> None:
            user = str(body.get("user", {}).get("id", ""))
            approval_id = str(body.get("actions", [{}])[0].get("value", ""))
            ref = self._approval_reference(approval_id)
            with log_context(
                request_id=_click_key(body), operation_id=ref, user=user, verb=f"approval {decision.value}"
            ):
                try:
                    result = self.services.approvals.decide(approval_id, user, decision)
                except ProviderError as exc:
                    log.warning(
                        "approval %s click by %s failed in the provider (operation %s): %s",
                        approval_id,
                        user,
                        ref,
                        exc,
                    )
                    what = "could not reach AWS" if isinstance(exc, TransientError) else "was refused by AWS"
                    self._safe_respond(
                        respond,
                        Reply(
                            f":x: Your click on request `{approval_id}` {what} (operation `{ref}`): "
                            f"{bk.clip(str(exc), 500)}."
                        ),
                    )
                    return
                except Exception:
                    log.exception("approval %s click by %s failed (operation %s)", approval_id, user, ref)
                    result_text = (
                        f":x: Your click on request `{approval_id}` failed unexpectedly (operation `{ref}`). "
                        "The details are in the bot's log."
                    )
                    self._safe_respond(respond, Reply(result_text))
                    return
                if result.ephemeral:
                    self._safe_respond(respond, Reply(result.ephemeral))

        return work

    def _on_start_back(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        self.hand_off(WORK_START_BACK, body, respond)
        ack()

    def _work_start_back(self, body: dict[str, Any], respond: Respond) -> None:
        user = str(body.get("user", {}).get("id", ""))
        gate = self.services.deps.roles.check_verb(user, "start")
        if not gate.allowed:
            self._safe_respond(respond, Reply(f":no_entry: {gate.reason}"))
            return
        channel = (body.get("channel") or {}).get("id")
        action = (body.get("actions") or [{}])[0]
        ids = [i for i in str(action.get("value", "")).split(",") if i]
        key = _click_key(body)
        # From the click, so a redelivered click finds the start it already made instead of starting again.
        origin = Origin(user, channel, _operation_id(key) if key else uuid.uuid4().hex)
        message = body.get("message") or {}
        ts = (body.get("container") or {}).get("message_ts") or message.get("ts")
        source = MessageRef(channel, str(ts)) if channel and ts else None

        def work() -> Reply:
            return self.dispatcher.start_back(
                ids,
                origin,
                stop_message=source,
                stop_text=str(message.get("text", "")),
                stop_blocks=list(message.get("blocks") or []),
                spent_action=str(action.get("action_id", "")) or None,
            )

        with log_context(request_id=key, operation_id=origin.operation_id, user=user, verb="start back"):
            self._run_button("Start it back", work, respond, origin.operation_id or error_reference())

    def _run_button(self, label: str, work: Callable[[], Reply], respond: Respond, ref: str) -> None:
        """Run a button's work; a failure answers the clicker privately with `ref`, which the log line
        carries too (the stack trace stays in the log)."""
        try:
            reply = work()
        except ProviderError as exc:
            log.warning("button %s failed in the provider (operation %s): %s", label, ref, exc)
            what = "could not reach AWS" if isinstance(exc, TransientError) else "was refused by AWS"
            reply = Reply(f":x: *{label}* {what} (operation `{ref}`): {bk.clip(str(exc), 500)}.")
        except Exception:
            log.exception("button %s failed (operation %s)", label, ref)
            reply = Reply(
                f":x: *{label}* failed unexpectedly (operation `{ref}`). "
                "The details are in the bot's log; nothing more was done."
            )
        if reply.text:
            self._safe_respond(respond, reply)

    # --- errors ----------------------------------------------------------------------------------

    def _on_error(
        self,
        error: Exception,
        body: dict[str, Any],
        respond: Respond | None,
        response: BoltResponse | None,
    ) -> BoltResponse | None:
        """A listener raised: the person gets a reference to quote, the log the same reference and the trace.

        Before the ack, Slack would otherwise get a 500 and show its own unhelpful error next to ours.
        """
        ref = error_reference()
        user = str((body.get("user") or {}).get("id") or body.get("user_id") or "") or None
        with log_context(operation_id=ref, user=user):
            log.error("unhandled error in a listener (reference %s): %s", ref, error, exc_info=error)
        text = f":x: Something went wrong (reference `{ref}`); the details are in the bot's log."
        if respond is not None:
            self._safe_respond(respond, Reply(text))
        if response is None:
            return None
        body_text = "" if respond is not None else json.dumps({"response_type": "ephemeral", "text": text})
        headers: dict[str, str | Sequence[str]] = {"content-type": "application/json"} if body_text else {}
        return BoltResponse(status=200, body=body_text, headers=headers)


def create_app(settings: Settings, services: BotServices, *, client: WebClient) -> SlackBot:
    return SlackBot(settings, services, client)
