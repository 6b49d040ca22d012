"""The Slack Web API methods the bot uses, with Slack's response shapes and error names.

Transport-free: the HTTP handler parses a request into :class:`Params` and a token, and this module
answers with an :class:`ApiResult`. Where Slack is lenient in a way that hides bot bugs the
stand-in is stricter, and says so in the method's docstring (for example a ``thread_ts`` that names
no message is refused instead of silently posting to the channel).
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from .blockkit import BlocksFormatError, parse_blocks, validate_blocks
from .faults import RateLimiter
from .socket_mode import SocketHub
from .state import (
    JSON,
    Channel,
    Ephemeral,
    Message,
    Notice,
    ResponsePost,
    ResponseUrl,
    StandInState,
    StoredFile,
    is_valid_ts,
)

MAX_MESSAGE_TEXT = 40000
MAX_MPIM_USERS = 8
OAUTH_SCOPES = (
    "chat:write,chat:write.public,commands,im:write,users:read,channels:read,groups:read,files:write"
)


@dataclass(frozen=True)
class ApiResult:
    status: int
    body: JSON
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """A Slack ``ok: false`` answer (HTTP 200 unless ``status`` says otherwise)."""

    def __init__(
        self,
        error: str,
        *,
        status: int = 200,
        extra: JSON | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.extra = extra or {}
        self.headers = headers or {}

    def result(self) -> ApiResult:
        return ApiResult(self.status, {"ok": False, "error": self.error, **self.extra}, dict(self.headers))


def truthy(value: object) -> bool:
    """Slack's boolean arguments: JSON booleans, or ``"true"``/``"1"`` from form bodies."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return False


class Params:
    """Method arguments as slack_sdk sends them: JSON values, or strings from a form or query."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = dict(data)

    def raw(self, name: str) -> Any:
        return self.data.get(name)

    def string(self, name: str) -> str | None:
        value = self.data.get(name)
        if value is None or isinstance(value, dict | list):
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        text = str(value).strip()
        return text or None

    def flag(self, name: str) -> bool:
        return truthy(self.data.get(name))

    def parsed(self, name: str, error: str = "invalid_arguments") -> Any:
        value = self.data.get(name)
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ApiError(error) from exc
        return value


@dataclass(frozen=True)
class Content:
    """The message body arguments of a post or update, validated."""

    text: str | None
    blocks: list[JSON] | None
    attachments: list[JSON] | None
    warnings: tuple[str, ...]

    @property
    def has_content(self) -> bool:
        return bool(self.text) or bool(self.blocks) or bool(self.attachments)


def parse_upload_body(body: bytes, content_type: str) -> bytes | None:
    """The file bytes of an upload: the raw body, or the first file part of a multipart form."""
    if not content_type.lower().startswith("multipart/form-data"):
        return body
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        return None
    for part in message.iter_parts():
        if part.get_filename() is not None:
            payload = part.get_payload(decode=True)
            return payload if isinstance(payload, bytes) else None
    return None


class WebApi:
    """Implements the methods against a :class:`StandInState`; one instance per stand-in."""

    def __init__(
        self,
        state: StandInState,
        *,
        limiter: RateLimiter,
        hub: SocketHub,
        base_url: Callable[[], str],
        bot_token: str,
        app_token: str,
        response_url_max_uses: int = 5,
        response_url_ttl: float = 1800.0,
    ) -> None:
        self.state = state
        self.identity = state.identity
        self.limiter = limiter
        self.hub = hub
        self.base_url = base_url
        self.bot_token = bot_token
        self.app_token = app_token
        self.response_url_max_uses = response_url_max_uses
        self.response_url_ttl = response_url_ttl
        self._methods: dict[str, Callable[[Params], JSON]] = {
            "auth.test": self.auth_test,
            "chat.postMessage": self.chat_post_message,
            "chat.update": self.chat_update,
            "chat.postEphemeral": self.chat_post_ephemeral,
            "chat.delete": self.chat_delete,
            "chat.getPermalink": self.chat_get_permalink,
            "conversations.open": self.conversations_open,
            "conversations.info": self.conversations_info,
            "users.info": self.users_info,
            "files.getUploadURLExternal": self.files_get_upload_url_external,
            "files.completeUploadExternal": self.files_complete_upload_external,
            "apps.connections.open": self.apps_connections_open,
        }

    @property
    def methods(self) -> frozenset[str]:
        return frozenset(self._methods)

    def token_kind(self, token: str | None) -> str | None:
        if token is None:
            return None
        if token == self.bot_token:
            return "bot"
        if token == self.app_token:
            return "app"
        return "invalid"

    def call(self, method: str, params: Params, token: str | None) -> ApiResult:
        """Authenticate and run one method; every Slack-level error is an HTTP 200 ``ok: false``."""
        handler = self._methods.get(method)
        if handler is None:
            return ApiResult(200, {"ok": False, "error": "unknown_method", "req_method": method})
        try:
            self._authenticate(method, token)
            with self.state.lock:
                body = handler(params)
        except ApiError as exc:
            return exc.result()
        headers = {"X-OAuth-Scopes": OAUTH_SCOPES} if method == "auth.test" else {}
        return ApiResult(200, {"ok": True, **body}, headers)

    def _authenticate(self, method: str, token: str | None) -> None:
        kind = self.token_kind(token)
        if kind is None:
            raise ApiError("not_authed")
        if kind == "invalid":
            raise ApiError("invalid_auth")
        wanted = "app" if method == "apps.connections.open" else "bot"
        if kind != wanted:
            raise ApiError("not_allowed_token_type")

    # -- helpers ------------------------------------------------------------------------------

    def _channel(self, channel_id: str | None) -> Channel:
        channel = self.state.channels.get(channel_id or "")
        if channel is None:
            raise ApiError("channel_not_found")
        return channel

    def _channel_for_post(self, target: str | None) -> Channel:
        """Channel ids, or a user id, which Slack turns into the app's DM with that user."""
        if target and target[0] in "UW" and target in self.state.users:
            return self._open_dm(target)[0]
        return self._channel(target)

    def _writable(self, channel: Channel) -> None:
        if channel.is_archived:
            raise ApiError("is_archived")
        if not channel.is_im and not channel.is_member:
            raise ApiError("not_in_channel")

    def _content(self, p: Params, method: str, *, kept_text: str = "") -> Content:
        """Validate text/blocks/attachments; ``kept_text`` is an update's surviving fallback text."""
        raw_text = p.raw("text")
        text = None if raw_text is None else str(raw_text)
        if text is not None and len(text) > MAX_MESSAGE_TEXT:
            raise ApiError("msg_too_long")
        try:
            parsed = parse_blocks(p.raw("blocks"))
        except BlocksFormatError as exc:
            raise ApiError("invalid_blocks_format", extra=_metadata([str(exc)])) from exc
        blocks: list[JSON] | None = None
        warnings: tuple[str, ...] = ()
        if parsed is not None:
            report = validate_blocks(
                parsed,
                new_id=self.state.new_block_id,
                has_text_fallback=bool(text if text is not None else kept_text),
            )
            if not report.ok:
                raise ApiError(
                    "invalid_blocks",
                    extra={"errors": list(report.errors), **_metadata(report.response_messages())},
                )
            blocks = report.blocks
            warnings = tuple(f"{method}: {w}" for w in report.warnings)
        attachments = p.parsed("attachments", error="invalid_attachments")
        if attachments is not None and not (
            isinstance(attachments, list) and all(isinstance(a, dict) for a in attachments)
        ):
            raise ApiError("invalid_attachments")
        return Content(text=text, blocks=blocks, attachments=attachments, warnings=warnings)

    def _thread_parent(self, channel: Channel, thread_ts: str | None) -> Message | None:
        """Stricter than Slack, which may post a stray ``thread_ts`` as a top-level message."""
        if thread_ts is None:
            return None
        if not is_valid_ts(thread_ts):
            raise ApiError("thread_not_found")
        parent = self.state.messages.get((channel.id, thread_ts))
        if parent is None:
            raise ApiError("thread_not_found")
        if parent.is_reply:
            raise ApiError("cannot_reply_to_message")
        return parent

    def _notice(self, method: str, channel: str | None, ts: str | None, warnings: tuple[str, ...]) -> None:
        for warning in warnings:
            self.state.record(Notice(method, channel, ts, warning, self.state.clock()))

    def render_message(self, message: Message) -> JSON:
        names = {c.id: c.name for c in self.state.channels.values()}
        files = [
            self.state.files[f].to_api(self.base_url(), self.identity.team_id, names)
            for f in message.files
            if f in self.state.files
        ]
        return message.to_api(files)

    def _bot_message(
        self,
        channel: Channel,
        content: Content,
        *,
        thread: Message | None,
        source: str,
        reply_broadcast: bool = False,
        metadata: JSON | None = None,
        files: tuple[str, ...] = (),
    ) -> Message:
        ident = self.identity
        message = Message(
            channel=channel.id,
            ts=self.state.new_ts(),
            text=content.text or "",
            user=ident.bot_user_id,
            blocks=content.blocks or [],
            attachments=content.attachments or [],
            thread_ts=thread.ts if thread is not None else None,
            parent_user_id=thread.user if thread is not None else None,
            reply_broadcast=reply_broadcast,
            bot_id=ident.bot_id,
            bot_profile=ident.bot_profile(),
            app_id=ident.app_id,
            team=ident.team_id,
            files=files,
            metadata=metadata,
            source=source,
            warnings=content.warnings,
        )
        self.state.put_message(message)
        self._notice(source, channel.id, message.ts, content.warnings)
        return message

    def _open_dm(self, user_id: str) -> tuple[Channel, bool]:
        key = frozenset({user_id})
        existing = self.state.dm_index.get(key)
        if existing is not None:
            return self.state.channels[existing], True
        channel = Channel(
            id=self.state.new_id("D"),
            is_im=True,
            user=user_id,
            created=int(self.state.clock()),
        )
        self.state.channels[channel.id] = channel
        self.state.dm_index[key] = channel.id
        self.state.touch()
        return channel, False

    # -- methods ------------------------------------------------------------------------------

    def auth_test(self, p: Params) -> JSON:
        ident = self.identity
        return {
            "url": f"{self.base_url()}/",
            "team": ident.team_name,
            "user": ident.bot_name,
            "team_id": ident.team_id,
            "user_id": ident.bot_user_id,
            "bot_id": ident.bot_id,
            "is_enterprise_install": False,
        }

    def chat_post_message(self, p: Params) -> JSON:
        """Rate limited per channel (~1/s with a small burst) before anything else is looked at."""
        channel = self._channel_for_post(p.string("channel"))
        self._writable(channel)
        retry_after = self.limiter.acquire(channel.id)
        if retry_after is not None:
            raise ApiError("ratelimited", status=429, headers={"Retry-After": str(retry_after)})
        content = self._content(p, "chat.postMessage")
        if not content.has_content:
            raise ApiError("no_text")
        thread = self._thread_parent(channel, p.string("thread_ts"))
        metadata = p.parsed("metadata", error="invalid_metadata_format")
        if metadata is not None and not isinstance(metadata, dict):
            raise ApiError("invalid_metadata_format")
        message = self._bot_message(
            channel,
            content,
            thread=thread,
            source="chat.postMessage",
            reply_broadcast=thread is not None and p.flag("reply_broadcast"),
            metadata=metadata,
        )
        return {"channel": channel.id, "ts": message.ts, "message": self.render_message(message)}

    def chat_update(self, p: Params) -> JSON:
        """Omitted ``blocks`` keep the old blocks (Slack's documented rule); ``blocks=[]`` clears them.

        A text-only update of a message that has blocks is recorded as a notice: Slack shows the old
        blocks and uses the new text only as a notification fallback, which is rarely what a bot means.
        """
        channel = self._channel(p.string("channel"))
        ts = p.string("ts")
        message = self.state.messages.get((channel.id, ts or ""))
        if message is None:
            raise ApiError("message_not_found")
        if message.user != self.identity.bot_user_id:
            raise ApiError("cant_update_message")
        content = self._content(p, "chat.update", kept_text=message.text)
        if content.text is None and content.blocks is None and content.attachments is None:
            raise ApiError("no_text")
        blocks = content.blocks if content.blocks is not None else message.blocks
        text = content.text if content.text is not None else message.text
        attachments = content.attachments if content.attachments is not None else message.attachments
        if not (text or blocks or attachments or message.files):
            raise ApiError("no_text")
        warnings = content.warnings
        if content.text is not None and content.blocks is None and message.blocks:
            warnings += (
                "chat.update: text was sent without blocks, so Slack keeps the previous blocks on screen",
            )
        updated = replace(
            message,
            text=text,
            blocks=blocks,
            attachments=attachments,
            edited_ts=self.state.new_ts(),
            warnings=message.warnings + warnings,
        )
        self.state.messages[(channel.id, message.ts)] = updated
        self.state.touch()
        self._notice("chat.update", channel.id, message.ts, warnings)
        return {
            "channel": channel.id,
            "ts": message.ts,
            "text": text,
            "message": self.render_message(updated),
        }

    def chat_post_ephemeral(self, p: Params) -> JSON:
        channel = self._channel(p.string("channel"))
        user = p.string("user")
        if user is None or user not in self.state.users:
            raise ApiError("user_not_found")
        self._writable(channel)
        if not channel.has_member(user):
            raise ApiError("user_not_in_channel")
        content = self._content(p, "chat.postEphemeral")
        if not content.has_content:
            raise ApiError("no_text")
        thread = self._thread_parent(channel, p.string("thread_ts"))
        ephemeral = Ephemeral(
            channel=channel.id,
            ts=self.state.new_ts(),
            user=user,
            text=content.text or "",
            blocks=content.blocks or [],
            attachments=content.attachments or [],
            thread_ts=thread.ts if thread is not None else None,
            warnings=content.warnings,
        )
        self.state.ephemerals[ephemeral.ts] = ephemeral
        self.state.touch()
        self._notice("chat.postEphemeral", channel.id, ephemeral.ts, content.warnings)
        return {"message_ts": ephemeral.ts}

    def chat_delete(self, p: Params) -> JSON:
        channel = self._channel(p.string("channel"))
        ts = p.string("ts") or ""
        message = self.state.messages.get((channel.id, ts))
        if message is None:
            raise ApiError("message_not_found")
        if message.user != self.identity.bot_user_id:
            raise ApiError("cant_delete_message")
        self._remove_message(message)
        return {"channel": channel.id, "ts": ts}

    def _remove_message(self, message: Message) -> None:
        del self.state.messages[(message.channel, message.ts)]
        if message.is_reply and message.thread_ts is not None:
            parent = self.state.messages.get((message.channel, message.thread_ts))
            if parent is not None:
                remaining = [
                    m
                    for m in self.state.messages.values()
                    if m.channel == parent.channel and m.thread_ts == parent.ts and m.is_reply
                ]
                self.state.messages[(parent.channel, parent.ts)] = replace(
                    parent,
                    thread_ts=parent.ts if remaining else None,
                    reply_count=len(remaining),
                    reply_users=tuple(dict.fromkeys(m.user for m in remaining)),
                    latest_reply=max((m.ts for m in remaining), default=None),
                )
        self.state.touch()

    def chat_get_permalink(self, p: Params) -> JSON:
        channel = self._channel(p.string("channel"))
        ts = p.string("message_ts") or ""
        if (channel.id, ts) not in self.state.messages:
            raise ApiError("message_not_found")
        return {
            "channel": channel.id,
            "permalink": f"{self.base_url()}/archives/{channel.id}/p{ts.replace('.', '')}",
        }

    def conversations_open(self, p: Params) -> JSON:
        return_im = p.flag("return_im")
        channel_id = p.string("channel")
        if channel_id is not None:
            channel = self._channel(channel_id)
            if not (channel.is_im or channel.is_mpim):
                raise ApiError("channel_not_found")
            return {"no_op": True, "already_open": True, "channel": self._open_answer(channel, return_im)}
        users = [u.strip() for u in (p.string("users") or "").split(",") if u.strip()]
        if not users:
            raise ApiError("users_list_not_supplied")
        for user_id in users:
            user = self.state.users.get(user_id)
            if user is None:
                raise ApiError("user_not_found")
            if user.deleted:
                raise ApiError("user_disabled")
        if len(users) > MAX_MPIM_USERS:
            raise ApiError("too_many_users")
        if len(users) == 1:
            channel, existed = self._open_dm(users[0])
        else:
            channel, existed = self._open_mpim(users)
        answer: JSON = {"channel": self._open_answer(channel, return_im)}
        if existed:
            answer = {"no_op": True, "already_open": True, **answer}
        return answer

    def _open_answer(self, channel: Channel, return_im: bool) -> JSON:
        return channel.to_api() if return_im else {"id": channel.id}

    def _open_mpim(self, users: list[str]) -> tuple[Channel, bool]:
        key = frozenset(users)
        existing = self.state.dm_index.get(key)
        if existing is not None:
            return self.state.channels[existing], True
        names = sorted(self.state.users[u].name for u in key)
        channel = Channel(
            id=self.state.new_id("C"),
            name="mpdm-" + "--".join(names) + "-1",
            is_mpim=True,
            members=key | {self.identity.bot_user_id},
            created=int(self.state.clock()),
        )
        self.state.channels[channel.id] = channel
        self.state.dm_index[key] = channel.id
        self.state.touch()
        return channel, False

    def conversations_info(self, p: Params) -> JSON:
        return {"channel": self._channel(p.string("channel")).to_api()}

    def users_info(self, p: Params) -> JSON:
        user = self.state.users.get(p.string("user") or "")
        if user is None:
            raise ApiError("user_not_found")
        bot_id = self.identity.bot_id if user.id == self.identity.bot_user_id else None
        return {"user": user.to_api(self.identity.team_id, self.state.clock(), bot_id)}

    def files_get_upload_url_external(self, p: Params) -> JSON:
        filename = p.string("filename")
        length_arg = p.string("length")
        if filename is None or length_arg is None:
            raise ApiError("invalid_arguments")
        try:
            length = int(length_arg)
        except ValueError as exc:
            raise ApiError("invalid_arguments") from exc
        if length < 1:
            raise ApiError("invalid_arguments")
        file_id = self.state.new_id("F")
        token = self.state.new_token()
        self.state.files[file_id] = StoredFile(
            id=file_id,
            name=filename,
            length=length,
            created=int(self.state.clock()),
            user=self.identity.bot_user_id,
            alt_txt=p.string("alt_txt"),
            snippet_type=p.string("snippet_type"),
            mimetype=mimetypes.guess_type(filename)[0] or "application/octet-stream",
        )
        self.state.upload_tokens[token] = file_id
        self.state.touch()
        return {"upload_url": f"{self.base_url()}/upload/v1/{token}", "file_id": file_id}

    def receive_upload(self, token: str, body: bytes, content_type: str) -> tuple[int, str]:
        """Step two of the external upload: the raw POST of the bytes to the issued URL."""
        with self.state.lock:
            file_id = self.state.upload_tokens.get(token)
            if file_id is None:
                return 404, "upload URL not found or already used"
            content = parse_upload_body(body, content_type)
            if content is None:
                return 400, "no file part in multipart upload"
            stored = self.state.files[file_id]
            if len(content) != stored.length:
                return 400, f"expected {stored.length} bytes, received {len(content)}"
            del self.state.upload_tokens[token]
            self.state.files[file_id] = replace(stored, content=content)
            self.state.touch()
            return 200, f"OK - {len(content)}"

    def files_complete_upload_external(self, p: Params) -> JSON:
        """Shares into ``channel_id`` / ``channels`` as one file message per channel."""
        entries = p.parsed("files")
        if not isinstance(entries, list) or not entries:
            raise ApiError("invalid_arguments")
        pending: list[tuple[StoredFile, str | None]] = []
        for entry in entries:
            if not isinstance(entry, dict):
                raise ApiError("invalid_arguments")
            stored = self.state.files.get(str(entry.get("id", "")))
            if stored is None or stored.content is None or stored.completed:
                raise ApiError("file_not_found")
            title = entry.get("title")
            pending.append((stored, str(title) if title is not None else None))
        targets = [c.strip() for c in (p.string("channels") or "").split(",") if c.strip()]
        if p.string("channel_id") is not None:
            targets.insert(0, p.string("channel_id") or "")
        channels = [self._channel_for_post(t) for t in dict.fromkeys(targets)]
        thread_ts = p.string("thread_ts")
        if thread_ts is not None and len(channels) != 1:
            raise ApiError("invalid_arguments")
        for channel in channels:
            self._writable(channel)
        threads = [self._thread_parent(c, thread_ts) for c in channels]
        comment = p.string("initial_comment")
        if comment is not None:
            content = Content(text=comment, blocks=None, attachments=None, warnings=())
            if len(comment) > MAX_MESSAGE_TEXT:
                raise ApiError("msg_too_long")
        else:
            content = self._content(Params({"blocks": p.raw("blocks")}), "files.completeUploadExternal")
            content = replace(content, warnings=())
        file_ids = tuple(stored.id for stored, _ in pending)
        shares: list[tuple[str, str]] = []
        for channel, thread in zip(channels, threads, strict=True):
            message = self._bot_message(
                channel, content, thread=thread, source="files.completeUploadExternal", files=file_ids
            )
            shares.append((channel.id, message.ts))
        names = {c.id: c.name for c in self.state.channels.values()}
        answer: list[JSON] = []
        for stored, title in pending:
            done = replace(stored, completed=True, title=title or stored.name, shares=tuple(shares))
            self.state.files[stored.id] = done
            answer.append(done.to_api(self.base_url(), self.identity.team_id, names))
        self.state.touch()
        return {"files": answer}

    def apps_connections_open(self, p: Params) -> JSON:
        ticket = self.state.new_token(32)
        self.hub.issue(ticket)
        ws_base = "ws" + self.base_url().removeprefix("http")
        return {"url": f"{ws_base}/link/?ticket={ticket}&app_id={self.identity.app_id}"}

    # -- response_url and synchronous replies ---------------------------------------------------

    def post_to_response_url(self, response_url_id: str, payload: object) -> ApiResult:
        """A ``respond()`` POST: counted against Slack's five uses in thirty minutes."""
        with self.state.lock:
            response_url = self.state.response_urls.get(response_url_id)
            if response_url is None:
                return ApiResult(404, {"ok": False, "error": "no_service"})
            now = self.state.clock()
            if now - response_url.created > self.response_url_ttl:
                return self._reject(
                    response_url, payload, ApiError("expired_url", status=404), "response_url"
                )
            if response_url.uses >= self.response_url_max_uses:
                return self._reject(response_url, payload, ApiError("used_url", status=404), "response_url")
            self.state.response_urls[response_url_id] = replace(response_url, uses=response_url.uses + 1)
            return self.apply_reply(response_url, payload, via="response_url")

    def apply_reply(self, response_url: ResponseUrl, payload: object, *, via: str) -> ApiResult:
        """Apply a message Slack received for an interaction: a ``respond()`` body, a slash
        command's synchronous HTTP reply, or a Socket Mode ack payload."""
        with self.state.lock:
            if not isinstance(payload, dict):
                return self._reject(response_url, payload, ApiError("invalid_payload", status=400), via)
            try:
                outcome, ts = self._apply(response_url, payload, via)
            except ApiError as exc:
                if exc.status == 200:
                    exc.status = 400
                return self._reject(response_url, payload, exc, via)
            self.state.record(
                ResponsePost(
                    seq=self.state.next_seq(),
                    response_url_id=response_url.id,
                    payload=payload,
                    time=self.state.clock(),
                    status=200,
                    outcome=outcome,
                    ts=ts,
                    via=via,
                )
            )
            return ApiResult(200, {"ok": True})

    def _reject(self, response_url: ResponseUrl, payload: object, exc: ApiError, via: str) -> ApiResult:
        self.state.record(
            ResponsePost(
                seq=self.state.next_seq(),
                response_url_id=response_url.id,
                payload=payload if isinstance(payload, dict) else {"_raw": payload},
                time=self.state.clock(),
                status=exc.status,
                outcome=f"rejected:{exc.error}",
                via=via,
            )
        )
        return exc.result()

    def _apply(self, response_url: ResponseUrl, payload: JSON, via: str) -> tuple[str, str | None]:
        params = Params(payload)
        response_type = params.string("response_type") or "ephemeral"
        if response_type not in ("ephemeral", "in_channel"):
            raise ApiError("invalid_response_type")
        content = self._content(params, via)
        if params.flag("delete_original"):
            if content.has_content:  # refuse a bad follow-up before deleting anything
                self._thread_parent(self._channel(response_url.channel), params.string("thread_ts"))
            self._delete_original(response_url)
            if not content.has_content:
                return "deleted", None
            outcome, ts = self._post_reply(
                response_url, content, response_type, params.string("thread_ts"), via
            )
            return f"deleted+{outcome}", ts
        if params.flag("replace_original"):
            if not content.has_content:
                raise ApiError("no_text")
            return "replaced", self._replace_original(response_url, content, via)
        if not content.has_content:
            raise ApiError("no_text")
        return self._post_reply(response_url, content, response_type, params.string("thread_ts"), via)

    def _original(self, response_url: ResponseUrl) -> Message | Ephemeral:
        ts = response_url.original_ts
        found: Message | Ephemeral | None = None
        if ts is not None and response_url.original_ephemeral:
            found = self.state.ephemerals.get(ts)
        elif ts is not None:
            found = self.state.messages.get((response_url.channel, ts))
        if found is None:
            raise ApiError("message_not_found")
        return found

    def _delete_original(self, response_url: ResponseUrl) -> None:
        original = self._original(response_url)
        if isinstance(original, Ephemeral):
            del self.state.ephemerals[original.ts]
            self.state.touch()
        else:
            if original.user != self.identity.bot_user_id:
                raise ApiError("cant_delete_message")
            self._remove_message(original)

    def _replace_original(self, response_url: ResponseUrl, content: Content, via: str) -> str:
        """``replace_original`` replaces the whole message: omitted blocks are gone afterwards."""
        original = self._original(response_url)
        edited = self.state.new_ts()
        if isinstance(original, Ephemeral):
            self.state.ephemerals[original.ts] = replace(
                original,
                text=content.text or "",
                blocks=content.blocks or [],
                attachments=content.attachments or [],
                edited_ts=edited,
                source=via,
                warnings=original.warnings + content.warnings,
            )
        else:
            if original.user != self.identity.bot_user_id:
                raise ApiError("cant_update_message")
            self.state.messages[(original.channel, original.ts)] = replace(
                original,
                text=content.text or "",
                blocks=content.blocks or [],
                attachments=content.attachments or [],
                edited_ts=edited,
                warnings=original.warnings + content.warnings,
            )
        self.state.touch()
        self._notice(via, original.channel, original.ts, content.warnings)
        return original.ts

    def _post_reply(
        self,
        response_url: ResponseUrl,
        content: Content,
        response_type: str,
        thread_ts: str | None,
        via: str,
    ) -> tuple[str, str]:
        channel = self._channel(response_url.channel)
        thread = self._thread_parent(channel, thread_ts)
        if response_type == "in_channel":
            message = self._bot_message(channel, content, thread=thread, source=via)
            return "in_channel", message.ts
        ephemeral = Ephemeral(
            channel=channel.id,
            ts=self.state.new_ts(),
            user=response_url.user,
            text=content.text or "",
            blocks=content.blocks or [],
            attachments=content.attachments or [],
            thread_ts=thread.ts if thread is not None else None,
            source=via,
            warnings=content.warnings,
        )
        self.state.ephemerals[ephemeral.ts] = ephemeral
        self.state.touch()
        self._notice(via, channel.id, ephemeral.ts, content.warnings)
        return "ephemeral", ephemeral.ts


def _metadata(messages: list[str]) -> JSON:
    return {"response_metadata": {"messages": messages}}
