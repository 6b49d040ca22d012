"""Scheduler cycles at fleet scale: reconcile and one idle cycle over 1,000 and 10,000 machines on moto.

For each fleet size the managed running machines are seeded in moto (10 per reservation), with CPU
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
minimum ⌈N/1000⌉ DescribeInstances + ⌈candidates × metrics / 500⌉ GetMetricData. AWS caps a
DescribeInstances page at MaxResults=1000 *instances*; moto counts MaxResults in *reservations*. So that
each answer is the size AWS would send (which decides the parse peak), the fleet is launched 10 to a
reservation and the bot's page size is set to 100 here: every moto page then holds 1,000 instances, and
the listing takes ⌈N/1000⌉ requests, as on AWS. (One machine per reservation with the production page
size would be the same answers, but moto launches that fleet in quadratic time.)

The measured process imports only what the bot imports: the call counter below is the benchmark's own
(no moto, no pytest, nothing from `tests/`), and it records the number of queries per GetMetricData
request, not copies of the requests, so it adds nothing worth measuring to the bot's memory.

The metric period is one hour (one datapoint per machine in the 60-minute window). moto's GetMetricData
scans every stored datapoint for every query, so 12 points per machine at 10,000 machines would make the
run take hours in moto; the bot's request count does not depend on the period.
"""

from __future__ import annotations

import math
import multiprocessing
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import (
    FAKE_AWS_ENV,
    REGION,
    MotoProcess,
    bot_environment,
    environment,
    peak_rss_mb,
    put_cpu,
    rss_mb,
)

if TYPE_CHECKING:
    import boto3

    from bot.slack.standin import Channel, SlackStandIn, User

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
PER_RESERVATION = 10
# moto counts DescribeInstances' MaxResults in reservations: 100 reservations of 10 = AWS's 1,000 instances.
PAGE_RESERVATIONS = 100
SEED_THREADS = 4
TEAM_CHANNEL_ID = "C0BENCHCYC"
IMAGE_ID = "ami-0d27e0fb3bac4d724"  # one of the images moto ships


def _team_channel() -> Channel:
    from bot.slack.standin import Channel

    return Channel(id=TEAM_CHANNEL_ID, name="ml-fleet")


def _owners() -> list[User]:
    from bot.slack.standin import User

    return [User(id=f"U0BENCH{n:03d}", name=f"owner{n}", real_name=f"Owner {n}") for n in range(OWNERS)]


class CallCounter:
    """Requests per `service.Operation`, counted at the client (botocore `before-send`).

    Keeps only the number of queries of each GetMetricData request, so counting costs the measured process
    nothing that grows with the fleet.
    """

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self.metric_queries: list[int] = []
        self._lock = threading.Lock()

    def attach(self, session: boto3.Session) -> CallCounter:
        session.events.register_first("before-send", self._on_send, unique_id=f"bench-calls-{id(self)}")
        session.events.register_first(
            "provide-client-params.cloudwatch.GetMetricData",
            self._on_metric_params,
            unique_id=f"bench-queries-{id(self)}",
        )
        return self

    def _on_send(self, event_name: str, **_: Any) -> None:
        _event, service, operation = event_name.split(".", 2)  # "before-send.<service>.<Operation>"
        with self._lock:
            self._counts[f"{service}.{operation}"] += 1

    def _on_metric_params(self, params: Mapping[str, Any], **_: Any) -> None:
        with self._lock:
            self.metric_queries.append(len(params.get("MetricDataQueries", ())))

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self.metric_queries.clear()


def _launch(ec2: Any, count: int, tags: Mapping[str, str]) -> list[str]:
    """`count` machines in one RunInstances request (one reservation), tagged at launch."""
    response = ec2.run_instances(
        ImageId=IMAGE_ID,
        InstanceType="t3.micro",
        MinCount=count,
        MaxCount=count,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )
    return [str(i["InstanceId"]) for i in response["Instances"]]


def _bot_env(db_path: Path, standin: SlackStandIn, moto: MotoProcess) -> dict[str, str]:
    """`serve`'s variables, with reminders allowed at any hour so the DM path runs whenever this runs."""
    return bot_environment(
        db_path,
        standin,
        moto,
        RUNCTL_TEAM_CHANNEL=TEAM_CHANNEL_ID,
        RUNCTL_IDLE_ENFORCE="false",
        RUNCTL_IDLE_PERIOD_SECONDS=str(PERIOD_SECONDS),
        RUNCTL_WORK_START="00:00",
        RUNCTL_WORK_END="23:59",
        RUNCTL_WORK_DAYS="mon,tue,wed,thu,fri,sat,sun",
    )


def _seed(moto: MotoProcess, size: int, now: datetime) -> tuple[list[str], set[str], dict[str, float]]:
    """Machines in 10-instance reservations spread over the owners, then one datapoint each (if any)."""
    import boto3
    from botocore.config import Config

    from providers import tags

    owners = _owners()
    config = Config(retries={"total_max_attempts": 3, "mode": "standard"}, max_pool_connections=SEED_THREADS)
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto.endpoint_url, config=config)
    cloudwatch = boto3.client("cloudwatch", region_name=REGION, endpoint_url=moto.endpoint_url)
    timings: dict[str, float] = {}
    began = time.perf_counter()
    per_owner = math.ceil(size / len(owners))
    launches: list[tuple[int, dict[str, str]]] = []
    for n, owner in enumerate(owners):
        owner_tags = {tags.MANAGED: "true", tags.OWNER: owner.id, tags.PROJECT: f"{PROJECT}-{n % 4}"}
        remaining = min(per_owner, size - n * per_owner)
        while remaining > 0:
            launches.append((min(PER_RESERVATION, remaining), owner_tags))
            remaining -= PER_RESERVATION
    with ThreadPoolExecutor(max_workers=SEED_THREADS) as pool:
        ids = [i for batch in pool.map(lambda job: _launch(ec2, *job), launches) for i in batch]
    timings["run_instances_s"] = round(time.perf_counter() - began, 1)
    idle = set(ids[: int(size * IDLE_SHARE)])
    busy = ids[len(idle) : len(idle) + int(size * BUSY_SHARE)]
    stamp = now - timedelta(minutes=20)
    points = [(i, stamp, 1.0) for i in sorted(idle)] + [(i, stamp, 60.0) for i in busy]
    began = time.perf_counter()
    put_cpu(cloudwatch, points)
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

    rss_imports = rss_mb()
    with environment(env):
        settings = load_settings()
        upgrade(settings.database_url)
        engine = make_engine(settings.database_url)
        # moto takes longer than the production 30 s read timeout to render a 1,000-instance page of a
        # large fleet (its tag look-ups are linear per instance); only the emulator needs the patience.
        config = replace(
            aws_config_from(settings),
            read_timeout_seconds=READ_TIMEOUT_S,
            describe_page_size=PAGE_RESERVATIONS,
        )
        # The provider makes its own session, as in production; its clients do not exist yet, so the
        # counter attached to the session now sees every request.
        provider = AwsProvider(config, price_cache=Repositories.from_engine(engine).prices)
        calls = CallCounter().attach(provider.clients.session)
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
            reconcile_counts = {
                "instances": len(reconciled.instances),
                "transitions": len(reconciled.transitions),
            }
            # The scheduler drops a job's result when the job ends; so does the benchmark.
            del reconciled
            peak_after_reconcile = peak_rss_mb()
            rss_after_reconcile = rss_mb()
            calls.reset()
            began = time.perf_counter()
            report = scheduled.idle.run()
            cycle_s = time.perf_counter() - began
            cycle_calls = calls.snapshot()
            queries = list(calls.metric_queries)
        finally:
            services.shutdown()
            engine.dispose()
    return {
        "reconcile": {"wall_s": round(reconcile_s, 2), "api_calls": reconcile_calls, **reconcile_counts},
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
        "rss_mb_after_imports": rss_imports,
        "rss_mb_before": rss_before,
        "rss_mb_after_reconcile": rss_after_reconcile,
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
        "(min) | GetMetricData (min) | other cycle calls | idle flagged | Slack calls | RSS after imports "
        "(MB) | peak RSS after reconcile (MB) | peak RSS (MB) |",
        "| ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: |",
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
            f"{row['rss_mb_after_imports']:.0f} | {row['peak_rss_mb_after_reconcile']:.0f} | "
            f"{row['peak_rss_mb']:.0f} |"
        )
    lines += [
        "",
        "Minimum = ⌈N/1000⌉ DescribeInstances + ⌈candidates × metrics/500⌉ GetMetricData (every running "
        "machine is a candidate here, one metric each: no GPU metric is configured). AWS caps a "
        "DescribeInstances page at 1,000 instances; moto counts MaxResults in reservations, so the fleet is "
        f"launched {PER_RESERVATION} to a reservation and the bot asks for {PAGE_RESERVATIONS} per page: "
        "each moto page holds 1,000 instances, as AWS's would. Wall times are mostly moto's own work: its "
        "tag look-ups and GetMetricData scans are linear per item, so the benchmark raises the bot's read "
        f"timeout from 30 s to {READ_TIMEOUT_S:.0f} s. The Slack calls are "
        f"one digest DM per owner ({OWNERS} owners) and one digest in the team channel, plus look-ups.",
    ]
    return "\n".join(lines)


def run(quick: bool) -> dict[str, Any]:
    from bot.slack.standin import SlackStandIn

    sizes = QUICK_SIZES if quick else FULL_SIZES
    rows: list[dict[str, Any]] = []
    with (
        environment(FAKE_AWS_ENV),
        MotoProcess.start() as moto,
        SlackStandIn(users=_owners(), channels=[_team_channel()], rate_limit_per_channel=None) as standin,
    ):
        for size in sizes:
            rows.append(_one_size(moto, standin, size))
    result: dict[str, Any] = {"title": TITLE, "sizes": rows, "rss_goal_mb": RSS_GOAL_MB}
    result["markdown"] = render(result)
    return result
