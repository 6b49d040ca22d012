"""``SlackStandIn``: a strict local Slack Web API on 127.0.0.1 for tests and the sandbox.

One stdlib ``ThreadingHTTPServer`` on a random port serves everything Slack would:

* ``/api/<method>``: the Web API (point ``WebClient(base_url=standin.api_url)`` here);
* ``/upload/v1/<token>``: the upload URLs ``files.getUploadURLExternal`` hands out;
* ``/response/<id>``: the ``response_url`` of every slash command and interaction it builds;
* ``/files/<id>/<name>``: ``url_private`` downloads (bot token required);
* ``/link/?ticket=…``: the Socket Mode WebSocket that ``apps.connections.open`` points to.

Everything is journaled and readable through the methods below, which return immutable snapshots.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from bot.local_server import LocalServer

from .api import ApiError, ApiResult, Params, WebApi
from .faults import DEFAULT_ERRORS, Fault, FaultPlan, RateLimiter
from .socket_mode import HandshakeError, SocketHub, SocketSession, validate_handshake
from .state import (
    JSON,
    Ack,
    Call,
    CallKind,
    Channel,
    Envelope,
    Ephemeral,
    Identity,
    Message,
    Notice,
    ResponsePost,
    ResponseUrl,
    StandInState,
    StoredFile,
    User,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

_MAX_BODY_BYTES = 64 * 1024 * 1024
_ENVELOPE_TYPES = frozenset({"slash_commands", "interactive", "events_api"})


def _redact_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    redacted: dict[str, str] = {}
    for name, value in headers:
        if name.lower() == "authorization":
            scheme, _, token = value.partition(" ")
            prefix = token.split("-", 1)[0] if token else ""
            redacted[name] = f"{scheme} {prefix}-<redacted>" if prefix else f"{scheme} <redacted>"
        else:
            redacted[name] = value
    return redacted


def _parse_multipart(body: bytes, content_type: str) -> JSON:
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise ApiError("invalid_form_data")
    params: JSON = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        params[name] = payload if part.get_filename() is not None else payload.decode("utf-8", "replace")
    return params


def parse_params(query: str, body: bytes, content_type: str) -> JSON:
    """Merge query-string and body arguments the way Slack accepts them (JSON, form or multipart)."""
    params: JSON = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    if not body:
        return params
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError("invalid_json") from exc
        if not isinstance(data, dict):
            raise ApiError("json_not_object")
        params.update(data)
    elif media_type in ("application/x-www-form-urlencoded", ""):
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError as exc:
            raise ApiError("invalid_charset") from exc
        params.update({k: v[-1] for k, v in form.items()})
    elif media_type == "multipart/form-data":
        params.update(_parse_multipart(body, content_type))
    else:
        raise ApiError("invalid_post_type")
    return params


def _fault_result(status: int, error: str | None, retry_after: int | None) -> ApiResult:
    if status == 200:
        return ApiResult(200, {"ok": False, "error": error or "internal_error"})
    headers = {"Retry-After": str(retry_after)} if status == 429 and retry_after is not None else {}
    return ApiResult(
        status, {"ok": False, "error": error or DEFAULT_ERRORS.get(status, "internal_error")}, headers
    )


def _as_user(value: User | Mapping[str, Any]) -> User:
    return value if isinstance(value, User) else User(**dict(value))


def _as_channel(value: Channel | Mapping[str, Any]) -> Channel:
    if isinstance(value, Channel):
        return value
    data = dict(value)
    if data.get("members") is not None:
        data["members"] = frozenset(data["members"])
    return Channel(**data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: SlackStandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout tests) makes our late write fail; that is expected.
        logger.debug("stand-in request from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "SlackStandIn/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self.server.standin._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.standin._handle(self, "POST")

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY_BYTES:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length > 0 else b""

    def reply(
        self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def reply_json(self, status: int, body: JSON, headers: Mapping[str, str] | None = None) -> None:
        self.reply(status, json.dumps(body).encode("utf-8"), "application/json; charset=utf-8", headers)

    def drop(self) -> None:
        """Close the connection without an answer, as a network failure would."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            logger.debug("connection already gone while dropping it")


class SlackStandIn(LocalServer):
    """A local, strict, stateful Slack for the bot's real ``slack_sdk`` clients.

    Thread-safe; start it, point ``WebClient(base_url=standin.api_url, token=standin.bot_token)``
    at it, drive the bot with :mod:`bot.slack.standin.delivery`, and read what happened through the
    snapshot methods (``messages``, ``ephemerals``, ``files``, ``calls``, ``response_posts``…).

    ``clock`` is the wall clock used for message timestamps, outage windows and ``response_url``
    expiry (inject a fake to simulate a long outage without sleeping); rate limiting always uses
    real monotonic time because slack_sdk's retry handler sleeps in real time.
    """

    label = "Slack stand-in"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        bot_token: str = "xoxb-standin",
        app_token: str = "xapp-standin",
        signing_secret: str = "standin-signing-secret",
        identity: Identity | None = None,
        rate_limit_per_channel: float | None = 1.0,
        rate_limit_burst: int = 3,
        users: Iterable[User | Mapping[str, Any]] = (),
        channels: Iterable[Channel | Mapping[str, Any]] = (),
        clock: Callable[[], float] = time.time,
        seed: int = 0,
        response_url_max_uses: int = 5,
        response_url_ttl: float = 1800.0,
    ) -> None:
        if not bot_token.startswith("xoxb-"):
            raise ValueError("bot_token must be a bot token (xoxb-…)")
        if not app_token.startswith("xapp-"):
            raise ValueError("app_token must be an app-level token (xapp-…)")
        super().__init__(host, port)
        self.bot_token = bot_token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.identity = identity or Identity()
        self._state = StandInState(self.identity, clock=clock, seed=seed)
        bot_user = User(
            id=self.identity.bot_user_id,
            name=self.identity.bot_name,
            real_name=self.identity.bot_name,
            is_bot=True,
        )
        self._state.seed([bot_user, *(_as_user(u) for u in users)], [_as_channel(c) for c in channels])
        self._faults = FaultPlan(clock)
        self._limiter = RateLimiter(rate_limit_per_channel, rate_limit_burst)
        self._hub = SocketHub()
        self._api = WebApi(
            self._state,
            limiter=self._limiter,
            hub=self._hub,
            base_url=lambda: self.url,
            bot_token=bot_token,
            app_token=app_token,
            response_url_max_uses=response_url_max_uses,
            response_url_ttl=response_url_ttl,
        )
        self._stopping = threading.Event()

    # -- lifecycle ----------------------------------------------------------------------------

    def _make_server(self) -> _Server:
        server = _Server((self.host, self._requested_port), _Handler)
        server.standin = self
        return server

    def _before_stop(self) -> None:
        self._stopping.set()
        self._hub.close_all()

    @property
    def api_url(self) -> str:
        """The ``base_url`` for ``slack_sdk.WebClient``."""
        return f"{self.url}/api/"

    # -- seeding ------------------------------------------------------------------------------

    def add_user(self, user: User | Mapping[str, Any]) -> User:
        record = _as_user(user)
        with self._state.lock:
            self._state.users[record.id] = record
            self._state.touch()
        return record

    def add_channel(self, channel: Channel | Mapping[str, Any]) -> Channel:
        record = _as_channel(channel)
        with self._state.lock:
            self._state.channels[record.id] = record
            if record.is_im and record.user is not None:
                self._state.dm_index[frozenset({record.user})] = record.id
            self._state.touch()
        return record

    def add_message(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        blocks: list[JSON] | None = None,
        thread_ts: str | None = None,
    ) -> Message:
        """A message written by a person (not the bot), e.g. to react to or thread under."""
        with self._state.lock:
            if channel not in self._state.channels:
                raise KeyError(f"unknown channel {channel}")
            if user not in self._state.users:
                raise KeyError(f"unknown user {user}")
            parent = self._state.messages.get((channel, thread_ts)) if thread_ts else None
            if thread_ts is not None and parent is None:
                raise KeyError(f"no message {thread_ts} in {channel}")
            message = Message(
                channel=channel,
                ts=self._state.new_ts(),
                text=text,
                user=user,
                blocks=list(blocks or []),
                thread_ts=thread_ts,
                parent_user_id=parent.user if parent is not None else None,
                team=self.identity.team_id,
                source="seed",
            )
            self._state.put_message(message)
            return message

    # -- reading state ------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Bumped by every state change; see :meth:`wait_for_change`."""
        return self._state.version

    def users(self) -> list[User]:
        with self._state.lock:
            return list(self._state.users.values())

    def channels(self) -> list[Channel]:
        with self._state.lock:
            return list(self._state.channels.values())

    def messages(self, channel: str | None = None, thread_ts: str | None = None) -> list[Message]:
        """Channel/DM messages in timestamp order; ``thread_ts`` gives a parent and its replies."""
        return self._state.list_messages(channel, thread_ts)

    def message(self, channel: str, ts: str) -> Message | None:
        with self._state.lock:
            return self._state.messages.get((channel, ts))

    def message_json(self, message: Message) -> JSON:
        """The message as Slack's API would return it (files expanded)."""
        with self._state.lock:
            return self._api.render_message(message)

    def ephemerals(self, user: str | None = None, channel: str | None = None) -> list[Ephemeral]:
        return self._state.list_ephemerals(user, channel)

    def ephemeral(self, ts: str) -> Ephemeral | None:
        with self._state.lock:
            return self._state.ephemerals.get(ts)

    def dm_channel(self, user: str) -> str | None:
        """The bot's DM channel with ``user``, once opened."""
        return self._state.dm_channel(user)

    def dms(self, user: str) -> list[Message]:
        channel = self._state.dm_channel(user)
        return self._state.list_messages(channel, None) if channel is not None else []

    def files(self) -> list[StoredFile]:
        with self._state.lock:
            return list(self._state.files.values())

    def file(self, file_id: str) -> StoredFile | None:
        with self._state.lock:
            return self._state.files.get(file_id)

    def calls(self, method: str | None = None) -> list[Call]:
        with self._state.lock:
            return [c for c in self._state.calls if method is None or c.method == method]

    def response_posts(self, response_url_id: str | None = None) -> list[ResponsePost]:
        with self._state.lock:
            return [p for p in self._state.response_posts if response_url_id in (None, p.response_url_id)]

    def notices(self) -> list[Notice]:
        with self._state.lock:
            return list(self._state.notices)

    def envelopes(self) -> list[Envelope]:
        with self._state.lock:
            return list(self._state.envelopes.values())

    def acks(self, envelope_id: str | None = None) -> list[Ack]:
        with self._state.lock:
            return [a for a in self._state.acks if envelope_id in (None, a.envelope_id)]

    def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0, description: str = "") -> T:
        """Wait (woken by each state change, no polling) until ``predicate()`` is truthy; return it.

        Raises ``TimeoutError`` naming ``description``.
        """
        return self._state.wait_for(predicate, timeout, description)

    def wait_for_change(self, since: int, timeout: float) -> int:
        return self._state.wait_for_change(since, timeout)

    def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> Ack:
        acks = self.wait_for(lambda: self.acks(envelope_id), timeout, f"ack of envelope {envelope_id}")
        return acks[0]

    def reset(self) -> None:
        """Back to the seeded workspace: no messages, calls, faults or rate-limit history.

        Socket Mode connections stay open.
        """
        self._faults.clear()
        self._limiter.reset()
        self._state.reset()

    # -- interactions -------------------------------------------------------------------------

    def issue_response_url(
        self,
        *,
        channel: str,
        user: str,
        kind: str,
        original_ts: str | None = None,
        original_ephemeral: bool = False,
    ) -> ResponseUrl:
        """Register a ``response_url`` for an interaction the tests or sandbox are about to deliver."""
        with self._state.lock:
            response_id = self._state.new_token()
            record = ResponseUrl(
                id=response_id,
                url=f"{self.url}/response/{response_id}",
                channel=channel,
                user=user,
                kind=kind,
                created=self._state.clock(),
                original_ts=original_ts,
                original_ephemeral=original_ephemeral,
            )
            self._state.response_urls[response_id] = record
            self._state.touch()
            return record

    def new_trigger_id(self) -> str:
        """A ``trigger_id`` in Slack's ``<seconds>.<digits>.<hex>`` shape."""
        with self._state.lock:
            seconds = int(self._state.clock())
            digits = self._state.new_token(9).encode("ascii").hex()[:9]
            return f"{seconds}.{int(digits, 16) % 10**9:09d}.{self._state.new_uuid().replace('-', '')[:21]}"

    def new_action_ts(self) -> str:
        """A fresh Slack timestamp for ``action_ts`` / ``event_ts``."""
        return self._state.new_ts()

    def new_event_id(self) -> str:
        return self._state.new_id("Ev", 10)

    def response_url_id(self, url: str) -> str | None:
        prefix = f"{self.url}/response/"
        return url[len(prefix) :] if url.startswith(prefix) else None

    def apply_command_reply(
        self, response_url_id: str, body: JSON | str, *, via: str = "command_reply"
    ) -> ApiResult:
        """Apply what a bot answered synchronously to a slash command (HTTP body or Socket Mode ack
        payload), as Slack does: a message to the invoking user, ephemeral unless ``in_channel``."""
        with self._state.lock:
            response_url = self._state.response_urls.get(response_url_id)
            if response_url is None:
                raise KeyError(f"unknown response_url id {response_url_id}")
        payload: JSON = {"text": body} if isinstance(body, str) else body
        return self._api.apply_reply(response_url, payload, via=via)

    # -- faults -------------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        status: int = 500,
        retry_after: int | None = 1,
        error: str | None = None,
        count: int = 1,
    ) -> None:
        """Answer the next ``count`` calls of ``method`` (``"*"``: any Web API method) with ``status``.

        429 carries ``Retry-After: retry_after`` (whole seconds, 0 allowed) and ``ratelimited``;
        ``status=200, error="not_in_channel"`` gives an ``ok: false`` answer. Nothing is applied.
        """
        self._faults.fail_next(method, status=status, retry_after=retry_after, error=error, count=count)

    def delay_next(self, method: str, seconds: float, *, count: int = 1) -> None:
        """Apply the next call, then hold its answer ``seconds`` (client timeouts after the effect)."""
        self._faults.delay_next(method, seconds, count=count)

    def drop_next(self, method: str, *, count: int = 1, applied: bool = False) -> None:
        """Close the connection instead of answering; ``applied`` says whether the call took effect."""
        self._faults.drop_next(method, count=count, applied=applied)

    def set_down(self, down: bool, *, status: int = 503) -> None:
        """Answer every HTTP request with ``status`` until ``set_down(False)``."""
        self._faults.set_down(down, status=status)

    def outage(self, start: float | datetime, end: float | datetime, *, status: int = 503) -> None:
        """Be down while ``start <= clock() < end`` (epoch seconds or aware datetimes)."""
        self._faults.outage(start, end, status=status)

    def clear_faults(self) -> None:
        self._faults.clear()

    def pending_faults(self, method: str | None = None) -> int:
        return self._faults.pending(method)

    # -- Socket Mode --------------------------------------------------------------------------

    def socket_connected(self) -> bool:
        return self._hub.latest() is not None

    def socket_sessions(self) -> list[str]:
        """Ids of the open Socket Mode connections, oldest first (envelopes go to the newest)."""
        return [session.id for session in self._hub.active()]

    def wait_for_socket(self, timeout: float = 5.0) -> None:
        self.wait_for(self.socket_connected, timeout, "a Socket Mode client to connect")

    def push_envelope(
        self,
        type: str,
        payload: JSON,
        *,
        accepts_response_payload: bool | None = None,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
    ) -> str:
        """Send an envelope to the newest connected client; return its ``envelope_id``."""
        if type not in _ENVELOPE_TYPES:
            raise ValueError(f"envelope type must be one of {sorted(_ENVELOPE_TYPES)}")
        session = self._hub.latest()
        if session is None:
            raise RuntimeError("no Socket Mode client is connected")
        if accepts_response_payload is None:
            accepts_response_payload = type == "slash_commands" or (
                type == "interactive" and payload.get("type") == "view_submission"
            )
        with self._state.lock:
            envelope_id = self._state.new_uuid()
            envelope = Envelope(
                envelope_id=envelope_id,
                type=type,
                payload=payload,
                sent_at=self._state.clock(),
                session_id=session.id,
                accepts_response_payload=accepts_response_payload,
                retry_attempt=retry_attempt,
                retry_reason=retry_reason,
            )
            self._state.envelopes[envelope_id] = envelope
            self._state.touch()
        message: JSON = {
            "envelope_id": envelope_id,
            "payload": payload,
            "type": type,
            "accepts_response_payload": accepts_response_payload,
        }
        if type == "events_api":
            message["retry_attempt"] = retry_attempt or 0
            message["retry_reason"] = retry_reason or ""
        session.send_text(json.dumps(message))
        return envelope_id

    def close_sockets(self, code: int = 1001, reason: str = "") -> None:
        """Close every Socket Mode connection from Slack's side (a dropped connection)."""
        self._hub.close_all(code, reason)

    def socket_disconnect(self, reason: str = "refresh_requested") -> None:
        """Tell every client to reconnect, as Slack does before it rotates a connection.

        The old connections stay open (but get no new envelopes) until the next client connects,
        then are closed from this side, as Slack closes a refreshed connection.
        """
        message = json.dumps(
            {"type": "disconnect", "reason": reason, "debug_info": {"host": "slack-standin"}}
        )
        for session in self._hub.drain():
            session.send_text(message)

    def _on_socket_text(self, session: SocketSession, text: str) -> None:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        now = self._state.clock()
        if not isinstance(data, dict):
            self._state.record(Ack(None, None, now, session.id, known=False, raw={"_text": text}))
            return
        envelope_id = data.get("envelope_id")
        payload = data.get("payload") if isinstance(data.get("payload"), dict) else None
        with self._state.lock:
            envelope = self._state.envelopes.get(envelope_id) if isinstance(envelope_id, str) else None
        ack = Ack(
            envelope_id if isinstance(envelope_id, str) else None,
            payload,
            now,
            session.id,
            known=envelope is not None,
            raw=data,
        )
        self._state.record(ack)
        if envelope is not None and payload and envelope.type == "slash_commands":
            response_url = envelope.payload.get("response_url")
            response_id = self.response_url_id(response_url) if isinstance(response_url, str) else None
            if response_id is not None:
                self.apply_command_reply(response_id, payload, via="socket_ack")

    # -- HTTP dispatch ------------------------------------------------------------------------

    def _journal(
        self,
        handler: _Handler,
        kind: CallKind,
        method: str,
        http_method: str,
        params: JSON,
        status: int,
        response: JSON | str | None,
        *,
        token_kind: str | None = None,
        fault: str | None = None,
    ) -> None:
        safe_params = {k: ("<redacted>" if k == "token" else v) for k, v in params.items()}
        safe_params = {
            k: (f"<{len(v)} bytes>" if isinstance(v, bytes) else v) for k, v in safe_params.items()
        }
        self._state.record(
            Call(
                seq=self._state.next_seq(),
                time=self._state.clock(),
                kind=kind,
                method=method,
                http_method=http_method,
                path=handler.path,
                headers=_redact_headers(handler.headers.items()),
                params=safe_params,
                status=status,
                response=response,
                token_kind=token_kind,
                fault=fault,
            )
        )

    def _handle(self, handler: _Handler, http_method: str) -> None:
        parts = urlsplit(handler.path)
        path = parts.path
        if path.startswith("/api/"):
            self._handle_api(handler, http_method, path[len("/api/") :], parts.query)
        elif path.startswith("/upload/v1/") and http_method == "POST":
            self._handle_upload(handler, path[len("/upload/v1/") :])
        elif path.startswith("/response/") and http_method == "POST":
            self._handle_response_url(handler, path[len("/response/") :])
        elif path.startswith("/files/") and http_method == "GET":
            self._handle_file_download(handler, path[len("/files/") :])
        elif path.rstrip("/") == "/link" and http_method == "GET":
            self._handle_websocket(handler, parts.query)
        else:
            handler.read_body()
            self._journal(handler, "unknown", path, http_method, {}, 404, "not found")
            handler.reply(404, b"not found", "text/plain; charset=utf-8")

    def _handle_api(self, handler: _Handler, http_method: str, method: str, query: str) -> None:
        """Outage, then the scripted fault, then the method itself; every outcome is journaled."""
        body = handler.read_body()
        params: JSON = {}
        parse_error: ApiError | None = None
        try:
            params = parse_params(query, body, handler.headers.get("Content-Type", ""))
        except ApiError as exc:
            parse_error = exc
        token = self._token(handler, params)
        token_kind = self._api.token_kind(token)

        def journal(status: int, response: JSON | None, fault: str | None) -> None:
            self._journal(
                handler,
                "api",
                method,
                http_method,
                params,
                status,
                response,
                token_kind=token_kind,
                fault=fault,
            )

        down = self._faults.down_status()
        if down is not None:
            result = _fault_result(down, None, None)
            journal(result.status, result.body, "down")
            handler.reply_json(result.status, result.body, result.headers)
            return
        fault: Fault | None = self._faults.take(method)
        described = fault.describe() if fault is not None else None
        if fault is not None and fault.kind == "fail":
            result = _fault_result(fault.status, fault.error, fault.retry_after)
            journal(result.status, result.body, described)
            handler.reply_json(result.status, result.body, result.headers)
            return
        if fault is not None and fault.kind == "drop" and not fault.applied:
            journal(0, None, described)
            handler.drop()
            return
        result = (
            parse_error.result() if parse_error is not None else self._api.call(method, Params(params), token)
        )
        if fault is not None and fault.kind == "drop":
            journal(0, result.body, described)
            handler.drop()
            return
        journal(result.status, result.body, described)
        if fault is not None and fault.kind == "delay":
            self._stopping.wait(fault.seconds)
        handler.reply_json(result.status, result.body, result.headers)

    @staticmethod
    def _token(handler: _Handler, params: JSON) -> str | None:
        header = handler.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            params.pop("token", None)
            return value.strip()
        token = params.pop("token", None)
        return str(token) if token else None

    def _handle_upload(self, handler: _Handler, token: str) -> None:
        body = handler.read_body()
        down = self._faults.down_status()
        if down is not None:
            status, text = down, "service unavailable"
        else:
            status, text = self._api.receive_upload(token, body, handler.headers.get("Content-Type", ""))
        self._journal(handler, "upload", "files.upload", "POST", {"bytes": len(body)}, status, text)
        handler.reply(status, text.encode("utf-8"), "text/plain; charset=utf-8")

    def _handle_response_url(self, handler: _Handler, response_id: str) -> None:
        body = handler.read_body()
        down = self._faults.down_status()
        payload: object = None
        if down is not None:
            result = _fault_result(down, None, None)
        else:
            try:
                payload = json.loads(body) if body else None
            except (json.JSONDecodeError, UnicodeDecodeError):
                payload = None
            result = self._api.post_to_response_url(response_id, payload)
        params = payload if isinstance(payload, dict) else {}
        self._journal(handler, "response_url", "response_url", "POST", params, result.status, result.body)
        handler.reply_json(result.status, result.body, result.headers)

    def _handle_file_download(self, handler: _Handler, rest: str) -> None:
        file_id = rest.split("/", 1)[0]
        token = self._token(handler, {})
        stored = self.file(file_id)
        if self._api.token_kind(token) != "bot":
            status, body, content_type = 403, b"invalid_auth", "text/plain; charset=utf-8"
        elif stored is None or stored.content is None or not stored.completed:
            status, body, content_type = 404, b"file_not_found", "text/plain; charset=utf-8"
        else:
            status, body, content_type = 200, stored.content, stored.mimetype
        self._journal(handler, "file_download", "files.download", "GET", {"file": file_id}, status, None)
        handler.reply(status, body, content_type)

    def _handle_websocket(self, handler: _Handler, query: str) -> None:
        ticket = parse_qs(query).get("ticket", [""])[-1]
        try:
            accept = validate_handshake("GET", dict(handler.headers.items()))
        except HandshakeError as exc:
            self._journal(handler, "websocket", "socket_mode", "GET", {}, 400, str(exc))
            handler.reply(400, str(exc).encode("utf-8"), "text/plain; charset=utf-8")
            return
        if not self._hub.redeem(ticket):
            self._journal(handler, "websocket", "socket_mode", "GET", {}, 401, "invalid or used ticket")
            handler.reply(401, b"invalid or used ticket", "text/plain; charset=utf-8")
            return
        handler.send_response(101, "Switching Protocols")
        handler.send_header("Upgrade", "websocket")
        handler.send_header("Connection", "Upgrade")
        handler.send_header("Sec-WebSocket-Accept", accept)
        handler.end_headers()
        handler.close_connection = True
        session = SocketSession(
            self._state.new_token(16), handler.connection, handler.rfile, self._on_socket_text
        )
        connections = self._hub.add(session)
        self._journal(handler, "websocket", "socket_mode", "GET", {}, 101, None)
        hello = {
            "type": "hello",
            "num_connections": connections,
            "debug_info": {"host": "slack-standin", "build_number": 1, "approximate_connection_time": 3600},
            "connection_info": {"app_id": self.identity.app_id},
        }
        with self._state.lock:
            self._state.touch()
        try:
            session.send_text(json.dumps(hello))
            session.run()
        except OSError:
            logger.debug("Socket Mode session %s ended abruptly", session.id)
        finally:
            self._hub.remove(session)
            with self._state.lock:
                self._state.touch()
