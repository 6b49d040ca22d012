"""Drive the bot the way Slack does: build, sign and deliver slash commands, clicks and events.

Builders read the stand-in's state so that what a test or the sandbox sends is what Slack would
send: a click is built from a button that is really in a recorded message (with the ids Slack
assigned), and every ``response_url`` points back at the stand-in, which applies what the bot
posts there. Each builder returns the payload dict (what Socket Mode carries), and each
``*_request`` wraps it into the exact bytes and signed headers of Slack's HTTP delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

from .blockkit import find_action
from .server import SlackStandIn
from .state import JSON, Channel, Ephemeral, Message

RequestKind = Literal["slash_command", "block_actions", "event_callback"]

#: Slack still sends the deprecated verification token in payloads; Bolt ignores it.
VERIFICATION_TOKEN = "standin-verification-token"


@dataclass(frozen=True)
class SlackRequest:
    """A request exactly as Slack would POST it: signed bytes plus the parsed payload."""

    kind: RequestKind
    body: bytes
    headers: dict[str, str]
    payload: JSON
    response_url_id: str | None = None


@dataclass(frozen=True)
class DeliveryResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


def sign(body: bytes, signing_secret: str, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 signature headers: HMAC-SHA256 of ``v0:{timestamp}:{body}`` with the secret."""
    ts = int(time.time()) if timestamp is None else timestamp
    base = b"v0:" + str(ts).encode("ascii") + b":" + body
    digest = hmac.new(signing_secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}


def _signed(
    standin: SlackStandIn,
    kind: RequestKind,
    body: bytes,
    content_type: str,
    payload: JSON,
    *,
    signing_secret: str | None,
    timestamp: int | None,
    response_url_id: str | None,
) -> SlackRequest:
    headers = {
        "Content-Type": content_type,
        **sign(body, signing_secret or standin.signing_secret, timestamp),
    }
    return SlackRequest(kind, body, headers, payload, response_url_id)


def _channel(standin: SlackStandIn, channel_id: str) -> Channel:
    for channel in standin.channels():
        if channel.id == channel_id:
            return channel
    raise LookupError(f"channel {channel_id} is not in the stand-in workspace")


def _user_name(standin: SlackStandIn, user_id: str) -> str:
    for user in standin.users():
        if user.id == user_id:
            return user.name
    raise LookupError(f"user {user_id} is not in the stand-in workspace")


def _channel_name(channel: Channel) -> str:
    if channel.is_im:
        return "directmessage"
    if channel.is_mpim:
        return "mpdm"
    return channel.name or channel.id


def build_slash_command(
    standin: SlackStandIn,
    *,
    command: str,
    text: str,
    user: str,
    channel: str,
) -> dict[str, str]:
    """The form fields of a slash command invocation (and the Socket Mode ``slash_commands`` payload)."""
    if not command.startswith("/"):
        raise ValueError("slash commands start with '/'")
    target = _channel(standin, channel)
    response_url = standin.issue_response_url(channel=target.id, user=user, kind="slash_command")
    ident = standin.identity
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": ident.team_id,
        "team_domain": ident.team_domain,
        "channel_id": target.id,
        "channel_name": _channel_name(target),
        "user_id": user,
        "user_name": _user_name(standin, user),
        "command": command,
        "text": text,
        "api_app_id": ident.app_id,
        "is_enterprise_install": "false",
        "response_url": response_url.url,
        "trigger_id": standin.new_trigger_id(),
    }


def slash_command_request(
    standin: SlackStandIn,
    *,
    command: str,
    text: str,
    user: str,
    channel: str,
    signing_secret: str | None = None,
    timestamp: int | None = None,
) -> SlackRequest:
    payload = build_slash_command(standin, command=command, text=text, user=user, channel=channel)
    return _signed(
        standin,
        "slash_command",
        urlencode(payload).encode("utf-8"),
        "application/x-www-form-urlencoded",
        dict(payload),
        signing_secret=signing_secret,
        timestamp=timestamp,
        response_url_id=standin.response_url_id(payload["response_url"]),
    )


def _selected_option(element: JSON, value: str | None) -> JSON:
    options: list[Any] = list(element.get("options") or [])
    for group in element.get("option_groups") or []:
        if isinstance(group, dict):
            options.extend(group.get("options") or [])
    for option in options:
        if isinstance(option, dict) and option.get("value") == value:
            return option
    raise LookupError(f"no option with value {value!r} in {element.get('action_id')!r}")


def build_block_actions(
    standin: SlackStandIn,
    *,
    user: str,
    action_id: str,
    message: Message | Ephemeral,
    block_id: str | None = None,
    value: str | None = None,
) -> JSON:
    """A ``block_actions`` payload for clicking ``action_id`` in a recorded message.

    Fails with ``LookupError`` if that element is not in the message as stored, so a test can only
    click what the bot really rendered. ``value`` picks an option of a select, overflow or radio
    element; a button sends its own ``value``. Ephemerals can only be clicked by their recipient,
    and (as in Slack) their payload carries no ``message``.
    """
    is_ephemeral = isinstance(message, Ephemeral)
    if is_ephemeral and message.user != user:
        raise LookupError(f"only {message.user} can see ephemeral {message.ts}")
    found = find_action(message.blocks, action_id, block_id)
    if found is None:
        raise LookupError(f"no element with action_id {action_id!r} in message {message.ts}")
    block, element = found
    kind = str(element.get("type"))
    action: JSON = {
        "action_id": action_id,
        "block_id": block["block_id"],
        "type": kind,
        "action_ts": standin.new_action_ts(),
    }
    if kind in ("button", "workflow_button"):
        action["text"] = element.get("text")
        if "value" in element:
            action["value"] = element["value"]
        if "style" in element:
            action["style"] = element["style"]
    elif kind in ("static_select", "overflow", "radio_buttons"):
        action["selected_option"] = _selected_option(element, value)
    else:
        raise ValueError(f"clicking a {kind} element is not supported by the stand-in")
    target = _channel(standin, message.channel)
    response_url = standin.issue_response_url(
        channel=target.id,
        user=user,
        kind="block_actions",
        original_ts=message.ts,
        original_ephemeral=is_ephemeral,
    )
    ident = standin.identity
    payload: JSON = {
        "type": "block_actions",
        "user": {
            "id": user,
            "username": _user_name(standin, user),
            "name": _user_name(standin, user),
            "team_id": ident.team_id,
        },
        "api_app_id": ident.app_id,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": message.ts,
            "channel_id": target.id,
            "is_ephemeral": is_ephemeral,
        },
        "trigger_id": standin.new_trigger_id(),
        "team": {"id": ident.team_id, "domain": ident.team_domain},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": target.id, "name": _channel_name(target)},
        "state": {"values": {}},
        "response_url": response_url.url,
        "actions": [action],
    }
    if isinstance(message, Message):
        payload["message"] = standin.message_json(message)
    return payload


def block_actions_request(
    standin: SlackStandIn,
    *,
    user: str,
    action_id: str,
    message: Message | Ephemeral,
    block_id: str | None = None,
    value: str | None = None,
    signing_secret: str | None = None,
    timestamp: int | None = None,
) -> SlackRequest:
    payload = build_block_actions(
        standin, user=user, action_id=action_id, message=message, block_id=block_id, value=value
    )
    return _signed(
        standin,
        "block_actions",
        urlencode({"payload": json.dumps(payload)}).encode("utf-8"),
        "application/x-www-form-urlencoded",
        payload,
        signing_secret=signing_secret,
        timestamp=timestamp,
        response_url_id=standin.response_url_id(payload["response_url"]),
    )


def build_message_event(
    standin: SlackStandIn,
    *,
    user: str,
    channel: str,
    text: str,
    thread_ts: str | None = None,
    mention: bool = False,
) -> JSON:
    """Record a person's message in the stand-in and return its ``message``/``app_mention`` event."""
    if mention:
        text = f"<@{standin.identity.bot_user_id}> {text}"
    posted = standin.add_message(channel, user, text, thread_ts=thread_ts)
    target = _channel(standin, channel)
    event: JSON = {
        "type": "app_mention" if mention else "message",
        "user": user,
        "text": text,
        "ts": posted.ts,
        "channel": channel,
        "event_ts": posted.ts,
        "team": standin.identity.team_id,
    }
    if not mention:
        event["channel_type"] = "im" if target.is_im else ("mpim" if target.is_mpim else "channel")
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return event


def build_event_callback(
    standin: SlackStandIn,
    *,
    event: JSON,
    event_id: str | None = None,
    event_time: int | None = None,
) -> JSON:
    """The Events API envelope around ``event`` (and the Socket Mode ``events_api`` payload)."""
    ident = standin.identity
    body_event = dict(event)
    body_event.setdefault("event_ts", standin.new_action_ts())
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": ident.team_id,
        "api_app_id": ident.app_id,
        "event": body_event,
        "type": "event_callback",
        "event_id": event_id or standin.new_event_id(),
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": ident.team_id,
                "user_id": ident.bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }


def event_request(
    standin: SlackStandIn,
    *,
    event: JSON,
    event_id: str | None = None,
    signing_secret: str | None = None,
    timestamp: int | None = None,
) -> SlackRequest:
    payload = build_event_callback(standin, event=event, event_id=event_id)
    return _signed(
        standin,
        "event_callback",
        json.dumps(payload).encode("utf-8"),
        "application/json",
        payload,
        signing_secret=signing_secret,
        timestamp=timestamp,
        response_url_id=None,
    )


def deliver(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
    *,
    timeout: float = 10.0,
) -> DeliveryResponse:
    """POST a Slack request to the bot; add ``X-Slack-Retry-Num``/``-Reason`` for a redelivery.

    Non-2xx answers are returned, not raised: the tests assert on them (401 for bad signatures).
    """
    all_headers = dict(headers)
    if retry_num is not None:
        all_headers["X-Slack-Retry-Num"] = str(retry_num)
        all_headers["X-Slack-Retry-Reason"] = retry_reason
    request = urllib.request.Request(url, data=body, headers=all_headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return DeliveryResponse(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        with error:
            return DeliveryResponse(error.code, dict(error.headers.items()), error.read())


def send(
    standin: SlackStandIn,
    url: str,
    request: SlackRequest,
    *,
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
    timeout: float = 10.0,
) -> DeliveryResponse:
    """Deliver ``request`` and, like Slack, show a slash command's synchronous reply to the user.

    A 200 body (JSON message or plain text) answering a slash command becomes an ephemeral (or an
    ``in_channel`` message); Slack ignores response bodies to clicks and events.
    """
    response = deliver(url, request.body, request.headers, retry_num, retry_reason, timeout=timeout)
    if (
        request.kind == "slash_command"
        and response.status == 200
        and response.body.strip()
        and request.response_url_id is not None
    ):
        content_type = response.headers.get("Content-Type", response.headers.get("content-type", ""))
        reply: JSON | str
        if content_type.startswith("application/json"):
            parsed = response.json()
            reply = parsed if isinstance(parsed, dict) else {"text": response.text}
        else:
            reply = response.text
        standin.apply_command_reply(request.response_url_id, reply)
    return response


def push_slash_command(standin: SlackStandIn, *, command: str, text: str, user: str, channel: str) -> str:
    """Deliver a slash command over Socket Mode; returns the envelope id."""
    payload = build_slash_command(standin, command=command, text=text, user=user, channel=channel)
    return standin.push_envelope("slash_commands", dict(payload))


def push_block_actions(
    standin: SlackStandIn,
    *,
    user: str,
    action_id: str,
    message: Message | Ephemeral,
    block_id: str | None = None,
    value: str | None = None,
) -> str:
    payload = build_block_actions(
        standin, user=user, action_id=action_id, message=message, block_id=block_id, value=value
    )
    return standin.push_envelope("interactive", payload)


def push_event(
    standin: SlackStandIn,
    *,
    event: JSON,
    event_id: str | None = None,
    retry_attempt: int | None = None,
    retry_reason: str | None = None,
) -> str:
    payload = build_event_callback(standin, event=event, event_id=event_id)
    return standin.push_envelope(
        "events_api", payload, retry_attempt=retry_attempt, retry_reason=retry_reason
    )
