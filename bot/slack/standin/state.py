"""The stand-in's workspace state: users, channels, messages, ephemerals, files, interactions.

Every record is a frozen dataclass that is *replaced*, never mutated, when Slack would change it
(an update, a new reply), so a snapshot handed to a test or to the sandbox page never changes under
its reader. All writes happen under one lock; every write bumps ``version`` and wakes waiters, which
is what ``wait_for`` and the sandbox's long-polling build on.
"""

from __future__ import annotations

import copy
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

JSON = dict[str, Any]
T = TypeVar("T")

_ID_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
_BLOCK_ID_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ0123456789"

CallKind = Literal["api", "upload", "response_url", "file_download", "websocket", "unknown"]


@dataclass(frozen=True)
class Identity:
    """Who the bot is in the stand-in workspace; ``auth.test`` and every bot message use it."""

    team_id: str = "T0STANDIN1"
    team_name: str = "Stand-in Workspace"
    team_domain: str = "standin"
    bot_user_id: str = "U0STANDBOT"
    bot_id: str = "B0STANDBOT"
    app_id: str = "A0STANDAPP"
    bot_name: str = "runctl"

    def bot_profile(self) -> JSON:
        return {
            "id": self.bot_id,
            "app_id": self.app_id,
            "name": self.bot_name,
            "deleted": False,
            "team_id": self.team_id,
        }


@dataclass(frozen=True)
class User:
    """A workspace member. ``tz`` is an IANA zone name; ``tz_offset`` is derived from it."""

    id: str
    name: str
    real_name: str = ""
    tz: str = "UTC"
    is_admin: bool = False
    is_owner: bool = False
    is_bot: bool = False
    deleted: bool = False
    email: str | None = None

    def __post_init__(self) -> None:
        if not self.id or self.id[0] not in "UW":
            raise ValueError(f"user ids start with U or W: {self.id!r}")
        ZoneInfo(self.tz)  # fail at seeding time, not at users.info time

    def tz_offset(self, now: float) -> int:
        offset = datetime.fromtimestamp(now, UTC).astimezone(ZoneInfo(self.tz)).utcoffset()
        return int(offset.total_seconds()) if offset is not None else 0

    def to_api(self, team_id: str, now: float, bot_id: str | None = None) -> JSON:
        """``users.info``'s user object; ``tz_label`` is the zone abbreviation (Slack spells it out)."""
        local = datetime.fromtimestamp(now, UTC).astimezone(ZoneInfo(self.tz))
        profile: JSON = {
            "real_name": self.real_name,
            "real_name_normalized": self.real_name,
            "display_name": self.name,
            "display_name_normalized": self.name,
            "team": team_id,
        }
        if self.email is not None:
            profile["email"] = self.email
        if self.is_bot and bot_id is not None:
            profile["bot_id"] = bot_id
        return {
            "id": self.id,
            "team_id": team_id,
            "name": self.name,
            "deleted": self.deleted,
            "real_name": self.real_name,
            "tz": self.tz,
            "tz_label": local.tzname() or self.tz,
            "tz_offset": self.tz_offset(now),
            "profile": profile,
            "is_admin": self.is_admin,
            "is_owner": self.is_owner,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "updated": int(now),
        }


@dataclass(frozen=True)
class Channel:
    """A conversation. ``members`` of ``None`` means every workspace user is in it.

    ``is_member`` is whether the *bot* is in it: posting to a channel it is not in gives
    ``not_in_channel``, as in Slack.
    """

    id: str
    name: str = ""
    is_private: bool = False
    is_im: bool = False
    is_mpim: bool = False
    user: str | None = None
    members: frozenset[str] | None = None
    is_member: bool = True
    is_archived: bool = False
    created: int = 0
    topic: str = ""
    purpose: str = ""

    def __post_init__(self) -> None:
        if not self.id or self.id[0] not in "CGD":
            raise ValueError(f"conversation ids start with C, G or D: {self.id!r}")

    def has_member(self, user_id: str) -> bool:
        if self.is_im:
            return user_id == self.user
        return self.members is None or user_id in self.members

    def to_api(self) -> JSON:
        if self.is_im:
            return {
                "id": self.id,
                "created": self.created,
                "is_im": True,
                "is_org_shared": False,
                "user": self.user,
                "is_user_deleted": False,
                "priority": 0,
            }
        return {
            "id": self.id,
            "name": self.name,
            "name_normalized": self.name,
            "is_channel": not self.is_private and not self.is_mpim,
            "is_group": self.is_private and not self.is_mpim,
            "is_im": False,
            "is_mpim": self.is_mpim,
            "is_private": self.is_private or self.is_mpim,
            "created": self.created,
            "creator": "",
            "is_archived": self.is_archived,
            "is_general": False,
            "unlinked": 0,
            "is_shared": False,
            "is_org_shared": False,
            "is_ext_shared": False,
            "is_pending_ext_shared": False,
            "is_member": self.is_member,
            "topic": {"value": self.topic, "creator": "", "last_set": 0},
            "purpose": {"value": self.purpose, "creator": "", "last_set": 0},
        }


@dataclass(frozen=True)
class Message:
    """A channel or DM message, as ``conversations.history`` would show it.

    A thread parent carries ``thread_ts == ts`` once it has replies, as in Slack, so filtering on
    ``thread_ts`` returns the parent and its replies.
    """

    channel: str
    ts: str
    text: str
    user: str
    blocks: list[JSON] = field(default_factory=list)
    attachments: list[JSON] = field(default_factory=list)
    thread_ts: str | None = None
    parent_user_id: str | None = None
    reply_count: int = 0
    reply_users: tuple[str, ...] = ()
    latest_reply: str | None = None
    reply_broadcast: bool = False
    bot_id: str | None = None
    bot_profile: JSON | None = None
    app_id: str | None = None
    team: str = ""
    files: tuple[str, ...] = ()
    metadata: JSON | None = None
    edited_ts: str | None = None
    source: str = "chat.postMessage"
    warnings: tuple[str, ...] = ()

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    @property
    def is_bot_message(self) -> bool:
        return self.bot_id is not None

    def to_api(self, files: Iterable[JSON] = ()) -> JSON:
        data: JSON = {
            "type": "message",
            "text": self.text,
            "user": self.user,
            "ts": self.ts,
            "team": self.team,
        }
        if self.bot_id is not None:
            data["bot_id"] = self.bot_id
            data["app_id"] = self.app_id
            data["bot_profile"] = copy.deepcopy(self.bot_profile)
        if self.blocks:
            data["blocks"] = copy.deepcopy(self.blocks)
        if self.attachments:
            data["attachments"] = copy.deepcopy(self.attachments)
        if self.thread_ts is not None:
            data["thread_ts"] = self.thread_ts
        if self.is_reply and self.parent_user_id is not None:
            data["parent_user_id"] = self.parent_user_id
        if self.reply_count:
            data["reply_count"] = self.reply_count
            data["reply_users"] = list(self.reply_users)
            data["reply_users_count"] = len(self.reply_users)
            data["latest_reply"] = self.latest_reply
        if self.edited_ts is not None:
            data["edited"] = {"user": self.user, "ts": self.edited_ts}
        file_list = list(files)
        if file_list:
            data["files"] = file_list
            data["upload"] = True
        if self.metadata is not None:
            data["metadata"] = copy.deepcopy(self.metadata)
        return data


@dataclass(frozen=True)
class Ephemeral:
    """A message only ``user`` sees. Kept apart from channel history, as Slack does."""

    channel: str
    ts: str
    user: str
    text: str
    blocks: list[JSON] = field(default_factory=list)
    attachments: list[JSON] = field(default_factory=list)
    thread_ts: str | None = None
    source: str = "chat.postEphemeral"
    edited_ts: str | None = None
    warnings: tuple[str, ...] = ()

    def to_api(self, identity: Identity) -> JSON:
        data: JSON = {
            "type": "message",
            "subtype": "bot_message",
            "text": self.text,
            "ts": self.ts,
            "user": identity.bot_user_id,
            "bot_id": identity.bot_id,
            "app_id": identity.app_id,
        }
        if self.blocks:
            data["blocks"] = copy.deepcopy(self.blocks)
        if self.attachments:
            data["attachments"] = copy.deepcopy(self.attachments)
        if self.thread_ts is not None:
            data["thread_ts"] = self.thread_ts
        return data


@dataclass(frozen=True)
class StoredFile:
    """A file from the three-step external upload; ``content`` is what reached the upload URL."""

    id: str
    name: str
    length: int
    created: int
    user: str
    title: str = ""
    alt_txt: str | None = None
    snippet_type: str | None = None
    mimetype: str = "application/octet-stream"
    content: bytes | None = None
    completed: bool = False
    shares: tuple[tuple[str, str], ...] = ()

    @property
    def filetype(self) -> str:
        return self.name.rsplit(".", 1)[-1].lower() if "." in self.name else "binary"

    def to_api(self, base_url: str, team_id: str, channel_names: dict[str, str]) -> JSON:
        public: dict[str, list[JSON]] = {}
        private: dict[str, list[JSON]] = {}
        channels: list[str] = []
        groups: list[str] = []
        ims: list[str] = []
        for channel, ts in self.shares:
            share = {"ts": ts, "channel_name": channel_names.get(channel, ""), "team_id": team_id}
            if channel.startswith("C"):
                public.setdefault(channel, []).append(share)
                channels.append(channel)
            else:
                private.setdefault(channel, []).append(share)
                (ims if channel.startswith("D") else groups).append(channel)
        shares: JSON = {}
        if public:
            shares["public"] = public
        if private:
            shares["private"] = private
        url = f"{base_url}/files/{self.id}/{self.name}"
        data: JSON = {
            "id": self.id,
            "created": self.created,
            "timestamp": self.created,
            "name": self.name,
            "title": self.title or self.name,
            "mimetype": self.mimetype,
            "filetype": self.filetype,
            "pretty_type": self.filetype.upper(),
            "user": self.user,
            "user_team": team_id,
            "editable": False,
            "size": len(self.content) if self.content is not None else self.length,
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": bool(public),
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": url,
            "url_private_download": f"{url}?download=1",
            "permalink": f"{base_url}/files/{self.user}/{self.id}/{self.name}",
            "channels": channels,
            "groups": groups,
            "ims": ims,
            "shares": shares,
            "comments_count": 0,
            "has_rich_preview": False,
            "file_access": "visible",
        }
        if self.alt_txt is not None:
            data["alt_txt"] = self.alt_txt
        return data


@dataclass(frozen=True)
class ResponseUrl:
    """A ``response_url`` the stand-in handed out with a slash command or an interaction.

    ``original_ts`` names the message an interaction came from (``None`` for slash commands);
    ``original_ephemeral`` says whether that message is an ephemeral.
    """

    id: str
    url: str
    channel: str
    user: str
    kind: str
    created: float
    original_ts: str | None = None
    original_ephemeral: bool = False
    uses: int = 0


@dataclass(frozen=True)
class ResponsePost:
    """One POST the bot made to a ``response_url`` (or a synchronous command reply Slack applied).

    ``outcome`` is what the stand-in did with it: ``replaced``, ``deleted``, ``ephemeral``,
    ``in_channel``, ``deleted+ephemeral`` / ``deleted+in_channel``, or ``rejected:<error>``.
    """

    seq: int
    response_url_id: str
    payload: JSON
    time: float
    status: int
    outcome: str
    ts: str | None = None
    via: str = "response_url"


@dataclass(frozen=True)
class Envelope:
    """A Socket Mode envelope pushed to a connected client."""

    envelope_id: str
    type: str
    payload: JSON
    sent_at: float
    session_id: str
    accepts_response_payload: bool
    retry_attempt: int | None = None
    retry_reason: str | None = None


@dataclass(frozen=True)
class Ack:
    """A message the Socket Mode client sent back; ``known`` is false for unknown envelope ids."""

    envelope_id: str | None
    payload: JSON | None
    time: float
    session_id: str
    known: bool
    raw: JSON


@dataclass(frozen=True)
class Call:
    """One journaled HTTP request to the stand-in, tokens redacted."""

    seq: int
    time: float
    kind: CallKind
    method: str
    http_method: str
    path: str
    headers: dict[str, str]
    params: JSON
    status: int
    response: JSON | str | None
    token_kind: str | None = None
    fault: str | None = None

    @property
    def ok(self) -> bool:
        return isinstance(self.response, dict) and self.response.get("ok") is True

    @property
    def error(self) -> str | None:
        if isinstance(self.response, dict):
            err = self.response.get("error")
            return err if isinstance(err, str) else None
        return None


@dataclass(frozen=True)
class Notice:
    """A warning the stand-in recorded without failing the call (e.g. blocks without a text fallback)."""

    method: str
    channel: str | None
    ts: str | None
    text: str
    time: float


class StandInState:
    """Thread-safe store behind the stand-in. The Web API layer mutates it under ``lock``."""

    def __init__(
        self,
        identity: Identity,
        *,
        clock: Callable[[], float] = time.time,
        seed: int = 0,
    ) -> None:
        self.identity = identity
        self.clock = clock
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._seed = seed
        self._rng = random.Random(seed)
        self._last_ts_micros = 0
        self._seq = 0
        self.version = 0
        self.users: dict[str, User] = {}
        self.channels: dict[str, Channel] = {}
        self.dm_index: dict[frozenset[str], str] = {}
        self.messages: dict[tuple[str, str], Message] = {}
        self.ephemerals: dict[str, Ephemeral] = {}
        self.files: dict[str, StoredFile] = {}
        self.upload_tokens: dict[str, str] = {}
        self.response_urls: dict[str, ResponseUrl] = {}
        self.response_posts: list[ResponsePost] = []
        self.calls: list[Call] = []
        self.envelopes: dict[str, Envelope] = {}
        self.acks: list[Ack] = []
        self.notices: list[Notice] = []
        self._seed_users: list[User] = []
        self._seed_channels: list[Channel] = []

    # -- seeding and reset --------------------------------------------------------------------

    def seed(self, users: Iterable[User], channels: Iterable[Channel]) -> None:
        with self.lock:
            for user in users:
                self._seed_users.append(user)
                self.users[user.id] = user
            for channel in channels:
                self._seed_channels.append(channel)
                self._put_channel(channel)
            self.touch()

    def _put_channel(self, channel: Channel) -> None:
        self.channels[channel.id] = channel
        if channel.is_im and channel.user is not None:
            self.dm_index[frozenset({channel.user})] = channel.id

    def reset(self) -> None:
        """Forget everything that happened; keep the seeded users and channels."""
        with self.lock:
            self._rng = random.Random(self._seed)
            self.users = {u.id: u for u in self._seed_users}
            self.channels.clear()
            self.dm_index.clear()
            for channel in self._seed_channels:
                self._put_channel(channel)
            self.messages.clear()
            self.ephemerals.clear()
            self.files.clear()
            self.upload_tokens.clear()
            self.response_urls.clear()
            self.response_posts.clear()
            self.calls.clear()
            self.envelopes.clear()
            self.acks.clear()
            self.notices.clear()
            self.touch()

    # -- generators ---------------------------------------------------------------------------

    def touch(self) -> None:
        """Mark a change; caller holds the lock."""
        self.version += 1
        self.changed.notify_all()

    def next_seq(self) -> int:
        with self.lock:
            self._seq += 1
            return self._seq

    def new_id(self, prefix: str, length: int = 10) -> str:
        with self.lock:
            return prefix + "".join(self._rng.choice(_ID_ALPHABET) for _ in range(length))

    def new_block_id(self) -> str:
        with self.lock:
            return "".join(self._rng.choice(_BLOCK_ID_ALPHABET) for _ in range(5))

    def new_token(self, length: int = 24) -> str:
        with self.lock:
            return "".join(self._rng.choice(_BLOCK_ID_ALPHABET) for _ in range(length))

    def new_uuid(self) -> str:
        with self.lock:
            return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def new_ts(self) -> str:
        """A message timestamp from the clock, strictly increasing even within one microsecond."""
        with self.lock:
            micros = max(int(self.clock() * 1_000_000), self._last_ts_micros + 1)
            self._last_ts_micros = micros
            return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    # -- reads (snapshots) --------------------------------------------------------------------

    def list_messages(self, channel: str | None, thread_ts: str | None) -> list[Message]:
        with self.lock:
            found = [
                m
                for m in self.messages.values()
                if (channel is None or m.channel == channel)
                and (thread_ts is None or m.thread_ts == thread_ts)
            ]
        return sorted(found, key=lambda m: ts_key(m.ts))

    def list_ephemerals(self, user: str | None, channel: str | None) -> list[Ephemeral]:
        with self.lock:
            found = [
                e
                for e in self.ephemerals.values()
                if (user is None or e.user == user) and (channel is None or e.channel == channel)
            ]
        return sorted(found, key=lambda e: ts_key(e.ts))

    def dm_channel(self, user: str) -> str | None:
        with self.lock:
            return self.dm_index.get(frozenset({user}))

    def wait_for(self, predicate: Callable[[], T], timeout: float, description: str = "") -> T:
        """Block until ``predicate()`` is truthy (re-checked on every state change); return it."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                result = predicate()
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    what = f": {description}" if description else ""
                    raise TimeoutError(f"stand-in state did not match within {timeout:g}s{what}")
                self.changed.wait(remaining)

    def wait_for_change(self, since: int, timeout: float) -> int:
        """Return the version once it is past ``since`` (or the current one after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.version <= since:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.changed.wait(remaining)
            return self.version

    # -- writes used by the API layer ----------------------------------------------------------

    def put_message(self, message: Message) -> None:
        """Store a new message and, for a reply, update its parent's thread summary."""
        with self.lock:
            self.messages[(message.channel, message.ts)] = message
            if message.is_reply and message.thread_ts is not None:
                parent = self.messages.get((message.channel, message.thread_ts))
                if parent is not None:
                    users = parent.reply_users
                    if message.user not in users:
                        users = (*users, message.user)
                    self.messages[(parent.channel, parent.ts)] = replace(
                        parent,
                        thread_ts=parent.ts,
                        reply_count=parent.reply_count + 1,
                        reply_users=users,
                        latest_reply=message.ts,
                    )
            self.touch()

    def record(self, item: Call | ResponsePost | Ack | Notice) -> None:
        with self.lock:
            if isinstance(item, Call):
                self.calls.append(item)
            elif isinstance(item, ResponsePost):
                self.response_posts.append(item)
            elif isinstance(item, Ack):
                self.acks.append(item)
            else:
                self.notices.append(item)
            self.touch()


def ts_key(ts: str) -> tuple[int, int]:
    """Sort key for Slack timestamps (``"1700000000.000100"``)."""
    seconds, _, fraction = ts.partition(".")
    return int(seconds), int(fraction.ljust(6, "0")[:6] or "0")


def is_valid_ts(value: object) -> bool:
    if not isinstance(value, str):
        return False
    seconds, dot, fraction = value.partition(".")
    return bool(dot) and seconds.isdigit() and fraction.isdigit() and len(fraction) == 6
