"""Builders and hypothesis strategies shared by the `bot.core` tests."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from bot.core.idle import IdleVerdict, idle_verdict
from bot.core.policy import DEFAULT_POLICY, IdlePolicy, SafetyPolicy
from bot.core.safety import Actor, ResourceFacts, Role, SafetyContext
from providers.base import Instance, InstanceState, Lifecycle, UtilisationSeries

T = TypeVar("T")

# Wednesday 4 March 2026, 10:00 UTC: inside default working hours in UTC and in Europe.
NOW = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
OWNER = "U0OWNER"
ADMIN = Actor("U0ADMIN", frozenset({Role.ADMIN}))
USER = Actor(OWNER, frozenset({Role.USER}))

MANAGED_TAGS: dict[str, str] = {"runctl:managed": "true", "runctl:owner": OWNER, "runctl:project": "vision"}


def make_instance(
    iid: str = "i-0abc",
    *,
    now: datetime = NOW,
    age: timedelta = timedelta(hours=6),
    state: InstanceState = InstanceState.RUNNING,
    tags: Mapping[str, str] | None = None,
    lifecycle: Lifecycle = Lifecycle.ON_DEMAND,
) -> Instance:
    return Instance(
        id=iid,
        instance_type="g5.xlarge",
        state=state,
        lifecycle=lifecycle,
        launch_time=now - age,
        tags=dict(MANAGED_TAGS if tags is None else tags),
        region="eu-west-1",
    )


def series(
    iid: str,
    now: datetime,
    values: list[float],
    *,
    metric: str = "cpu",
    period: timedelta = timedelta(minutes=5),
    expected: int = 12,
) -> UtilisationSeries:
    """Datapoints stamped backwards from the window's end, newest last, like CloudWatch's period starts."""
    stamps = tuple(now - period * (len(values) - i) for i in range(len(values)))
    return UtilisationSeries(iid, metric, stamps, tuple(values), expected)


def idle_evidence(
    iid: str = "i-0abc", now: datetime = NOW, policy: IdlePolicy = DEFAULT_POLICY.idle, value: float = 1.0
) -> IdleVerdict:
    return idle_verdict({"cpu": series(iid, now, [value] * 12)}, policy, now)


def busy_evidence(
    iid: str = "i-0abc", now: datetime = NOW, policy: IdlePolicy = DEFAULT_POLICY.idle
) -> IdleVerdict:
    return idle_verdict({"cpu": series(iid, now, [1.0] * 11 + [60.0])}, policy, now)


def missing_evidence(
    iid: str = "i-0abc", now: datetime = NOW, policy: IdlePolicy = DEFAULT_POLICY.idle
) -> IdleVerdict:
    return idle_verdict({"cpu": series(iid, now, [1.0] * 5)}, policy, now)


def ready_facts(iid: str = "i-0abc", *, now: datetime = NOW, **changes: Any) -> ResourceFacts:
    """A machine every idle rule lets the bot stop at `now` (UTC owner, notified 2 h ago)."""
    facts = ResourceFacts(
        make_instance(iid, now=now),
        idle=idle_evidence(iid, now),
        owner_timezone="UTC",
        notified_at=now - timedelta(hours=2),
    )
    return replace(facts, **changes)


def auto_context(now: datetime = NOW, policy: SafetyPolicy = DEFAULT_POLICY, **changes: Any) -> SafetyContext:
    ctx = SafetyContext(now=now, policy=policy, automatic=True, fleet_size=100)
    return replace(ctx, **changes)


def command_context(
    actor: Actor = USER, now: datetime = NOW, policy: SafetyPolicy = DEFAULT_POLICY, **changes: Any
) -> SafetyContext:
    ctx = SafetyContext(now=now, policy=policy, actor=actor)
    return replace(ctx, **changes)


# ---- hypothesis strategies -------------------------------------------------------------------------

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Asia/Tokyo",
    "America/Sao_Paulo",
]
BAD_ZONES = ["Mars/Olympus", "", "../etc/passwd", "utc"]

nows = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC))
timezones = st.one_of(st.none(), st.sampled_from(ZONES + BAD_ZONES))
ages = st.timedeltas(min_value=timedelta(seconds=-600), max_value=timedelta(days=10))
states = st.sampled_from(list(InstanceState))

_truthy = st.sampled_from(["true", "True", "TRUE", " true "])
_falsy = st.sampled_from(["false", "", "no", "1", "yes"])
_flag = st.one_of(_truthy, _falsy)


@st.composite
def tag_sets(draw: st.DrawFn, now: datetime) -> dict[str, str]:
    tags: dict[str, str] = {}
    managed_by = draw(st.sampled_from(["runctl", "cli-created", "cli-user", "none", "false"]))
    if managed_by == "runctl":
        tags["runctl:managed"] = draw(_truthy)
    elif managed_by == "cli-created":
        tags["CreatedBy"] = draw(st.sampled_from(["runctl", "RunCtl"]))
    elif managed_by == "cli-user":
        tags["runctl:user"] = "alice"
    elif managed_by == "false":
        tags["runctl:managed"] = "false"
    if draw(st.booleans()):
        tags["runctl:owner"] = OWNER
    for key in ("runctl:protected", "runctl:important", "runctl:persistent"):
        if draw(st.integers(0, 3)) == 0:
            tags[key] = draw(_flag)
    keep = draw(st.sampled_from(["none", "past", "future", "never", "malformed", "naive-future"]))
    offset = draw(st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(days=3)))
    if keep == "past":
        tags["runctl:keep-until"] = (now - offset).isoformat()
    elif keep == "future":
        tags["runctl:keep-until"] = (now + offset).isoformat().replace("+00:00", "Z")
    elif keep == "naive-future":
        tags["runctl:keep-until"] = (now + offset).replace(tzinfo=None).isoformat()
    elif keep == "never":
        tags["runctl:keep-until"] = draw(st.sampled_from(["never", "NEVER"]))
    elif keep == "malformed":
        tags["runctl:keep-until"] = draw(st.sampled_from(["tomorrow", "2026-13-01", "soon", "31/12/2026"]))
    return tags


@st.composite
def idle_verdicts(draw: st.DrawFn, iid: str, now: datetime) -> IdleVerdict | None:
    kind = draw(st.sampled_from(["none", "random", "idle", "stale-idle", "other-machine"]))
    if kind == "none":
        return None
    if kind == "idle":
        return idle_evidence(iid, now)
    if kind == "stale-idle":
        lag = draw(st.timedeltas(min_value=timedelta(minutes=16), max_value=timedelta(hours=6)))
        return idle_evidence(iid, now - lag)
    if kind == "other-machine":
        return idle_evidence("i-0other", now)
    count = draw(st.integers(0, 14))
    values = draw(st.lists(st.floats(0, 100) | st.just(math.nan), min_size=count, max_size=count))
    metrics = {"cpu": series(iid, now, values)}
    if draw(st.booleans()):
        gpu = draw(st.lists(st.floats(0, 100), min_size=0, max_size=14))
        metrics["gpu"] = series(iid, now, gpu, metric="gpu")
    if draw(st.booleans()):
        del metrics["cpu"]
    return idle_verdict(metrics, DEFAULT_POLICY.idle, now, instance_id=iid)


def _either(draw: st.DrawFn, good: T, anything: st.SearchStrategy[T]) -> T:
    """Mostly the value that passes the rule, sometimes anything: so that deep rules get exercised too."""
    return good if draw(st.integers(0, 3)) else draw(anything)


@st.composite
def facts_for(draw: st.DrawFn, iid: str, now: datetime) -> ResourceFacts:
    """A machine that passes every rule except for a random few (often none) of its facts."""
    local_ok = [z for z in ZONES if _working(now, z)]
    good_zone = draw(st.sampled_from(local_ok)) if local_ok else "UTC"
    tags = draw(tag_sets(now)) if not draw(st.integers(0, 2)) else dict(MANAGED_TAGS)
    instance = Instance(
        id=iid,
        instance_type="p3.2xlarge",
        state=_either(draw, InstanceState.RUNNING, states),
        lifecycle=draw(st.sampled_from(list(Lifecycle))),
        launch_time=now - _either(draw, timedelta(hours=5), ages),
        tags=tags,
    )
    notified = _either(
        draw,
        timedelta(hours=2),
        st.one_of(st.none(), st.timedeltas(timedelta(minutes=-30), timedelta(hours=5))),
    )
    kept = _either(draw, None, st.one_of(st.none(), st.timedeltas(timedelta(hours=-5), timedelta(hours=5))))
    return ResourceFacts(
        instance,
        running_job=_either(draw, None, st.sampled_from([None, "job-7"])),
        jobs_known=_either(draw, True, st.booleans()),
        idle=_either(draw, idle_evidence(iid, now), idle_verdicts(iid, now)),
        owner_timezone=_either(draw, good_zone, timezones),
        notified_at=None if notified is None else now - notified,
        kept_until=None if kept is None else now + kept,
    )


def _working(now: datetime, zone: str) -> bool:
    local = now.astimezone(ZoneInfo(zone))
    return local.weekday() < 5 and 8 <= local.hour < 20


actors = st.builds(
    Actor,
    st.sampled_from([OWNER, "U0ADMIN", "U0OTHER"]),
    st.frozensets(st.sampled_from(list(Role))),
)
