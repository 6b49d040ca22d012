"""`/runctl` grammar end to end: help, and every verb's bad input answered privately with the fix.

A wrong command must never reach the services: the answer is the synchronous (ephemeral) reply to the
slash command, and the cloud and the database stay untouched.
"""

from __future__ import annotations

import pytest

from tests.support.harness import REQUESTER, Bot

ANY_ID = "i-0123456789abcdef0"

# (command text, what the answer must say was wrong, the verb whose usage is shown)
BAD_INPUT: list[tuple[str, str, str]] = [
    ("create", "Missing `instance-type`", "create"),
    ("create banana", "`banana` is not", "create"),
    ("create t3.micro --project 'no spaces'", "project", "create"),
    ("create t3.micro --max-price 0.5", "`--max-price` only applies to spot instances", "create"),
    ("create t3.micro --disk 2", "disk", "create"),
    ("list --all --user <@U0CAROL003>", "can't be used together", "list"),
    ("list --mine", "`--mine` is not a flag of `list`", "list"),
    ("list --state sleeping", "sleeping", "list"),
    ("status", "Missing `instance-id`", "status"),
    ("status i-zz", "`i-zz` is not an EC2 instance id", "status"),
    (f"status {ANY_ID} {ANY_ID}", "Unexpected", "status"),
    ("start", "Missing `instance-id`", "start"),
    ("start i-123", "is not an EC2 instance id", "start"),
    ("stop", "Missing `instance-id`", "stop"),
    (f"stop {ANY_ID} --forse", "Did you mean `--force`?", "stop"),
    (f"stop {ANY_ID} --force=yes", "`--force` takes no value", "stop"),
    ("terminate", "Missing `instance-id`", "terminate"),
    (f"terminate {ANY_ID} --reason", "`--reason` needs a value", "terminate"),
    ("protect ami-0123456789abcdef0", "is not an EC2 instance id", "protect"),
    ("unprotect", "Missing `instance-id`", "unprotect"),
    (f"keep {ANY_ID}", "Missing `duration|date|never`", "keep"),
    (f"keep {ANY_ID} someday", "someday", "keep"),
    (f"keep {ANY_ID} 1999-01-01", "past", "keep"),
    ("cost --period year", "year", "cost"),
    ("cost --all --project llama", "can't be used together", "cost"),
    ("cleanup", "Say which: `cleanup plan` or `cleanup run`", "cleanup"),
    ("cleanup nuke", "`nuke` is not part of `cleanup`", "cleanup"),
    ("cleanup plan --cpu-threshold 500", "500", "cleanup plan"),
    ("cleanup run --now", "`--now` is not a flag of `cleanup run`", "cleanup run"),
    ("config extra", "`config` takes no arguments", "config"),
    ('stop "unclosed', "A quote is not closed", "stop"),
]


def _private_answer(bot: Bot, text: str) -> str:
    """The synchronous reply to a slash command: an ephemeral JSON body, also shown by the stand-in."""
    response = bot.command(REQUESTER.id, text)
    assert response.status == 200, response.text
    body = response.json()
    assert body.get("response_type") == "ephemeral", body
    answer = str(body["text"])
    assert bot.last_reply(REQUESTER.id) == answer
    return answer


def test_every_verb_explains_bad_input_with_usage_and_example(bot: Bot) -> None:
    problems: list[str] = []
    for text, wrong, verb in BAD_INPUT:
        answer = _private_answer(bot, text)
        usage = f"Usage: `/runctl {verb}"
        if wrong not in answer or usage not in answer or "\nExample: `/runctl " not in answer:
            problems.append(f"/runctl {text!r} answered:\n{answer}")
    assert not problems, "\n\n".join(problems)
    bot.wait_idle()
    assert bot.mutations() == 0
    rows = bot.rows()
    assert rows["operations"] == 0 and rows["approvals"] == 0
    assert bot.posts() == [], "a bad command must not post anything in the channel"


@pytest.mark.parametrize(
    ("typed", "suggested"),
    [("lsit", "list"), ("termnate", "terminate"), ("stauts", "status"), ("protec", "protect")],
)
def test_unknown_verb_suggests_the_closest(bot: Bot, typed: str, suggested: str) -> None:
    answer = _private_answer(bot, f"{typed} {ANY_ID}")
    assert f"`{typed}` is not a `/runctl` command" in answer
    assert f"Did you mean `{suggested}`?" in answer
    assert "`/runctl help` lists them all" in answer


def test_unknown_verb_without_a_close_match_points_to_help(bot: Bot) -> None:
    answer = _private_answer(bot, "frobnicate")
    assert "`frobnicate` is not a `/runctl` command" in answer
    assert "Did you mean" not in answer
    assert "Example: `/runctl help`" in answer


def test_help_lists_every_verb_and_help_verb_explains_one(bot: Bot) -> None:
    overview = _private_answer(bot, "help")
    for verb in (
        "create",
        "list",
        "status",
        "start",
        "stop",
        "terminate",
        "protect",
        "unprotect",
        "keep",
        "cost",
        "cleanup plan",
        "cleanup run",
        "config",
        # reserved for later issues, but already listed
        "train",
        "logs",
        "jobs",
        "report",
        "subscribe",
    ):
        assert f"• `{verb}" in overview, f"help does not list {verb}"
    assert _private_answer(bot, "") == overview, "an empty command is a request for help"

    stop = _private_answer(bot, "help stop")
    assert "*/runctl stop*" in stop
    assert "Usage: `/runctl stop" in stop
    assert "--force" in stop and "--reason" in stop
    assert "Examples: `/runctl stop i-0123456789abcdef0" in stop

    terminate = _private_answer(bot, "help rm")  # an alias finds the verb
    assert "*/runctl terminate*" in terminate
    assert "two-person rule" in terminate

    cleanup = _private_answer(bot, "help cleanup")
    assert "*/runctl cleanup plan*" in cleanup and "*/runctl cleanup run*" in cleanup

    assert "*/runctl keep*" in _private_answer(bot, f"keep {ANY_ID} --help")

    unknown = _private_answer(bot, "help frobnicate")
    assert "`frobnicate` is not a `/runctl` command" in unknown
    assert "Usage: `/runctl help" in unknown
    assert bot.rows()["operations"] == 0


def test_every_verb_of_the_grammar_is_served(bot: Bot) -> None:
    """The training verbs, once reserved, now answer (here: `jobs`, from the database only)."""
    bot.run(REQUESTER.id, "jobs")
    reply = bot.last_reply(REQUESTER.id)
    assert "not available" not in reply and "job" in reply.lower()
    assert bot.mutations() == 0
