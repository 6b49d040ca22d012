"""Scheduler cycles at fleet scale: reconcile and one idle cycle over 1,000 and 10,000 machines on moto.

For each fleet size the managed running machines are seeded in moto (1,000 per reservation), with CPU
datapoints for a mix (30 % idle, 10 % busy, the rest without datapoints, which the rules read as *not
idle*). The measured work runs in a fresh spawned process per size, so its peak RSS (the kernel's
high-water mark) belongs to the bot's work alone: the production services (`build_services`, the AWS
provider on a counted boto3 session, the Slack notifier talking to the stand-in) run
`TrackingService.reconcile()` and then `IdleCycleService.run()` once, with enforcement off (dry run: the
first cycle only marks and notifies, so nothing would be stopped in any case).

The bot's clock is three hours ahead, so moto's freshly launched machines look past the 2 h idle age, and
the datapoints are stamped at the shifted times. It is a `FixedClock` on a whole second rather than a
`ShiftedClock`: moto truncates GetMetricData's StartTime to the second and stamps the first bucket with
it, which lands a fraction of a second before the window the bot asked for and would be dropped.

API calls are counted at the client (botocore `before-send`) and compared with the theoretical
minimum ⌈N/1000⌉ DescribeInstances + ⌈candidates × metrics / 500⌉ GetMetricData. moto pages
DescribeInstances per *reservation*, not per instance, so with 1,000-machine reservations its listing
takes fewer pages than AWS would.

The metric period is one hour (one datapoint per machine in the 60-minute window). moto's GetMetricData
scans every stored datapoint for every query, so 12 points per machine at 10,000 machines would make the
run take hours in moto; the bot's request count does not depend on the period.
"""

from __future__ import annotations

import math
import multiprocessing
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from benchmarks.common import (
    FAKE_AWS_ENV,
    REGION,
    MotoProcess,
    bot_environment,
    environment,
    peak_rss_mb,
    rss_mb,
)
from bot.slack.standin import Channel, SlackStandIn, User
from providers import tags
from tests.support.moto import put_metric_points, run_instances

TITLE = "Scheduler cycles: reconcile and idle cycle at fleet scale"
FULL_SIZES = (1_000, 10_000)
QUICK_SIZES = (200, 1_000)
OWNERS = 20
IDLE_SHARE = 0.3
BUSY_SHARE = 0.1
SHIFT = timedelta(hours=3)
PERIOD_SECONDS = 3600
RSS_GOAL_MB = 150.0
PROJECT = "bench-cycle"
READ_TIMEOUT_S = 600.0
TEAM_CHANNEL = Channel(id="C0BENCHCYC", name="ml-fleet")


def _owners() -> list[User]:
    return [User(id=f"U0BENCH{n:03d}", name=f"owner{n}", real_name=f"Owner {n}") for n in range(OWNERS)]


def _bot_env(db_path: Path, standin: SlackStandIn, moto: MotoProcess) -> dict[str, str]:
    """`serve`'s variables, with reminders allowed at any hour so the DM path runs whenever this runs."""
    return bot_environment(
        db_path,
        standin,
        moto,
        RUNCTL_TEAM_CHANNEL=TEAM_CHANNEL.id,
        RUNCTL_IDLE_ENFORCE="false",
        RUNCTL_IDLE_PERIOD_SECONDS=str(PERIOD_SECONDS),
        RUNCTL_WORK_START="00:00",
        RUNCTL_WORK_END="23:59",
        RUNCTL_WORK_DAYS="mon,tue,wed,thu,fri,sat,sun",
    )


def _seed(moto: MotoProcess, size: int, now: datetime) -> tuple[list[str], set[str], dict[str, float]]:
    """Machines in 1,000-instance reservations spread over the owners, then one datapoint each (if any)."""
    owners = _owners()
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto.endpoint_url)
    cloudwatch = boto3.client("cloudwatch", region_name=REGION, endpoint_url=moto.endpoint_url)
    timings: dict[str, float] = {}
    began = time.perf_counter()
    ids: list[str] = []
    per_owner = math.ceil(size / len(owners))
    for n, owner in enumerate(owners):
        count = min(per_owner, size - len(ids))
        if count <= 0:
            break
        ids += run_instances(
            ec2,
            count,
            tags={tags.MANAGED: "true", tags.OWNER: owner.id, tags.PROJECT: f"{PROJECT}-{n % 4}"},
        )
    timings["run_instances_s"] = round(time.perf_counter() - began, 1)
    idle = set(ids[: int(size * IDLE_SHARE)])
    busy = ids[len(idle) : len(idle) + int(size * BUSY_SHARE)]
    stamp = now - timedelta(minutes=20)
    points = [(i, stamp, 1.0) for i in sorted(idle)] + [(i, stamp, 60.0) for i in busy]
    began = time.perf_counter()
    put_metric_points(cloudwatch, "AWS/EC2", "CPUUtilization", points)
    timings["put_metric_data_s"] = round(time.perf_counter() - began, 1)
    timings["datapoints"] = float(len(points))
    return ids, idle, timings


def _measure(env: dict[str, str], now: datetime) -> dict[str, Any]:
    """Child process: reconcile, then one idle cycle, with the production services; figures back."""
    from bot.config import load_settings
    from bot.core.clock import FixedClock
    from bot.scheduler.runtime import ScheduledServices
    from bot.slack.client import make_web_client
    from bot.slack.notifier import SlackNotifier
    from bot.wiring import aws_config_from, build_services
    from providers.aws.provider import AwsProvider
    from storage.engine import make_engine
    from storage.migrate import upgrade
    from storage.repositories import Repositories
    from tests.support.moto import ApiCallCounter

    with environment(env):
        settings = load_settings()
        upgrade(settings.database_url)
        engine = make_engine(settings.database_url)
        session = boto3.Session(region_name=REGION)
        calls = ApiCallCounter().attach(session)
        # moto answers a 10,000-machine listing in one page and takes longer than the production 30 s
        # read timeout to render it; AWS pages by instance, so only the emulator needs the patience.
        config = replace(aws_config_from(settings), read_timeout_seconds=READ_TIMEOUT_S)
        provider = AwsProvider(config, session=session, price_cache=Repositories.from_engine(engine).prices)
        notifier = SlackNotifier(make_web_client(settings))
        services = build_services(
            settings, engine=engine, notifier=notifier, provider=provider, clock=FixedClock(now)
        )
        scheduled = ScheduledServices.build(services, settings)
        try:
            rss_before = rss_mb()
            calls.reset()
            began = time.perf_counter()
            reconciled = services.tracking.reconcile()
            reconcile_s = time.perf_counter() - began
            reconcile_calls = calls.snapshot()
            peak_after_reconcile = peak_rss_mb()
            calls.reset()
            began = time.perf_counter()
            report = scheduled.idle.run()
            cycle_s = time.perf_counter() - began
            cycle_calls = calls.snapshot()
            queries = [len(p.get("MetricDataQueries", [])) for p in calls.params("cloudwatch.GetMetricData")]
        finally:
            services.shutdown()
            engine.dispose()
    return {
        "reconcile": {
            "wall_s": round(reconcile_s, 2),
            "api_calls": reconcile_calls,
            "instances": len(reconciled.instances),
            "transitions": len(reconciled.transitions),
        },
        "cycle": {
            "wall_s": round(cycle_s, 2),
            "api_calls": cycle_calls,
            "fleet_size": report.fleet_size,
            "candidates": report.candidates,
            "metric_queries": sum(queries),
            "queries_per_call": queries,
            "steps": {k: len(v) for k, v in report.steps.items()},
            "would_stop": len(report.would_stop),
            "stopped": len(report.stopped),
        },
        "rss_mb_before": rss_before,
        "peak_rss_mb_after_reconcile": peak_after_reconcile,
        "peak_rss_mb": peak_rss_mb(),
    }


def _slack_counts(standin: SlackStandIn) -> dict[str, int]:
    return dict(Counter(c.method for c in standin.calls()))


def _one_size(moto: MotoProcess, standin: SlackStandIn, size: int) -> dict[str, Any]:
    moto.reset()
    standin.reset()
    now = (datetime.now(UTC) + SHIFT).replace(microsecond=0)
    _ids, idle, seeding = _seed(moto, size, now)
    print(
        f"  N={size}: seeded in {seeding['run_instances_s'] + seeding['put_metric_data_s']:.0f} s", flush=True
    )
    with tempfile.TemporaryDirectory(prefix="runctl-bench-cycle-") as tmp:
        env = _bot_env(Path(tmp) / "bot.db", standin, moto)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            measured = pool.submit(_measure, env, now).result()
    cycle = measured["cycle"]
    flagged = cycle["steps"].get("mark", 0) + cycle["steps"].get("notify", 0)
    if cycle["fleet_size"] != size or cycle["candidates"] != size:
        raise RuntimeError(
            f"N={size}: the cycle saw {cycle['fleet_size']} machines, {cycle['candidates']} candidates"
        )
    if flagged != len(idle):
        raise RuntimeError(
            f"N={size}: {len(idle)} machines are idle but the cycle flagged {flagged}: {cycle['steps']}"
        )
    if cycle["stopped"]:
        raise RuntimeError(f"N={size}: a dry-run cycle stopped {cycle['stopped']} machines")
    metrics_per_candidate = cycle["metric_queries"] / cycle["candidates"]
    minimum = {
        "ec2.DescribeInstances": math.ceil(size / 1000),
        "cloudwatch.GetMetricData": math.ceil(cycle["candidates"] * metrics_per_candidate / 500),
    }
    slack = _slack_counts(standin)
    print(
        f"  N={size}: reconcile {measured['reconcile']['wall_s']:.1f} s, cycle {cycle['wall_s']:.1f} s, "
        f"peak RSS {measured['peak_rss_mb']:.0f} MB",
        flush=True,
    )
    return {
        "machines": size,
        "idle": len(idle),
        "seeding": seeding,
        **measured,
        "metrics_per_candidate": metrics_per_candidate,
        "theoretical_minimum": minimum,
        "slack_calls": slack,
        "owners": OWNERS,
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        "Per fleet size: one `reconcile` then one idle cycle (enforcement **off**, dry run), production "
        f"services in a fresh process, clock shifted {SHIFT.seconds // 3600} h. Mix: "
        f"{IDLE_SHARE:.0%} idle, {BUSY_SHARE:.0%} busy, the rest without datapoints (not idle). "
        f"API calls counted at the client; Slack calls at the stand-in (rate limiting off). "
        f"Peak RSS goal ≤ {RSS_GOAL_MB:.0f} MB at 10,000.",
        "",
        "| machines | seeding (s) | reconcile (s) | reconcile calls | cycle (s) | DescribeInstances "
        "(min) | GetMetricData (min) | other cycle calls | idle flagged | Slack calls | peak RSS (MB) |",
        "| ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | ---: | --- | ---: |",
    ]
    for row in result["sizes"]:
        cycle, minimum = row["cycle"], row["theoretical_minimum"]
        calls = cycle["api_calls"]
        describe = calls.get("ec2.DescribeInstances", 0)
        metrics = calls.get("cloudwatch.GetMetricData", 0)
        other = {k: v for k, v in calls.items() if not k.endswith((".DescribeInstances", ".GetMetricData"))}
        seeding = row["seeding"]
        lines.append(
            f"| {row['machines']:,} | {seeding['run_instances_s'] + seeding['put_metric_data_s']:.0f} | "
            f"{row['reconcile']['wall_s']:.2f} | "
            f"{', '.join(f'{k} {v}' for k, v in sorted(row['reconcile']['api_calls'].items()))} | "
            f"{cycle['wall_s']:.2f} | {describe} ({minimum['ec2.DescribeInstances']}) | "
            f"{metrics} ({minimum['cloudwatch.GetMetricData']}) | "
            f"{', '.join(f'{k} {v}' for k, v in sorted(other.items())) or '—'} | "
            f"{row['idle']:,} | {', '.join(f'{k} {v}' for k, v in sorted(row['slack_calls'].items()))} | "
            f"{row['peak_rss_mb']:.0f} |"
        )
    lines += [
        "",
        "Minimum = ⌈N/1000⌉ DescribeInstances + ⌈candidates × metrics/500⌉ GetMetricData (every running "
        "machine is a candidate here, one metric each: no GPU metric is configured). moto pages "
        "DescribeInstances per reservation and the fleet is in 1,000-machine reservations, so moto "
        "answers in fewer pages than AWS would; the bot asks with MaxResults=1000. Wall times include "
        "moto's own work: its GetMetricData scans every stored datapoint per query, and it renders a whole "
        "listing of up to 1,000 reservations as one XML page, so the benchmark raises the bot's read timeout "
        f"from 30 s to {READ_TIMEOUT_S:.0f} s. The Slack calls are "
        f"one digest DM per owner ({OWNERS} owners) and one digest in the team channel, plus look-ups.",
    ]
    return "\n".join(lines)


def run(quick: bool) -> dict[str, Any]:
    sizes = QUICK_SIZES if quick else FULL_SIZES
    rows: list[dict[str, Any]] = []
    with (
        environment(FAKE_AWS_ENV),
        MotoProcess.start() as moto,
        SlackStandIn(users=_owners(), channels=[TEAM_CHANNEL], rate_limit_per_channel=None) as standin,
    ):
        for size in sizes:
            rows.append(_one_size(moto, standin, size))
    result: dict[str, Any] = {"title": TITLE, "sizes": rows, "rss_goal_mb": RSS_GOAL_MB}
    result["markdown"] = render(result)
    return result
