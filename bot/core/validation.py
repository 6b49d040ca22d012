"""Validators for everything a person types into `/runctl`.

Each validator takes the raw text, returns the normalised value, and raises `ValidationError` with a message
that can go straight back to Slack. They are pure and strict on purpose: values end up in EC2 tags, S3 calls
and the environment of a shell script on a machine, so anything not clearly valid is refused at the door.
"""

from __future__ import annotations

import functools
import posixpath
import re
import zoneinfo
from dataclasses import dataclass
from datetime import time
from decimal import Decimal, InvalidOperation
from enum import IntEnum

from providers.tags import is_valid_project

__all__ = [
    "JOB_ID_PREFIX",
    "S3Uri",
    "ValidationError",
    "Weekday",
    "ami_id",
    "bounded_int",
    "env_assignment",
    "free_text",
    "instance_id",
    "instance_type",
    "job_id",
    "money",
    "project",
    "quote_value",
    "relative_path",
    "s3_uri",
    "script_arg",
    "slack_channel",
    "slack_user",
    "time_of_day",
    "timezone",
    "weekday",
]

_SHOWN_LIMIT = 80


def quote_value(value: str) -> str:
    """Show user input inside Slack mrkdwn without letting it format, mention or link anything."""
    if value == "":
        return "(empty)"
    shown = value if len(value) <= _SHOWN_LIMIT else value[: _SHOWN_LIMIT - 1] + "…"
    shown = shown.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    shown = shown.replace("`", "'")
    shown = "".join(ch if ch.isprintable() else "?" for ch in shown)
    return f"`{shown}`"


class ValidationError(ValueError):
    """A value the user typed is not acceptable; `message` says which, why, and what would be."""

    def __init__(self, field: str, value: str, reason: str, hint: str | None = None) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        self.hint = hint
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = f"{quote_value(self.value)} {self.reason}"
        if self.hint:
            text += f" ({self.hint})"
        return text + "."

    def __repr__(self) -> str:
        return f"ValidationError(field={self.field!r}, value={self.value!r}, reason={self.reason!r})"


def _has_control(text: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


# --- EC2 -------------------------------------------------------------------------------------------------

_INSTANCE_ID_RE = re.compile(r"i-(?:[0-9a-f]{8}|[0-9a-f]{17})")
_AMI_ID_RE = re.compile(r"ami-(?:[0-9a-f]{8}|[0-9a-f]{17})")

# family letters, then a generation number with optional attribute letters (g5, p4d, c7gn, is4gen) and an
# optional option suffix (m7i-flex, mac2-m2pro, u7i-12tb); or, without a generation, a hyphenated option alone
# (u-6tb1, mac-m4). Then the size.
_INSTANCE_TYPE_RE = re.compile(
    r"(?P<family>[a-z]+(?:\d+[a-z]*(?:-[a-z0-9]+)?|-[a-z0-9]+))"
    r"\.(?P<size>nano|micro|small|medium|large|xlarge|[1-9]\d{0,2}xlarge|metal|metal-[1-9]\d{0,2}xl)"
)


def instance_id(text: str) -> str:
    """`i-` and 8 or 17 hex digits; upper case is accepted and lowered because EC2 ids are lower case."""
    value = text.strip().lower()
    if not _INSTANCE_ID_RE.fullmatch(value):
        raise ValidationError(
            "instance",
            text,
            "is not an EC2 instance id",
            "expected i- and 8 or 17 hex digits, e.g. i-0123456789abcdef0",
        )
    return value


def ami_id(text: str) -> str:
    """`ami-` and 8 or 17 hex digits (older AMIs have the short form), lowered like instance ids."""
    value = text.strip().lower()
    if not _AMI_ID_RE.fullmatch(value):
        raise ValidationError("ami", text, "is not an AMI id", "expected ami- and 8 or 17 hex digits")
    return value


def instance_type(text: str) -> str:
    """Checked against the EC2 naming pattern, not a list, so new families work the day AWS launches them."""
    value = text.strip().lower()
    if len(value) > 40 or not _INSTANCE_TYPE_RE.fullmatch(value):
        raise ValidationError(
            "instance type", text, "is not an EC2 instance type", "expected family.size, e.g. g5.xlarge"
        )
    return value


# --- runctl ------------------------------------------------------------------------------------------------

JOB_ID_PREFIX = "job-"
_JOB_ID_RE = re.compile(r"job-[0-9a-z]{8,32}")


def job_id(text: str) -> str:
    """`job-` and 8-32 lower-case letters or digits (the training service mints `job-` + 12 hex digits)."""
    value = text.strip().lower()
    if not _JOB_ID_RE.fullmatch(value):
        raise ValidationError("job", text, "is not a job id", "expected job- and 8-32 letters or digits")
    return value


def project(text: str) -> str:
    if not is_valid_project(text):
        raise ValidationError(
            "project", text, "is not a valid project name", "1-64 of letters, digits, dot, dash, underscore"
        )
    return text


# --- Slack -------------------------------------------------------------------------------------------------

_USER_MENTION_RE = re.compile(r"<@([UW][A-Z0-9]{2,20})(?:\|[^>]*)?>")
_USER_ID_RE = re.compile(r"[UW][A-Z0-9]{6,20}")
_CHANNEL_MENTION_RE = re.compile(r"<#([CG][A-Z0-9]{2,20})(?:\|[^>]*)?>")
_CHANNEL_ID_RE = re.compile(r"[CG][A-Z0-9]{6,20}")


def slack_user(text: str) -> str:
    """A mention (`<@U123|name>`) or a raw user id; returns the id. Plain `@name` can't be resolved here."""
    value = text.strip()
    match = _USER_MENTION_RE.fullmatch(value)
    if match:
        return match.group(1)
    if _USER_ID_RE.fullmatch(value):
        return value
    raise ValidationError("user", text, "is not a Slack user", "mention them with @ and pick from the list")


def slack_channel(text: str) -> str:
    """A channel link (`<#C123|name>`) or a raw channel id; returns the id."""
    value = text.strip()
    match = _CHANNEL_MENTION_RE.fullmatch(value)
    if match:
        return match.group(1)
    if _CHANNEL_ID_RE.fullmatch(value):
        return value
    raise ValidationError(
        "channel", text, "is not a Slack channel", "type # and pick the channel from the list"
    )


# --- S3 and paths ------------------------------------------------------------------------------------------

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_KEY_MAX_BYTES = 1024


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str = ""

    @property
    def is_prefix(self) -> bool:
        """A bare bucket or a key ending in `/` names a folder rather than one object."""
        return self.key == "" or self.key.endswith("/")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def _bucket_problem(bucket: str) -> str | None:
    if not 3 <= len(bucket) <= 63:
        return "must be 3-63 characters"
    if not _BUCKET_RE.fullmatch(bucket):
        return (
            "may hold only lower-case letters, digits, dots and hyphens, "
            "starting and ending with a letter or digit"
        )
    if ".." in bucket:
        return "must not contain two dots in a row"
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", bucket):
        return "must not look like an IP address"
    if bucket.startswith(("xn--", "sthree-")):
        return "must not start with xn-- or sthree-"
    if bucket.endswith(("-s3alias", "--ol-s3")):
        return "must not end with -s3alias or --ol-s3"
    return None


def s3_uri(text: str, *, field: str = "s3 uri") -> S3Uri:
    """`s3://bucket[/key]` with the bucket naming rules enforced, so a typo fails here and not in the job."""
    value = text.strip()
    if not value.startswith("s3://"):
        raise ValidationError(field, text, "is not an S3 URI", "expected s3://bucket/path")
    bucket, _, key = value[len("s3://") :].partition("/")
    problem = _bucket_problem(bucket)
    if problem:
        raise ValidationError(field, text, f"has a bad bucket name: it {problem}")
    if _has_control(key):
        raise ValidationError(field, text, "has control characters in its key")
    if len(key.encode("utf-8")) > _KEY_MAX_BYTES:
        raise ValidationError(field, text, "has a key longer than 1024 bytes")
    return S3Uri(bucket, key)


_PATH_MAX = 1024


def relative_path(text: str, *, field: str = "path") -> str:
    """A path inside the job's code directory: relative, never climbing out with a `..` component."""
    if text == "":
        raise ValidationError(field, text, "is empty", "expected a path such as train.py")
    if len(text) > _PATH_MAX:
        raise ValidationError(field, text, "is longer than 1024 characters")
    if _has_control(text):
        raise ValidationError(field, text, "contains control characters")
    if text.startswith(("/", "~")):
        raise ValidationError(field, text, "must be relative to the code directory", "e.g. src/train.py")
    if ".." in text.split("/"):
        raise ValidationError(field, text, "must not contain a .. component")
    normal = posixpath.normpath(text)
    if normal == ".":
        raise ValidationError(field, text, "names the code directory, not a file")
    return normal


# --- environment and script arguments ----------------------------------------------------------------------

_ENV_KEY_RE = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
_ENV_VALUE_MAX = 4096
# Variables that change how the job's shell, loader or interpreter behaves before the user's code runs, plus
# credentials that must never be pasted into a chat.
_ENV_DENIED = frozenset(
    {
        "PATH",
        "IFS",
        "ENV",
        "BASH_ENV",
        "SHELL",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "PROMPT_COMMAND",
        "HOME",
        "USER",
        "LOGNAME",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "PYTHONINSPECT",
        "VIRTUAL_ENV",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    }
)
_ENV_DENIED_PREFIXES = ("LD_", "DYLD_", "BASH_FUNC_")


def env_assignment(text: str) -> tuple[str, str]:
    """`KEY=VALUE` for the training job's environment; the value is data and may hold any text but NUL."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ValidationError("env", text, "is not an assignment", "expected KEY=VALUE, e.g. EPOCHS=3")
    if not _ENV_KEY_RE.fullmatch(key):
        raise ValidationError(
            "env",
            text,
            "has an invalid variable name",
            "upper-case letters, digits and _, not starting with a digit",
        )
    if key.startswith("RUNCTL_"):
        raise ValidationError("env", text, "sets a RUNCTL_ variable", "those are set by the bot")
    if key.startswith("AWS_") and key in _ENV_DENIED:
        raise ValidationError(
            "env", text, "would put AWS credentials in chat", "the machine's IAM role is used"
        )
    if key in _ENV_DENIED or key.startswith(_ENV_DENIED_PREFIXES):
        raise ValidationError("env", text, f"sets {key}, which the job runner does not allow")
    if "\x00" in value:
        raise ValidationError("env", text, "contains a NUL character")
    if len(value) > _ENV_VALUE_MAX:
        raise ValidationError("env", text, "has a value longer than 4096 characters")
    return key, value


def script_arg(text: str) -> str:
    """Script arguments are passed through as data; only NUL is refused because argv cannot carry it."""
    if "\x00" in text:
        raise ValidationError("script argument", text, "contains a NUL character")
    return text


def free_text(text: str, *, field: str, max_length: int = 500) -> str:
    """Reasons and notes: shown back in Slack and kept in the audit log."""
    value = text.strip()
    if value == "":
        raise ValidationError(field, text, "is empty")
    if len(value) > max_length:
        raise ValidationError(field, text, f"is longer than {max_length} characters")
    if "\x00" in value:
        raise ValidationError(field, text, "contains a NUL character")
    return value


# --- numbers, money, time ----------------------------------------------------------------------------------

_INT_RE = re.compile(r"[0-9]{1,9}")


def bounded_int(text: str, *, field: str, minimum: int, maximum: int) -> int:
    value = text.strip()
    if not _INT_RE.fullmatch(value):
        raise ValidationError(field, text, "is not a whole number", f"expected {minimum}-{maximum}")
    number = int(value)
    if not minimum <= number <= maximum:
        raise ValidationError(field, text, "is out of range", f"expected {minimum}-{maximum}")
    return number


_MONEY_RE = re.compile(r"\$?\s*([0-9]{1,7}(?:\.[0-9]{1,6})?|\.[0-9]{1,6})")


def money(text: str, *, field: str = "amount", maximum: Decimal | None = None) -> Decimal:
    """US dollars, `$12.50` or `12.5`; spot prices need sub-cent precision, so up to six decimals."""
    value = text.strip()
    match = _MONEY_RE.fullmatch(value)
    if not match:
        raise ValidationError(field, text, "is not an amount of money", "e.g. $12.50 or 0.45")
    try:
        amount = Decimal(match.group(1))
    except InvalidOperation as exc:  # pragma: no cover - the pattern only admits decimal literals
        raise ValidationError(field, text, "is not an amount of money", "e.g. $12.50 or 0.45") from exc
    if amount <= 0:
        raise ValidationError(field, text, "must be more than zero")
    if maximum is not None and amount > maximum:
        raise ValidationError(field, text, f"is more than the limit of ${maximum}")
    return amount


_TIME_RE = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")


def time_of_day(text: str) -> time:
    match = _TIME_RE.fullmatch(text.strip())
    if not match:
        raise ValidationError(
            "time", text, "is not a time of day", "expected HH:MM on a 24-hour clock, e.g. 09:00"
        )
    return time(int(match.group(1)), int(match.group(2)))


class Weekday(IntEnum):
    """Numbered like `datetime.weekday()`; `short` is the form APScheduler's cron trigger takes."""

    MON = 0
    TUE = 1
    WED = 2
    THU = 3
    FRI = 4
    SAT = 5
    SUN = 6

    @property
    def short(self) -> str:
        return self.name.lower()


_WEEKDAY_NAMES = {
    **{day.short: day for day in Weekday},
    "monday": Weekday.MON,
    "tuesday": Weekday.TUE,
    "tues": Weekday.TUE,
    "wednesday": Weekday.WED,
    "thursday": Weekday.THU,
    "thur": Weekday.THU,
    "thurs": Weekday.THU,
    "friday": Weekday.FRI,
    "saturday": Weekday.SAT,
    "sunday": Weekday.SUN,
}


def weekday(text: str) -> Weekday:
    day = _WEEKDAY_NAMES.get(text.strip().lower())
    if day is None:
        raise ValidationError("weekday", text, "is not a day of the week", "expected mon, tue, … sun")
    return day


# Entries of the zoneinfo database that are not places a person lives in.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@functools.cache
def _zone_names() -> dict[str, str]:
    return {name.lower(): name for name in zoneinfo.available_timezones() if name not in _NOT_ZONES}


def timezone(text: str) -> zoneinfo.ZoneInfo:
    """An IANA zone name; matched case-insensitively because people type `europe/london`."""
    value = text.strip()
    name = _zone_names().get(value.lower())
    if name is None:
        raise ValidationError(
            "time zone", text, "is not a time zone", "expected an IANA name, e.g. Europe/London"
        )
    return zoneinfo.ZoneInfo(name)
