"""The `Notifier` port on the Slack Web API: post, update in place, DM, ephemeral, upload, time zones."""

from __future__ import annotations

import logging
import threading
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.services.ports import Blocks, MessageRef

log = logging.getLogger(__name__)


class SlackNotifier:
    def __init__(self, client: WebClient) -> None:
        self._client = client
        self._dm_channels: dict[str, str] = {}
        self._timezones: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def post(
        self, channel: str, text: str, blocks: Blocks | None = None, *, thread_ts: str | None = None
    ) -> MessageRef:
        kwargs: dict[str, Any] = {"channel": channel, "text": text}
        if blocks is not None:
            kwargs["blocks"] = list(blocks)
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        response = self._client.chat_postMessage(**kwargs)
        return MessageRef(str(response["channel"]), str(response["ts"]))

    def update(self, ref: MessageRef, text: str, blocks: Blocks | None = None) -> None:
        # Slack keeps the old blocks when none are sent; an empty list clears them (no stale buttons).
        self._client.chat_update(channel=ref.channel, ts=ref.ts, text=text, blocks=list(blocks or []))

    def _dm_channel(self, user: str) -> str:
        with self._lock:
            cached = self._dm_channels.get(user)
        if cached:
            return cached
        response = self._client.conversations_open(users=[user])
        channel = str(response["channel"]["id"])
        with self._lock:
            self._dm_channels[user] = channel
        return channel

    def dm(self, user: str, text: str, blocks: Blocks | None = None) -> MessageRef:
        return self.post(self._dm_channel(user), text, blocks)

    def ephemeral(self, channel: str, user: str, text: str, blocks: Blocks | None = None) -> None:
        kwargs: dict[str, Any] = {"channel": channel, "user": user, "text": text}
        if blocks is not None:
            kwargs["blocks"] = list(blocks)
        self._client.chat_postEphemeral(**kwargs)

    def upload(
        self,
        channel: str,
        filename: str,
        content: bytes,
        *,
        title: str,
        alt_text: str,
        comment: str = "",
        thread_ts: str | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {
            "channel": channel,
            "file": content,
            "filename": filename,
            "title": title,
            "alt_txt": alt_text,
        }
        if comment:
            kwargs["initial_comment"] = comment
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        self._client.files_upload_v2(**kwargs)

    def user_timezone(self, user: str) -> str | None:
        """The owner's Slack time zone, or None when it is unknown.

        Answers are cached (a zone rarely changes and users.info is rate limited); failures are not, so the
        next idle cycle asks again. None never means UTC: the idle cycle does not stop on an unknown zone.
        """
        with self._lock:
            if user in self._timezones:
                return self._timezones[user]
        try:
            tz = self._client.users_info(user=user)["user"].get("tz")
        except SlackApiError as exc:
            log.warning("users.info %s failed (%s); asked again next cycle", user, exc.response.get("error"))
            return None
        except Exception as exc:  # connection errors after slack_sdk's own retries: also unknown, not UTC
            log.warning("users.info %s failed (%s); asked again next cycle", user, exc)
            return None
        with self._lock:
            self._timezones[user] = tz
        return str(tz) if tz else None
