"""Every validator with values that must pass and values that must not."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from datetime import time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.core import validation as v
from bot.core.validation import S3Uri, ValidationError, Weekday


def _rejects(validator: Callable[[str], Any], text: str) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        validator(text)
    return caught.value


# --- ValidationError ---------------------------------------------------------------------------------------


def test_validation_error_message_reads_as_a_sentence() -> None:
    error = ValidationError(
        "instance type", "g5.xlarg", "is not an EC2 instance type", "expected family.size"
    )
    assert error.message == "`g5.xlarg` is not an EC2 instance type (expected family.size)."
    assert str(error) == error.message
    assert (error.field, error.value, error.reason, error.hint) == (
        "instance type",
        "g5.xlarg",
        "is not an EC2 instance type",
        "expected family.size",
    )
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("", "(empty)"),
        ("<@U123>", "`&lt;@U123&gt;`"),
        ("a & b", "`a &amp; b`"),
        ("`rm`", "`'rm'`"),
        ("a\nb", "`a?b`"),
    ],
)
def test_quote_value_cannot_format_or_mention(value: str, shown: str) -> None:
    assert v.quote_value(value) == shown


def test_quote_value_truncates_long_input() -> None:
    shown = v.quote_value("x" * 500)
    assert len(shown) < 90 and shown.endswith("…`")


# --- EC2 ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("i-0123abcd", "i-0123abcd"),
        ("i-0123456789abcdef0", "i-0123456789abcdef0"),
        ("I-0123456789ABCDEF0", "i-0123456789abcdef0"),
        (" i-0123abcd ", "i-0123abcd"),
    ],
)
def test_instance_id_accepts(text: str, expected: str) -> None:
    assert v.instance_id(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "i-",
        "i-0123abc",  # 7
        "i-0123abcde",  # 9
        "i-0123456789abcdef",  # 16
        "i-0123456789abcdef01",  # 18
        "i-0123abcg",
        "0123abcd",
        "ami-0123abcd",
        "i_0123abcd",
        "i-0123 abcd",
        "i-0123456789abcdef0x",
    ],
)
def test_instance_id_rejects(text: str) -> None:
    error = _rejects(v.instance_id, text)
    assert "not an EC2 instance id" in error.message
    # The hint names both lengths the validator accepts (older ids have 8 hex digits).
    assert error.hint == "expected i- and 8 or 17 hex digits, e.g. i-0123456789abcdef0"


@pytest.mark.parametrize(
    "text",
    [
        "g5.xlarge",
        "p4d.24xlarge",
        "c7gn.16xlarge",
        "m7i-flex.large",
        "u-6tb1.metal",
        "u-12tb1.112xlarge",
        "trn1n.32xlarge",
        "inf2.48xlarge",
        "mac2-m2pro.metal",
        "mac-m4.metal",
        "t3.nano",
        "t4g.micro",
        "t3a.small",
        "a1.medium",
        "c5.large",
        "x2iedn.32xlarge",
        "is4gen.8xlarge",
        "r7iz.metal-16xl",
        "r8g.metal-24xl",
        "u7i-12tb.224xlarge",
        "p6-b200.48xlarge",
        "hpc7g.16xlarge",
        "dl2q.24xlarge",
        "g6e.xlarge",
    ],
)
def test_instance_type_accepts_real_types(text: str) -> None:
    assert v.instance_type(text) == text


def test_instance_type_is_case_insensitive_and_normalised() -> None:
    assert v.instance_type("G5.XLARGE") == "g5.xlarge"
    assert v.instance_type(" P4d.24XLarge ") == "p4d.24xlarge"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "g5",
        "g5.",
        ".xlarge",
        "g5..xlarge",
        "g5.xlarg",
        "g5 .xlarge",
        "g5. xlarge",
        "g5.xlarge extra",
        "5g.xlarge",
        "g.xlarge",
        "g5.0xlarge",
        "g5.huge",
        "g5_xlarge",
        "g5.xlarge.large",
        "g5.metal-xl",
        "g5-.xlarge",
        "i-0123abcd",
        "g5.x" + "l" * 50 + "arge",
    ],
)
def test_instance_type_rejects(text: str) -> None:
    error = _rejects(v.instance_type, text)
    assert error.message.endswith("(expected family.size, e.g. g5.xlarge).")


def test_ami_id() -> None:
    assert v.ami_id("ami-0123456789abcdef0") == "ami-0123456789abcdef0"
    assert v.ami_id("ami-0123abcd") == "ami-0123abcd"
    for bad in ("ami-", "ami-xyz12345", "i-0123abcd", "ami-0123456789abcdef"):
        assert _rejects(v.ami_id, bad).hint == "expected ami- and 8 or 17 hex digits"


@pytest.mark.parametrize("text", ["job-3f9a1c2b", "job-3f9a1c2b7d4e", "JOB-ABCDEF12", "job-" + "a" * 32])
def test_job_id_accepts(text: str) -> None:
    assert v.job_id(text) == text.lower()


@pytest.mark.parametrize(
    "text", ["", "job-", "job-1234567", "job-" + "a" * 33, "job-abc_defgh", "3f9a1c2b7d4e"]
)
def test_job_id_rejects(text: str) -> None:
    assert "not a job id" in _rejects(v.job_id, text).message


@pytest.mark.parametrize("text", ["llama", "a", "A-b_c.d", "x" * 64, "2026.q3"])
def test_project_accepts(text: str) -> None:
    assert v.project(text) == text


@pytest.mark.parametrize("text", ["", "x" * 65, "my project", "proj/x", "proj;rm", "émigré"])
def test_project_rejects(text: str) -> None:
    assert "not a valid project name" in _rejects(v.project, text).message


# --- Slack -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<@U0123ABCD|alice>", "U0123ABCD"),
        ("<@U0123ABCD>", "U0123ABCD"),
        ("<@W0123ABCD|bob smith>", "W0123ABCD"),
        ("U0123ABCD", "U0123ABCD"),
        ("W0123ABCDEF", "W0123ABCDEF"),
    ],
)
def test_slack_user_accepts(text: str, expected: str) -> None:
    assert v.slack_user(text) == expected


@pytest.mark.parametrize(
    "text", ["", "@alice", "alice", "u0123abcd", "<@C0123ABCD>", "C0123ABCD", "<#C0123ABCD>"]
)
def test_slack_user_rejects(text: str) -> None:
    assert "not a Slack user" in _rejects(v.slack_user, text).message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<#C0123ABCD|ml-team>", "C0123ABCD"),
        ("<#C0123ABCD>", "C0123ABCD"),
        ("C0123ABCD", "C0123ABCD"),
        ("G0123ABCD", "G0123ABCD"),
    ],
)
def test_slack_channel_accepts(text: str, expected: str) -> None:
    assert v.slack_channel(text) == expected


@pytest.mark.parametrize("text", ["", "#ml-team", "ml-team", "<@U0123ABCD>", "D0123ABCD", "c0123abcd"])
def test_slack_channel_rejects(text: str) -> None:
    assert "not a Slack channel" in _rejects(v.slack_channel, text).message


# --- S3 and paths ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s3://my-bucket/code/v3.tar.gz", S3Uri("my-bucket", "code/v3.tar.gz")),
        ("s3://my-bucket", S3Uri("my-bucket", "")),
        ("s3://my-bucket/", S3Uri("my-bucket", "")),
        ("s3://abc/", S3Uri("abc", "")),
        ("s3://a.b-c.d/x y/z", S3Uri("a.b-c.d", "x y/z")),
        ("s3://" + "b" * 63 + "/k", S3Uri("b" * 63, "k")),
        ("s3://bucket/ünïcode/ключ", S3Uri("bucket", "ünïcode/ключ")),
        ("s3://bucket//double", S3Uri("bucket", "/double")),
    ],
)
def test_s3_uri_accepts(text: str, expected: S3Uri) -> None:
    assert v.s3_uri(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "not an S3 URI"),
        ("my-bucket/key", "not an S3 URI"),
        ("S3://my-bucket/key", "not an S3 URI"),
        ("https://my-bucket.s3.amazonaws.com/key", "not an S3 URI"),
        ("s3://", "3-63 characters"),
        ("s3://ab/key", "3-63 characters"),
        ("s3://" + "b" * 64, "3-63 characters"),
        ("s3://My-Bucket/key", "lower-case"),
        ("s3://my_bucket/key", "lower-case"),
        ("s3://-bucket/key", "lower-case"),
        ("s3://bucket-/key", "lower-case"),
        ("s3://bucket./key", "lower-case"),
        ("s3://my..bucket/key", "two dots"),
        ("s3://192.168.5.4/key", "IP address"),
        ("s3://xn--bucket/key", "xn--"),
        ("s3://sthree-bucket/key", "sthree-"),
        ("s3://bucket-s3alias/key", "-s3alias"),
        ("s3://bucket--ol-s3/key", "--ol-s3"),
        ("s3://bucket/a\x00b", "control characters"),
        ("s3://bucket/a\nb", "control characters"),
        ("s3://bucket/" + "k" * 1025, "longer than 1024"),
        ("s3://bucket/" + "é" * 513, "longer than 1024"),
    ],
)
def test_s3_uri_rejects(text: str, reason: str) -> None:
    assert reason in _rejects(v.s3_uri, text).message


def test_s3_uri_value_object() -> None:
    uri = v.s3_uri("s3://my-bucket/ckpt/")
    assert str(uri) == "s3://my-bucket/ckpt/"
    assert uri.is_prefix
    assert not v.s3_uri("s3://my-bucket/code.tar.gz").is_prefix
    assert v.s3_uri("s3://my-bucket").is_prefix
    with pytest.raises(AttributeError):
        uri.bucket = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("train.py", "train.py"),
        ("src/train.py", "src/train.py"),
        ("./src//train.py", "src/train.py"),
        ("my..file.py", "my..file.py"),
        ("a/..b/c", "a/..b/c"),
        ("requirements.txt", "requirements.txt"),
        ("dir with space/x.py", "dir with space/x.py"),
        (".hidden/run.sh", ".hidden/run.sh"),
        ("x" * 1024, "x" * 1024),
    ],
)
def test_relative_path_accepts(text: str, expected: str) -> None:
    assert v.relative_path(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "is empty"),
        ("/etc/passwd", "relative"),
        ("~/train.py", "relative"),
        ("~root/x", "relative"),
        ("../train.py", ".. component"),
        ("src/../../x", ".. component"),
        ("src/..", ".. component"),
        ("..", ".. component"),
        ("a\x00b", "control characters"),
        ("a\nb", "control characters"),
        (".", "code directory"),
        ("./", "code directory"),
        ("x" * 1025, "longer than 1024"),
    ],
)
def test_relative_path_rejects(text: str, reason: str) -> None:
    assert reason in _rejects(v.relative_path, text).message


# --- environment and script arguments ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("EPOCHS=3", ("EPOCHS", "3")),
        ("_X=", ("_X", "")),
        ("A1_B2=x=y", ("A1_B2", "x=y")),
        ("MSG=; rm -rf / #", ("MSG", "; rm -rf / #")),
        ("CMD=$(id) `id` 'q' \"d\"", ("CMD", "$(id) `id` 'q' \"d\"")),
        ("MULTI=a\nb", ("MULTI", "a\nb")),
        ("WANDB_PROJECT=llama", ("WANDB_PROJECT", "llama")),
    ],
)
def test_env_assignment_accepts(text: str, expected: tuple[str, str]) -> None:
    assert v.env_assignment(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("EPOCHS", "not an assignment"),
        ("=3", "invalid variable name"),
        ("epochs=3", "invalid variable name"),
        ("1X=3", "invalid variable name"),
        ("A-B=3", "invalid variable name"),
        ("A B=3", "invalid variable name"),
        ("RUNCTL_JOB_ID=x", "RUNCTL_"),
        ("RUNCTL_OUTPUT=s3://x", "RUNCTL_"),
        ("PATH=/tmp", "does not allow"),
        ("LD_PRELOAD=/tmp/x.so", "does not allow"),
        ("LD_LIBRARY_PATH=/tmp", "does not allow"),
        ("DYLD_INSERT_LIBRARIES=x", "does not allow"),
        ("BASH_ENV=/tmp/x", "does not allow"),
        ("BASH_FUNC_ls%%=x", "invalid variable name"),
        ("IFS=x", "does not allow"),
        ("PYTHONSTARTUP=x.py", "does not allow"),
        ("AWS_SECRET_ACCESS_KEY=abc", "credentials"),
        ("AWS_ACCESS_KEY_ID=AKIA", "credentials"),
        ("X=a\x00b", "NUL"),
        ("X=" + "v" * 4097, "longer than 4096"),
    ],
)
def test_env_assignment_rejects(text: str, reason: str) -> None:
    assert reason in _rejects(v.env_assignment, text).message


def test_script_arg_is_data() -> None:
    for arg in ["; rm -rf / #", "$(id)", "`id`", "'", '"', "a\nb", "", "--lr=3e-4"]:
        assert v.script_arg(arg) == arg
    assert "NUL" in _rejects(v.script_arg, "a\x00b").message


def test_free_text() -> None:
    assert v.free_text("  done for today ", field="reason") == "done for today"
    assert "is empty" in _rejects(lambda t: v.free_text(t, field="reason"), "   ").message
    assert "longer than 500" in _rejects(lambda t: v.free_text(t, field="reason"), "x" * 501).message
    assert "NUL" in _rejects(lambda t: v.free_text(t, field="reason"), "a\x00b").message


# --- numbers, money, time ----------------------------------------------------------------------------------


def test_bounded_int() -> None:
    def lines(t: str) -> int:
        return v.bounded_int(t, field="lines", minimum=1, maximum=500)

    assert lines("1") == 1
    assert lines("500") == 500
    assert lines(" 42 ") == 42
    for bad in ["0", "501", "-1", "1.5", "ten", "", "1e3", "9" * 20]:
        assert "expected 1-500" in _rejects(lines, bad).message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$12.50", Decimal("12.50")),
        ("12.5", Decimal("12.5")),
        ("12", Decimal("12")),
        ("$0.3672", Decimal("0.3672")),
        (".45", Decimal("0.45")),
        ("$ 3", Decimal("3")),
    ],
)
def test_money_accepts(text: str, expected: Decimal) -> None:
    assert v.money(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "not an amount of money"),
        ("-1", "not an amount of money"),
        ("$-1", "not an amount of money"),
        ("1,000", "not an amount of money"),
        ("12.50$", "not an amount of money"),
        ("€5", "not an amount of money"),
        ("1e3", "not an amount of money"),
        ("NaN", "not an amount of money"),
        ("0", "more than zero"),
        ("$0.00", "more than zero"),
    ],
)
def test_money_rejects(text: str, reason: str) -> None:
    assert reason in _rejects(v.money, text).message


def test_money_maximum() -> None:
    assert v.money("1000", maximum=Decimal(1000)) == Decimal(1000)
    assert "limit of $1000" in _rejects(lambda t: v.money(t, maximum=Decimal(1000)), "1000.01").message


@pytest.mark.parametrize(
    ("text", "expected"),
    [("09:00", time(9, 0)), ("9:00", time(9, 0)), ("00:00", time(0, 0)), ("23:59", time(23, 59))],
)
def test_time_of_day_accepts(text: str, expected: time) -> None:
    assert v.time_of_day(text) == expected


@pytest.mark.parametrize("text", ["24:00", "12:60", "9", "09:00am", "9.30", "", "09:00:00", "-1:00"])
def test_time_of_day_rejects(text: str) -> None:
    assert "HH:MM" in _rejects(v.time_of_day, text).message


@pytest.mark.parametrize(
    ("text", "expected"),
    [("mon", Weekday.MON), ("Tue", Weekday.TUE), ("wednesday", Weekday.WED), ("SUN", Weekday.SUN)],
)
def test_weekday_accepts(text: str, expected: Weekday) -> None:
    assert v.weekday(text) == expected


def test_weekday_numbering_matches_datetime() -> None:
    assert [day.value for day in Weekday] == list(range(7))
    assert Weekday.MON.short == "mon"


@pytest.mark.parametrize("text", ["", "mo", "funday", "1", "weekend"])
def test_weekday_rejects(text: str) -> None:
    assert "day of the week" in _rejects(v.weekday, text).message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Europe/London", "Europe/London"),
        ("europe/london", "Europe/London"),
        ("UTC", "UTC"),
        ("America/Argentina/Buenos_Aires", "America/Argentina/Buenos_Aires"),
        ("Asia/Kolkata", "Asia/Kolkata"),
    ],
)
def test_timezone_accepts(text: str, expected: str) -> None:
    assert v.timezone(text) == ZoneInfo(expected)


@pytest.mark.parametrize(
    "text", ["", "Mars/Olympus", "localtime", "posixrules", "../etc/passwd", "/etc/localtime"]
)
def test_timezone_rejects(text: str) -> None:
    assert "not a time zone" in _rejects(v.timezone, text).message


# --- agreement with independent references -----------------------------------------------------------------
# Independent of the validators' own patterns: instance ids and types as AWS documents them, bucket names from
# the S3 naming rules page, path safety judged by resolving the path under a root.

_AWS_DOC_INSTANCE_IDS = {"i-1234567890abcdef0": True, "i-0598c7d356eba48d7": True, "i-12345678": True}
_AWS_DOC_BUCKETS = {
    "docexamplebucket1": True,
    "log-delivery-march-2020": True,
    "my-hosted-content": True,
    "docexamplewebsite.com": True,
    "www.docexamplewebsite.com": True,
    "my.example.s3.bucket": True,
    "doc_example_bucket": False,
    "DocExampleBucket": False,
    "doc-example-bucket-": False,
}


@pytest.mark.parametrize(("text", "valid"), sorted(_AWS_DOC_INSTANCE_IDS.items()))
def test_instance_ids_from_aws_docs(text: str, valid: bool) -> None:
    assert (v.instance_id(text) == text) is valid


@pytest.mark.parametrize(("bucket", "valid"), sorted(_AWS_DOC_BUCKETS.items()))
def test_bucket_names_from_the_s3_rules_page(bucket: str, valid: bool) -> None:
    if valid:
        assert v.s3_uri(f"s3://{bucket}/k").bucket == bucket
    else:
        _rejects(v.s3_uri, f"s3://{bucket}/k")


@pytest.mark.parametrize(
    "text", ["train.py", "a/b/../c", "../x", "a/../../x", "my..file", "./x", "x/./../y", ".../z", "a/...."]
)
def test_relative_path_agrees_with_resolving_under_a_root(text: str) -> None:
    root = "/srv/code"
    escapes = not posixpath.normpath(posixpath.join(root, text)).startswith(root + "/")
    has_dotdot = ".." in text.split("/")
    try:
        v.relative_path(text)
        accepted = True
    except ValidationError:
        accepted = False
    # Never accepts a path that escapes the root; refuses any `..` component even when it stays inside.
    assert not (accepted and escapes)
    assert accepted is not has_dotdot


def test_instance_type_agrees_with_family_dot_size_shape() -> None:
    shape = re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9-]+")
    for text in ["g5.xlarge", "u-6tb1.metal", "mac2-m2pro.metal", "m7i-flex.large"]:
        assert shape.fullmatch(v.instance_type(text))
