"""The sandbox's Slack-like web page and its JSON API, on top of the Slack stand-in.

The page is a view of the stand-in's state (what Slack would show each person) plus two ways in: the
composer and the buttons. Both go through :mod:`bot.slack.standin.delivery`, so the bot receives the
same signed slash commands and ``block_actions`` payloads that Slack would send, and its answers (the
HTTP ack body of a command, ``response_url`` posts, Web API calls) land in the stand-in exactly as in
the end-to-end tests.

Routes (all on 127.0.0.1):

* ``GET /`` and ``GET /static/<app.js|app.css>``: the page; no asset is fetched from anywhere else.
* ``GET /api/config``: the workspace, the people of the user switcher, the verbs for autocomplete.
* ``GET /api/state?user=U…&since=<version>&wait=<s>``: what ``user`` sees; with ``since`` it is a long
  poll that answers as soon as the stand-in's version passes ``since`` (or after ``wait`` seconds).
* ``POST /api/command`` ``{"user", "text"}``: a slash command (or a plain message) from ``user``.
* ``POST /api/action`` ``{"user", "channel", "ts", "action_id", "block_id", "value"?, "ephemeral"?}``.
* ``GET /api/files/<id>``: the bytes of a file the bot uploaded (``files_upload_v2``).
"""

from __future__ import annotations

import copy
import json
import logging
import re
import threading
import urllib.error
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from http import HTTPStatus
from importlib import resources
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from bot.core.commands import VERBS, VerbSpec
from bot.local_server import LocalServer
from bot.sandbox.users import DEMO_PEOPLE, DemoPerson
from bot.slack.standin import Channel, Ephemeral, Message, SlackStandIn, StoredFile, User
from bot.slack.standin.delivery import (
    DeliveryResponse,
    SlackRequest,
    block_actions_request,
    send,
    slash_command_request,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)

JSON = dict[str, Any]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
BIND_HOSTS = frozenset({"127.0.0.1", "localhost"})
MAX_REQUEST_BYTES = 64 * 1024
MAX_COMMAND_TEXT = 4000
#: Slack gives a slash command or a click three seconds to be acknowledged.
SLACK_ACK_TIMEOUT = 3.0
_STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css"}
_FILE_URL_RE = re.compile(r"^/files/(F[A-Z0-9]+)(?:/|$)")
_MENTION_RE = re.compile(r"(?<![\w<@])@([a-z0-9][a-z0-9._-]*)", re.IGNORECASE)
_CHANNEL_RE = re.compile(r"(?<![\w<#&])#([a-z0-9][a-z0-9_-]*)", re.IGNORECASE)
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class ApiProblem(Exception):
    """A request the API refuses; becomes ``{"ok": false, "error": …}`` with ``status``."""

    def __init__(self, status: HTTPStatus, error: str, detail: str = "") -> None:
        super().__init__(detail or error)
        self.status = status
        self.error = error
        self.detail = detail


@cache
def _static(name: str) -> bytes:
    return resources.files("bot.sandbox").joinpath("static", name).read_bytes()


def slack_escape(text: str) -> str:
    """Slack encodes these three characters in message and command text before it delivers them."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _verb_view(spec: VerbSpec) -> JSON:
    return {
        "name": spec.name,
        "summary": spec.summary,
        "usage": spec.usage,
        "examples": list(spec.examples),
        "aliases": list(spec.aliases),
        "group": spec.group,
        "role": spec.role.value,
        "mutating": spec.mutating,
    }


def _user_view(user: User) -> JSON:
    return {
        "id": user.id,
        "name": user.name,
        "real_name": user.real_name or user.name,
        "tz": user.tz,
        "is_bot": user.is_bot,
    }


class SandboxApp:
    """The WSGI application behind the sandbox page (serve it with :class:`SandboxWeb` or any server).

    ``bot_url`` is the bot's Slack endpoint (``…/slack/events``), or a callable returning it when the
    bot's port is only known later. ``signing_secret`` defaults to the stand-in's. Thread-safe.
    """

    def __init__(
        self,
        standin: SlackStandIn,
        bot_url: str | Callable[[], str],
        signing_secret: str | None = None,
        *,
        channel_id: str,
        people: Sequence[DemoPerson] = DEMO_PEOPLE,
        command: str = "/runctl",
        verbs: Mapping[str, VerbSpec] = VERBS,
        ack_timeout: float = SLACK_ACK_TIMEOUT,
        max_wait: float = 25.0,
    ) -> None:
        if not command.startswith("/") or " " in command:
            raise ValueError("the slash command is one word starting with '/'")
        if not people:
            raise ValueError("the sandbox needs at least one person to act as")
        known_users = {u.id for u in standin.users()}
        missing = [p.id for p in people if p.id not in known_users]
        if missing:
            raise ValueError(f"people not in the stand-in workspace: {', '.join(missing)}")
        if channel_id not in {c.id for c in standin.channels()}:
            raise ValueError(f"channel {channel_id} is not in the stand-in workspace")
        self.standin = standin
        self._bot_url = bot_url
        self.signing_secret = signing_secret or standin.signing_secret
        self.channel_id = channel_id
        self.people = tuple(people)
        self.command = command
        self.verbs = verbs
        self.ack_timeout = ack_timeout
        self.max_wait = max_wait
        self._closing = threading.Event()
        self._people_ids = frozenset(p.id for p in self.people)

    @property
    def bot_url(self) -> str:
        return self._bot_url() if callable(self._bot_url) else self._bot_url

    def close(self) -> None:
        """Answer pending long polls now; later requests still work (they just don't wait)."""
        self._closing.set()

    # -- WSGI -----------------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/") or "/"
        try:
            self._check_host(environ)
            if method == "POST":
                self._check_post(environ)
            return self._route(method, path, environ, start_response)
        except ApiProblem as problem:
            body: JSON = {"ok": False, "error": problem.error}
            if problem.detail:
                body["detail"] = problem.detail
            return self._json(start_response, body, problem.status)
        except Exception:
            log.exception("sandbox request %s %s failed", method, path)
            return self._json(
                start_response, {"ok": False, "error": "internal_error"}, HTTPStatus.INTERNAL_SERVER_ERROR
            )

    def _route(
        self, method: str, path: str, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        if path == "/" and method == "GET":
            return self._bytes(start_response, _static("index.html"), "text/html; charset=utf-8", csp=True)
        if path.startswith("/static/") and method == "GET":
            name = path.removeprefix("/static/")
            if name not in _STATIC_FILES:
                raise ApiProblem(HTTPStatus.NOT_FOUND, "not_found")
            return self._bytes(start_response, _static(name), f"{_STATIC_FILES[name]}; charset=utf-8")
        if path == "/api/config" and method == "GET":
            return self._json(start_response, self.config())
        if path == "/api/state" and method == "GET":
            viewer = self._viewer(query.get("user"))
            since = _int_arg(query.get("since"), "since", default=-1)
            wait = min(float(_int_arg(query.get("wait"), "wait", default=0)), self.max_wait)
            if since >= 0 and wait > 0:
                self.wait_for_change(since, wait)
            return self._json(start_response, self.state(viewer))
        if path.startswith("/api/files/") and method == "GET":
            return self._file(path.removeprefix("/api/files/"), query, start_response)
        if path == "/api/command" and method == "POST":
            return self._json(start_response, self.run_command(_read_json(environ)))
        if path == "/api/action" and method == "POST":
            return self._json(start_response, self.click(_read_json(environ)))
        if path in ("/api/command", "/api/action", "/api/config", "/api/state"):
            raise ApiProblem(HTTPStatus.METHOD_NOT_ALLOWED, "method_not_allowed")
        raise ApiProblem(HTTPStatus.NOT_FOUND, "not_found")

    @staticmethod
    def _check_host(environ: WSGIEnvironment) -> None:
        """Refuse other host names: a page elsewhere could otherwise reach us by DNS rebinding."""
        host = environ.get("HTTP_HOST")
        if host is not None and _hostname(host) not in LOOPBACK_HOSTS:
            raise ApiProblem(HTTPStatus.FORBIDDEN, "forbidden_host", f"{host} is not a loopback address")

    @staticmethod
    def _check_post(environ: WSGIEnvironment) -> None:
        """Only our own page may post: JSON (which a cross-site form can't send) from our origin."""
        content_type = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            raise ApiProblem(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "json_required")
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None:
            parts = urlsplit(origin)
            if parts.hostname not in LOOPBACK_HOSTS or parts.netloc != environ.get("HTTP_HOST"):
                raise ApiProblem(HTTPStatus.FORBIDDEN, "forbidden_origin", f"{origin} may not post here")

    @staticmethod
    def _bytes(
        start_response: StartResponse,
        body: bytes,
        content_type: str,
        *,
        csp: bool = False,
        extra: Sequence[tuple[str, str]] = (),
    ) -> Iterable[bytes]:
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            *extra,
        ]
        if csp:
            headers.append(("Content-Security-Policy", _CSP))
        start_response("200 OK", headers)
        return [body]

    @staticmethod
    def _json(
        start_response: StartResponse, body: JSON, status: HTTPStatus = HTTPStatus.OK
    ) -> Iterable[bytes]:
        data = json.dumps(body, separators=(",", ":")).encode("utf-8")
        start_response(
            f"{status.value} {status.phrase}",
            [
                ("Content-Type", "application/json; charset=utf-8"),
                ("Content-Length", str(len(data))),
                ("Cache-Control", "no-store"),
                ("X-Content-Type-Options", "nosniff"),
            ],
        )
        return [data]

    # -- reading --------------------------------------------------------------------------------

    def config(self) -> JSON:
        """Everything the page needs once: workspace, channel, people, bot, verbs."""
        ident = self.standin.identity
        channel = self._channel_record()
        return {
            "workspace": {"id": ident.team_id, "name": ident.team_name, "domain": ident.team_domain},
            "channel": {
                "id": channel.id,
                "name": channel.name,
                "topic": channel.topic,
                "purpose": channel.purpose,
            },
            "bot": {"id": ident.bot_user_id, "name": ident.bot_name},
            "command": self.command,
            "people": [
                {**_user_view(p.user), "role": p.role, "title": p.title, "blurb": p.blurb}
                for p in self.people
            ],
            "verbs": [_verb_view(spec) for spec in self.verbs.values()],
        }

    def wait_for_change(self, since: int, timeout: float) -> int:
        """Long-poll helper: the stand-in's version once it is past ``since``, or at ``timeout``.

        Waits in short slices so that :meth:`close` releases every waiting request promptly.
        """
        remaining = timeout
        version = self.standin.version
        while version <= since and remaining > 0 and not self._closing.is_set():
            slice_seconds = min(0.5, remaining)
            version = self.standin.wait_for_change(since, slice_seconds)
            remaining -= slice_seconds
        return version

    def state(self, viewer: str) -> JSON:
        """What ``viewer`` sees: the channel (with threads), their ephemerals, their DMs with the bot."""
        if viewer not in self._people_ids:
            raise ApiProblem(HTTPStatus.BAD_REQUEST, "unknown_user", f"{viewer} is not a sandbox person")
        version = self.standin.version
        users = {u.id: _user_view(u) for u in self.standin.users()}
        channels = {c.id: c.name for c in self.standin.channels() if not c.is_im}
        dm_channel = self.standin.dm_channel(viewer)
        return {
            "version": version,
            "viewer": viewer,
            "channel": self._conversation(self.channel_id, viewer),
            "dm": self._conversation(dm_channel, viewer) if dm_channel is not None else None,
            "users": users,
            "channels": channels,
        }

    def _conversation(self, channel_id: str, viewer: str) -> JSON:
        messages = self.standin.messages(channel_id)
        replies: dict[str, list[JSON]] = {}
        top: list[Message] = []
        for message in messages:
            if message.is_reply and message.thread_ts is not None:
                replies.setdefault(message.thread_ts, []).append(self.message_view(message))
                if message.reply_broadcast:
                    top.append(message)
            else:
                top.append(message)
        views = []
        for message in top:
            view = self.message_view(message)
            if not message.is_reply:
                view["replies"] = replies.get(message.ts, [])
            views.append(view)
        own = self.standin.ephemerals(user=viewer, channel=channel_id)
        ephemerals = [self.ephemeral_view(e) for e in own]
        return {"id": channel_id, "messages": views, "ephemerals": ephemerals}

    def message_view(self, message: Message) -> JSON:
        return {
            "ts": message.ts,
            "channel": message.channel,
            "user": message.user,
            "text": message.text,
            "blocks": self._with_image_sources(message.blocks),
            "attachments": self._with_image_sources(message.attachments),
            "files": [self._file_view(f) for f in message.files],
            "edited": message.edited_ts is not None,
            "thread_ts": message.thread_ts,
            "is_reply": message.is_reply,
            "reply_broadcast": message.reply_broadcast,
            "reply_count": message.reply_count,
            "reply_users": list(message.reply_users),
            "latest_reply": message.latest_reply,
            "is_bot": message.is_bot_message,
            "ephemeral": False,
        }

    def ephemeral_view(self, ephemeral: Ephemeral) -> JSON:
        return {
            "ts": ephemeral.ts,
            "channel": ephemeral.channel,
            "user": self.standin.identity.bot_user_id,
            "recipient": ephemeral.user,
            "text": ephemeral.text,
            "blocks": self._with_image_sources(ephemeral.blocks),
            "attachments": self._with_image_sources(ephemeral.attachments),
            "files": [],
            "edited": ephemeral.edited_ts is not None,
            "thread_ts": ephemeral.thread_ts,
            "is_reply": ephemeral.thread_ts is not None,
            "is_bot": True,
            "ephemeral": True,
            "source": ephemeral.source,
        }

    def _file_view(self, file_id: str) -> JSON:
        stored = self.standin.file(file_id)
        if stored is None:
            return {"id": file_id, "name": "", "title": "", "missing": True}
        available = stored.content is not None and stored.completed
        return {
            "id": stored.id,
            "name": stored.name,
            "title": stored.title or stored.name,
            "mimetype": stored.mimetype,
            "size": len(stored.content) if stored.content is not None else stored.length,
            "is_image": stored.mimetype.startswith("image/"),
            "alt_txt": stored.alt_txt,
            "src": f"/api/files/{quote(stored.id)}" if available else None,
            "missing": not available,
        }

    def image_source(self, url: object = None, slack_file: object = None) -> str | None:
        """Where the page may load an image from, or None: only files the stand-in holds (and data:
        URLs) are shown; anything else would be a request to the outside world."""
        if isinstance(slack_file, dict):
            file_id = slack_file.get("id")
            if isinstance(file_id, str) and self.standin.file(file_id) is not None:
                return f"/api/files/{quote(file_id)}"
            url = slack_file.get("url")
        if not isinstance(url, str):
            return None
        if url.startswith("data:image/"):
            return url
        prefix = self.standin.url
        if url.startswith(prefix + "/"):
            match = _FILE_URL_RE.match(url[len(prefix) :])
            if match is not None and self.standin.file(match.group(1)) is not None:
                return f"/api/files/{quote(match.group(1))}"
        return None

    def _with_image_sources(self, items: list[JSON]) -> list[JSON]:
        """A copy of blocks (or attachments) where every image says what the page may load."""
        copied = copy.deepcopy(items)

        def visit(node: object) -> None:
            if isinstance(node, list):
                for item in node:
                    visit(item)
            elif isinstance(node, dict):
                if node.get("type") == "image":
                    node["sandbox_src"] = self.image_source(node.get("image_url"), node.get("slack_file"))
                for key in ("image_url", "thumb_url"):
                    if key in node and node.get("type") != "image":
                        node[f"sandbox_{key}"] = self.image_source(node[key])
                for value in node.values():
                    visit(value)

        visit(copied)
        return copied

    def _file(self, file_id: str, query: Mapping[str, str], start_response: StartResponse) -> Iterable[bytes]:
        stored = self.standin.file(file_id)
        if stored is None or stored.content is None or not stored.completed:
            raise ApiProblem(HTTPStatus.NOT_FOUND, "file_not_found")
        disposition = "attachment" if query.get("download") or not _inline_safe(stored) else "inline"
        filename = quote(stored.name)
        return self._bytes(
            start_response,
            stored.content,
            stored.mimetype,
            extra=[("Content-Disposition", f"{disposition}; filename*=UTF-8''{filename}")],
        )

    # -- acting ---------------------------------------------------------------------------------

    def run_command(self, body: JSON) -> JSON:
        """A line from the composer: ``/runctl …`` goes to the bot as Slack would send it; text without
        a leading slash is posted to the channel as the person's message."""
        user = self._viewer(body.get("user"))
        raw = body.get("text")
        if not isinstance(raw, str) or not raw.strip():
            raise ApiProblem(HTTPStatus.BAD_REQUEST, "no_text")
        if len(raw) > MAX_COMMAND_TEXT:
            raise ApiProblem(HTTPStatus.BAD_REQUEST, "msg_too_long")
        line = raw.strip()
        if not line.startswith("/"):
            message = self.standin.add_message(self.channel_id, user, self.escape_and_link(line))
            return {"ok": True, "kind": "message", "ts": message.ts}
        command, _, text = line.partition(" ")
        if command != self.command:
            return {
                "ok": False,
                "kind": "command",
                "error": "unknown_command",
                "detail": f"{command} is not a valid command.",
            }
        request = slash_command_request(
            self.standin,
            command=command,
            text=self.escape_and_link(text.strip()),
            user=user,
            channel=self.channel_id,
            signing_secret=self.signing_secret,
        )
        return {"kind": "command", **self._deliver(request)}

    def click(self, body: JSON) -> JSON:
        """A click on an interactive element the bot really rendered, delivered as ``block_actions``."""
        user = self._viewer(body.get("user"))
        channel = _string(body, "channel")
        ts = _string(body, "ts")
        action_id = _string(body, "action_id")
        block_id = body.get("block_id")
        value = body.get("value")
        if block_id is not None and not isinstance(block_id, str):
            raise ApiProblem(HTTPStatus.BAD_REQUEST, "invalid_block_id")
        if value is not None and not isinstance(value, str):
            raise ApiProblem(HTTPStatus.BAD_REQUEST, "invalid_value")
        allowed = {self.channel_id}
        dm = self.standin.dm_channel(user)
        if dm is not None:
            allowed.add(dm)
        if channel not in allowed:
            raise ApiProblem(HTTPStatus.FORBIDDEN, "channel_not_visible", f"{user} can't see {channel}")
        message: Message | Ephemeral | None
        if body.get("ephemeral"):
            message = self.standin.ephemeral(ts)
            if message is not None and (message.user != user or message.channel != channel):
                message = None
        else:
            message = self.standin.message(channel, ts)
        if message is None:
            raise ApiProblem(HTTPStatus.NOT_FOUND, "message_not_found")
        try:
            request = block_actions_request(
                self.standin,
                user=user,
                action_id=action_id,
                message=message,
                block_id=block_id,
                value=value,
                signing_secret=self.signing_secret,
            )
        except LookupError as exc:
            raise ApiProblem(HTTPStatus.NOT_FOUND, "action_not_found", str(exc)) from exc
        except ValueError as exc:
            raise ApiProblem(HTTPStatus.BAD_REQUEST, "unsupported_element", str(exc)) from exc
        return {"kind": "action", **self._deliver(request)}

    def escape_and_link(self, text: str) -> str:
        """What Slack delivers for typed text: ``& < >`` encoded, ``@name``/``#channel`` of known
        users and channels turned into ``<@U…|name>`` / ``<#C…|name>`` (the app's escaping setting)."""
        users = {u.name.lower(): u for u in self.standin.users() if not u.deleted}
        channels = {c.name.lower(): c for c in self.standin.channels() if c.name and not c.is_im}
        escaped = slack_escape(text)

        def user_link(match: re.Match[str]) -> str:
            found = users.get(match.group(1).lower())
            return f"<@{found.id}|{found.name}>" if found is not None else match.group(0)

        def channel_link(match: re.Match[str]) -> str:
            found = channels.get(match.group(1).lower())
            return f"<#{found.id}|{found.name}>" if found is not None else match.group(0)

        return _CHANNEL_RE.sub(channel_link, _MENTION_RE.sub(user_link, escaped))

    def _deliver(self, request: SlackRequest) -> JSON:
        """POST to the bot; failures become what Slack tells the person (``dispatch_failed``…)."""
        timed_out = {"ok": False, "error": "operation_timeout", "detail": "the app did not answer in time"}
        try:
            response: DeliveryResponse = send(self.standin, self.bot_url, request, timeout=self.ack_timeout)
        except TimeoutError:
            return timed_out
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                return timed_out
            return _dispatch_failed(f"the app is unreachable: {exc.reason}")
        except OSError as exc:
            return _dispatch_failed(f"the app is unreachable: {exc}")
        if response.status != 200:
            return {**_dispatch_failed(f"the app answered HTTP {response.status}"), "status": response.status}
        return {"ok": True, "status": response.status}

    def _viewer(self, value: object) -> str:
        if not isinstance(value, str) or value not in self._people_ids:
            raise ApiProblem(HTTPStatus.BAD_REQUEST, "unknown_user", "user must be one of the sandbox people")
        return value

    def _channel_record(self) -> Channel:
        for channel in self.standin.channels():
            if channel.id == self.channel_id:
                return channel
        raise ApiProblem(HTTPStatus.NOT_FOUND, "channel_not_found")


def _dispatch_failed(detail: str) -> JSON:
    return {"ok": False, "error": "dispatch_failed", "detail": detail}


def _inline_safe(stored: StoredFile) -> bool:
    """Images (not SVG, which can carry script) and plain text may be shown in the browser."""
    return (stored.mimetype.startswith("image/") and stored.mimetype != "image/svg+xml") or (
        stored.mimetype == "text/plain"
    )


def _hostname(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _int_arg(value: str | None, name: str, *, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ApiProblem(HTTPStatus.BAD_REQUEST, f"invalid_{name}") from exc


def _string(body: JSON, name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ApiProblem(HTTPStatus.BAD_REQUEST, f"invalid_{name}")
    return value


def _read_json(environ: WSGIEnvironment) -> JSON:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError as exc:
        raise ApiProblem(HTTPStatus.BAD_REQUEST, "invalid_content_length") from exc
    if length > MAX_REQUEST_BYTES:
        raise ApiProblem(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too_large")
    raw = environ["wsgi.input"].read(length) if length > 0 else b""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiProblem(HTTPStatus.BAD_REQUEST, "invalid_json") from exc
    if not isinstance(body, dict):
        raise ApiProblem(HTTPStatus.BAD_REQUEST, "json_not_object")
    return body


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class SandboxWeb(LocalServer):
    """Serves :class:`SandboxApp` on 127.0.0.1 (a thread per request, so long polls don't queue).

    ``port=0`` picks a free port; :attr:`url` says which. Only loopback addresses may be bound.
    """

    label = "sandbox page"
    poll_interval = 0.1

    def __init__(
        self,
        standin: SlackStandIn,
        bot_url: str | Callable[[], str],
        signing_secret: str | None = None,
        *,
        channel_id: str,
        people: Sequence[DemoPerson] = DEMO_PEOPLE,
        host: str = "127.0.0.1",
        port: int = 0,
        command: str = "/runctl",
        verbs: Mapping[str, VerbSpec] = VERBS,
        ack_timeout: float = SLACK_ACK_TIMEOUT,
        max_wait: float = 25.0,
    ) -> None:
        if host not in BIND_HOSTS:
            raise ValueError(f"the sandbox only listens on loopback addresses, not {host!r}")
        super().__init__(host, port)
        self.app = SandboxApp(
            standin,
            bot_url,
            signing_secret,
            channel_id=channel_id,
            people=people,
            command=command,
            verbs=verbs,
            ack_timeout=ack_timeout,
            max_wait=max_wait,
        )

    def _make_server(self) -> _ThreadingServer:
        server = _ThreadingServer((self.host, self._requested_port), _QuietHandler)
        server.set_app(self.app)
        return server

    def _before_stop(self) -> None:
        self.app.close()
