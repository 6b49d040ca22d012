"""Properties that hold for any input: the parser never raises, errors always teach, data stays data."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.commands import VERBS, Command, ParseError, TrainCommand, parse
from bot.core.durations import format_duration, parse_duration
from bot.core.validation import ValidationError, instance_id, instance_type, s3_uri

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_VOCABULARY = [
    *VERBS,
    *(name.split(" ")[0] for name in VERBS),
    *(flag.name for spec in VERBS.values() for flag in spec.flags),
    *(alias for spec in VERBS.values() for flag in spec.flags for alias in flag.aliases),
    "--",
    "-",
    "--help",
    "i-0123456789abcdef0",
    "i-0123abcd",
    "job-3f9a1c2b7d4e",
    "g5.xlarge",
    "s3://ml-code/c.tar.gz",
    "s3://",
    "4h",
    "+1h30m",
    "0s",
    "2026-12-01",
    "2026-12-01T18:00+02:00",
    "9999-12-31T23:59-05:00",
    "0001-01-01T00:00+05:00",
    "never",
    "daily",
    "weekly",
    "mon",
    "09:00",
    "Europe/London",
    "<#C0123ABCD|x>",
    "<@U0123ABCD|y>",
    "#chan",
    "KEY=VALUE",
    "RUNCTL_X=1",
    "$1.50",
    "100",
    "'",
    '"',
    "\\",
    "&amp;",
    "\u201c",
    "\x00",
    "\n",
]

_token = st.one_of(st.sampled_from(_VOCABULARY), st.text(max_size=12))
_command_text = st.lists(_token, min_size=0, max_size=8).map(" ".join)


def _check(result: Command | ParseError) -> None:
    assert isinstance(result, (Command, ParseError))
    if isinstance(result, ParseError):
        rendered = result.render()
        assert "Usage:" in rendered
        assert "Example:" in rendered
        assert result.verb is None or result.verb in VERBS or result.verb == "cleanup"
    else:
        assert result.verb in VERBS


@FAST
@given(st.text(max_size=200))
def test_parse_never_raises_on_arbitrary_text(text: str) -> None:
    _check(parse(text, NOW))
    _check(parse(text))


@FAST
@given(_command_text)
def test_parse_never_raises_on_command_like_text(text: str) -> None:
    _check(parse(text, NOW))
    _check(parse(text))


_script_arg = st.text(
    alphabet=st.characters(blacklist_characters="\x00\u201c\u201d\u201e\u201f", blacklist_categories=["Cs"]),
    max_size=30,
)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@FAST
@given(st.lists(_script_arg, max_size=10))
def test_script_args_round_trip_verbatim(args: list[str]) -> None:
    typed = "train i-0123456789abcdef0 s3://ml-code/c.tar.gz -- " + shlex.join(args)
    command = parse(_slack_escape(typed), NOW)
    assert isinstance(command, TrainCommand), command
    assert command.script_args == tuple(args)


@FAST
@given(st.lists(st.sampled_from(list(VERBS)), min_size=1, max_size=1), st.text(max_size=40))
def test_every_verb_error_renders_usage(verbs: list[str], junk: str) -> None:
    result = parse(f"{verbs[0]} --definitely-not-a-flag {junk}", NOW)
    assert isinstance(result, ParseError)
    assert "Usage: `/runctl" in result.render()


@FAST
@given(st.integers(min_value=1, max_value=10 * 365 * 86400))
def test_format_duration_round_trips(seconds: int) -> None:
    td = timedelta(seconds=seconds)
    assert parse_duration(format_duration(td)) == td


@FAST
@given(st.text(max_size=40))
def test_validators_raise_only_validation_errors(text: str) -> None:
    for validator in (instance_id, instance_type, s3_uri, parse_duration):
        try:
            validator(text)
        except ValidationError as error:
            assert error.message.endswith(".")


@FAST
@given(st.from_regex(r"i-([0-9a-f]{8}|[0-9a-f]{17})", fullmatch=True))
def test_instance_id_accepts_every_well_formed_id(text: str) -> None:
    assert instance_id(text) == text
