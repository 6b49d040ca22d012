"""slack-app-manifest.yml asks for exactly the bot scopes the code's Slack calls need (issue 10).

The calls are read from the product code's syntax tree: any attribute named after a method of slack_sdk's
`WebClient` (`self._client.chat_postMessage(...)`, `app.client.users_info`, a method passed as a value),
`client.api_call("chat.postMessage")`, and Bolt's `say(...)` (chat.postMessage) and `respond(...)` (a
response_url POST, which needs no scope). Each is mapped to its scopes by the table below, taken from the
method pages at https://api.slack.com/methods.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from slack_sdk import WebClient

from bot.slack.app import COMMAND
from bot.web import make_wsgi_app
from tests.unit.deploy.deploy_support import ROOT, Source, product_sources

MANIFEST = ROOT / "slack-app-manifest.yml"
SLACK_DOC = ROOT / "docs" / "slack-app.md"
EVENTS_PATH = "/slack/events"
# The local Slack stand-in implements the Web API for the sandbox and the tests; it never calls Slack.
EXCLUDED = (ROOT / "bot" / "slack" / "standin",)


@dataclass(frozen=True)
class Need:
    api: str  # the Slack Web API method(s) behind the call, for messages
    scopes: frozenset[str]  # bot scopes the call needs (all of them)


def _need(api: str, *scopes: str) -> Need:
    return Need(api, frozenset(scopes))


# WebClient method (or Bolt utility) -> what Slack requires for it.
SCOPES_BY_METHOD: dict[str, Need] = {
    "chat_postMessage": _need("chat.postMessage", "chat:write"),
    "chat_update": _need("chat.update", "chat:write"),
    "chat_postEphemeral": _need("chat.postEphemeral", "chat:write"),
    # conversations.open accepts any of channels:manage, groups:write, im:write, mpim:write; the bot
    # only opens one-to-one DMs, which im:write covers.
    "conversations_open": _need("conversations.open", "im:write"),
    "users_info": _need("users.info", "users:read"),
    # slack_sdk's upload helper: files.getUploadURLExternal, the upload, files.completeUploadExternal.
    "files_upload_v2": _need("files.getUploadURLExternal + files.completeUploadExternal", "files:write"),
    "auth_test": _need("auth.test"),
    "say": _need("chat.postMessage (Bolt say)", "chat:write"),
    "respond": _need("response_url (Bolt respond)"),
}
BOLT_UTILITIES = frozenset({"say", "respond"})
# Bolt listener registrations -> the scope that makes Slack deliver them.
SCOPES_BY_LISTENER: dict[str, Need] = {"command": _need("slash command", "commands")}


@dataclass(frozen=True)
class Use:
    name: str  # WebClient method, Bolt utility or listener kind
    where: str


@cache
def web_client_methods() -> frozenset[str]:
    """The Web API methods slack_sdk knows, from `WebClient` itself: a new one is found without edits."""
    return frozenset(
        name for name, value in vars(WebClient).items() if callable(value) and not name.startswith("_")
    )


def _is_app(node: ast.expr) -> bool:
    """`app` or `<anything>.app`: the receiver of Bolt's listener decorators."""
    return (isinstance(node, ast.Name) and node.id == "app") or (
        isinstance(node, ast.Attribute) and node.attr == "app"
    )


def slack_calls(source: Source) -> Iterator[Use]:
    methods = web_client_methods()
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Attribute) and node.attr in methods:
            yield Use(node.attr, source.where(node))
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in BOLT_UTILITIES:
            yield Use(func.id, source.where(node))
        if isinstance(func, ast.Attribute) and func.attr == "api_call" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield Use(first.value.replace(".", "_"), source.where(node))


def listener_registrations(source: Source) -> Iterator[Use]:
    for node in ast.walk(source.tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SCOPES_BY_LISTENER
            and _is_app(node.func.value)
        ):
            yield Use(node.func.attr, source.where(node))


def _product() -> list[Source]:
    return list(product_sources([ROOT / "bot"], excluding=EXCLUDED))


@cache
def code_uses() -> tuple[Use, ...]:
    found: list[Use] = []
    for source in _product():
        found.extend(slack_calls(source))
        found.extend(listener_registrations(source))
    return tuple(found)


def _table(use: Use) -> Need | None:
    return SCOPES_BY_LISTENER.get(use.name) or SCOPES_BY_METHOD.get(use.name)


def needed_scopes(uses: Iterable[Use]) -> dict[str, list[str]]:
    """scope -> the call sites that need it."""
    needed: dict[str, list[str]] = {}
    for use in uses:
        need = _table(use)
        if need is not None:
            for scope in need.scopes:
                needed.setdefault(scope, []).append(f"{use.where} ({need.api})")
    return needed


@cache
def manifest() -> dict[str, Any]:
    loaded = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), f"{MANIFEST.name} is not a YAML mapping"
    return loaded


def manifest_bot_scopes() -> set[str]:
    scopes = manifest().get("oauth_config", {}).get("scopes", {}).get("bot") or []
    assert len(scopes) == len(set(scopes)), f"{MANIFEST.name} lists a bot scope twice: {scopes}"
    return set(scopes)


def _path(url: str) -> str:
    match = re.fullmatch(r"https://[^/\s]+(/\S*)", url)
    assert match, f"{url!r} is not an https:// URL (Slack only calls HTTPS request URLs)"
    return match.group(1)


# --- the scanner itself --------------------------------------------------------------------------------


def test_scanner_finds_slack_calls_however_they_are_written() -> None:
    code = (
        "import functools\n"
        "def f(client, app, respond, say):\n"
        "    client.chat_postMessage(channel='C1', text='x')\n"
        "    app.client.users_info(user='U1')\n"
        "    functools.partial(self._client.chat_update, ts='1')\n"
        "    client.api_call('conversations.open', json={})\n"
        "    respond(text='private')\n"
        "    say('public')\n"
        "    app.command('/runctl')(f)\n"
        "    self.app.command('/runctl')(f)\n"
        "    client.not_a_slack_method()\n"
    )
    source = Source(Path("sample.py"), ast.parse(code))
    found = [use.name for use in slack_calls(source)] + [u.name for u in listener_registrations(source)]
    assert sorted(found) == sorted(
        [
            "chat_postMessage",
            "users_info",
            "chat_update",
            "conversations_open",
            "respond",
            "say",
            "command",
            "command",
        ]
    )


def test_the_method_list_comes_from_slack_sdk() -> None:
    methods = web_client_methods()
    assert {"chat_postMessage", "conversations_open", "files_upload_v2", "auth_test"} <= methods
    assert all(name in methods for name in SCOPES_BY_METHOD if name not in BOLT_UTILITIES), (
        "a table entry is not a WebClient method: " + ", ".join(sorted(set(SCOPES_BY_METHOD) - methods))
    )


# --- the code against the manifest ---------------------------------------------------------------------


def test_every_slack_call_in_the_code_has_a_known_scope() -> None:
    uses = code_uses()
    assert any(use.name in SCOPES_BY_METHOD for use in uses), (
        "found no Slack call in bot/: the scan is broken"
    )
    unknown = sorted({f"{use.where}: {use.name}" for use in uses if _table(use) is None})
    assert not unknown, (
        "The code calls Slack methods this test has no scopes for; look each up at "
        "https://api.slack.com/methods, add it to SCOPES_BY_METHOD and its scope to "
        "slack-app-manifest.yml:\n  " + "\n  ".join(unknown)
    )


def test_manifest_grants_every_scope_the_code_needs() -> None:
    needed = needed_scopes(code_uses())
    missing = {scope: sites for scope, sites in needed.items() if scope not in manifest_bot_scopes()}
    assert not missing, "slack-app-manifest.yml lacks bot scopes the code needs:\n" + "\n".join(
        f"  {scope}: needed by {', '.join(sites)}" for scope, sites in sorted(missing.items())
    )


def test_manifest_asks_for_no_scope_the_code_does_not_need() -> None:
    extra = manifest_bot_scopes() - set(needed_scopes(code_uses()))
    assert not extra, (
        f"slack-app-manifest.yml asks for bot scopes no code path uses: {', '.join(sorted(extra))}; "
        "remove them (or add the call that needs them to SCOPES_BY_METHOD)"
    )


def test_manifest_asks_for_no_user_scopes() -> None:
    user_scopes = manifest().get("oauth_config", {}).get("scopes", {}).get("user")
    assert not user_scopes, f"the bot acts as itself only; user scopes {user_scopes} are not needed"


# --- where Slack sends commands and clicks -------------------------------------------------------------


def test_slash_command_goes_to_the_bots_endpoint() -> None:
    commands = manifest()["features"]["slash_commands"]
    assert [c["command"] for c in commands] == [COMMAND], f"the code serves {COMMAND} only"
    command = commands[0]
    assert _path(command["url"]) == EVENTS_PATH
    assert command["should_escape"] is True, "the grammar reads <@U…>/<#C…> IDs, which need escaping on"
    assert command.get("usage_hint") == "help"


def test_button_clicks_go_to_the_bots_endpoint() -> None:
    registers_actions = any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "action"
        and _is_app(node.func.value)
        for source in _product()
        for node in ast.walk(source.tree)
    )
    assert registers_actions, "the code registers button handlers (app.action); the scan found none"
    interactivity = manifest()["settings"]["interactivity"]
    assert interactivity["is_enabled"] is True, "buttons need interactivity on"
    assert _path(interactivity["request_url"]) == EVENTS_PATH


def test_socket_mode_is_off_by_default() -> None:
    assert manifest()["settings"]["socket_mode_enabled"] is False
    assert "event_subscriptions" not in manifest()["settings"], "the bot registers no event listeners"


def test_the_request_url_path_is_served_by_the_bot() -> None:
    reached: list[str] = []

    def slack_handler(environ: Any, start_response: Any) -> list[bytes]:
        reached.append(environ["PATH_INFO"])
        start_response("200 OK", [])
        return [b""]

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        return lambda _data: None

    app = make_wsgi_app(slack_handler)
    app({"PATH_INFO": EVENTS_PATH, "REQUEST_METHOD": "POST"}, start_response)
    assert reached == [EVENTS_PATH], f"bot/web.py does not route {EVENTS_PATH} to Bolt"


def test_setup_guide_lists_the_same_scopes() -> None:
    text = SLACK_DOC.read_text(encoding="utf-8")
    table = text.split("Bot Token Scopes", 1)[1].split("\n\n", 2)[1]
    documented = set(re.findall(r"^\s*\|\s*`([a-z:._]+)`\s*\|", table, flags=re.MULTILINE))
    assert documented == manifest_bot_scopes(), (
        f"docs/slack-app.md lists {sorted(documented)}, the manifest {sorted(manifest_bot_scopes())}"
    )
