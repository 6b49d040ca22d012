"""Help text and the VERBS table other code reads."""

from __future__ import annotations

import re

import pytest

from bot.core.commands import VERBS, HelpCommand, ParseError, Role, help_text, parse, resolve_verb

SLACK_TEXT_LIMIT = 3000


def test_overview_fits_one_slack_text_and_names_every_verb() -> None:
    text = help_text()
    assert len(text) <= SLACK_TEXT_LIMIT
    for name in VERBS:
        if name != "help":
            assert f"`{name}" in text, name
    assert "/runctl help &lt;verb&gt;" in text


@pytest.mark.parametrize("name", list(VERBS))
def test_verb_help(name: str) -> None:
    spec = VERBS[name]
    text = help_text(name)
    assert len(text) <= SLACK_TEXT_LIMIT
    escaped_usage = spec.usage.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert f"Usage: `{escaped_usage}`" in text
    for flag in spec.flags:
        assert flag.name in text
        assert flag.help.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in text
    assert "Who: " in text
    assert ("changes things" in text) is spec.mutating
    assert spec.examples, name
    for example in spec.examples:
        assert example.replace("<", "&lt;").replace(">", "&gt;") in text


@pytest.mark.parametrize("name", list(VERBS))
def test_examples_parse_as_their_verb(name: str) -> None:
    for example in VERBS[name].examples:
        # Slack (with escaping on, as the app manifest sets it) turns a typed #channel into a link.
        typed = re.sub(r"#([a-z-]+)", r"<#C0123ABCD|\1>", example.removeprefix("/runctl "))
        command = parse(typed)
        assert not isinstance(command, ParseError), command.render()
        assert command.verb == name


@pytest.mark.parametrize("name", list(VERBS))
def test_usage_names_every_flag_once(name: str) -> None:
    spec = VERBS[name]
    assert spec.usage.startswith(f"/runctl {name}")
    for flag in spec.flags:
        assert len(re.findall(rf"\[?{re.escape(flag.name)}[ \]|]", spec.usage + " ")) == 1, flag.name


def test_help_defaults_are_shown() -> None:
    assert "(default: 50)" in help_text("logs")
    assert "(default: train.py)" in help_text("train")
    assert "(default: 60m)" in help_text("cleanup plan")


def test_help_names_who_may_run_it() -> None:
    assert "Who: admins only" in help_text("cleanup run")
    assert "Who: any user (read-only)" in help_text("list")
    assert "`never` is for admins only" in help_text("keep")
    assert "approver" in help_text("terminate")


def test_help_for_aliases_and_groups() -> None:
    assert help_text("ls") == help_text("list")
    assert help_text("RM") == help_text("terminate")
    group = help_text("cleanup")
    assert "/runctl cleanup plan" in group and "/runctl cleanup run" in group
    with pytest.raises(KeyError):
        help_text("frobnicate")


def test_help_command_topics_are_renderable() -> None:
    for text in ["help", "help stop", "help cleanup", "help cleanup plan", "stop --help", "cleanup -h"]:
        command = parse(text)
        assert isinstance(command, HelpCommand)
        assert help_text(command.topic)


def test_help_output_holds_no_raw_angle_brackets() -> None:
    """Slack would read `<instance-id>` as a link; help must escape it."""
    for name in [None, *VERBS]:
        assert "<" not in help_text(name) and ">" not in help_text(name)


def test_verbs_metadata() -> None:
    assert next(iter(VERBS)) == "help"
    for name, spec in VERBS.items():
        assert spec.name == name
        assert spec.summary
        assert isinstance(spec.role, Role)
        assert isinstance(spec.mutating, bool)
        assert resolve_verb(name) == name
        for alias in spec.aliases:
            assert resolve_verb(alias) == name
    read_only = {name for name, spec in VERBS.items() if not spec.mutating}
    assert read_only == {
        "help",
        "list",
        "status",
        "cost",
        "cleanup plan",
        "config",
        "report",
        "logs",
        "jobs",
        "checkpoints",
    }


def test_aliases_are_unique() -> None:
    words = [word for spec in VERBS.values() for word in (spec.name, *spec.aliases)]
    assert len(words) == len(set(words))


def test_resolve_verb() -> None:
    assert resolve_verb("LS") == "list"
    assert resolve_verb("cleanup") == "cleanup"
    assert resolve_verb("nope") is None
