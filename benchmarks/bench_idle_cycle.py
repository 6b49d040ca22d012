"""Scheduler cycles at fleet scale: reconcile and one idle cycle over 1,000 and 10,000 machines on moto.

For each fleet size the managed running machines are seeded in moto (10 per reservation, each reservation
one category): 30 % idle, 10 % busy, 5 % protected and 5 % kept (both with idle CPU, so a bot that let them
through would both query and flag them), the rest without datapoints, which the rules read as *not idle*.
The measured work runs in a fresh spawned process per size, so its peak RSS (the kernel's high-water mark)
belongs to the bot's work alone: the production services (`build_services`, the AWS provider, the Slack
notifier talking to the stand-in) run `TrackingService.reconcile()` and then `IdleCycleService.run()` once,
with enforcement off (dry run: the first cycle only marks and notifies, so nothing would be stopped anyway).

The bot's clock is three hours ahead, so moto's freshly launched machines look past the 2 h idle age, and
the datapoints are stamped at the shifted times. It is a `FixedClock` on a whole second rather than a
`ShiftedClock`: moto truncates GetMetricData's StartTime to the second and stamps the first bucket with
it, which lands a fraction of a second before the window the bot asked for and would be dropped.

API calls are counted at the wire: the bot's `AWS_ENDPOINT_URL` is the counting reverse proxy of
`benchmarks/custodian/proxy.py` (as in the Cloud Custodian benchmark), which also reads the number of
queries in each GetMetricData body. Nothing counts inside the measured process; between its two phases it
only asks the proxy for the tally and to reset it, outside the timed work. The calls are held against the
minimum worked out from the seed and the configuration, not from the bot's own figures:
⌈N/1000⌉ DescribeInstances + ⌈candidates × metrics / 500⌉ GetMetricData, where the candidates are the
seeded machines that are managed, running, old enough and neither protected nor kept, and the metrics are
those the bot's settings configure (CPU, plus the GPU metric when one is set). The cycle must make exactly
these calls and nothing else; the result says whether it did.

AWS caps a DescribeInstances page at MaxResults=1000 *instances*; moto counts MaxResults in
*reservations*. So that each answer is the size AWS would send (which decides the parse peak), the fleet is
launched 10 to a reservation and the bot's page size is set to 100 here: every moto page then holds 1,000
instances, and the listing takes ⌈N/1000⌉ requests, as on AWS. (One machine per reservation with the
production page size would be the same answers, but moto launches that fleet in quadratic time.)

The metric period of the size rows is one hour (one datapoint per machine in the 60-minute window): moto's
GetMetricData scans every stored datapoint for every query, so the bot's default 5-minute period (12
points per machine) at 10,000 machines would take moto hours. At 1,000 machines the run is repeated with
the 5-minute period and 12 datapoints per machine, to measure whether the period changes the bot's memory
or calls.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, replace
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
from benchmarks.custodian.proxy import CALLS_PATH, RESET_PATH, CountingProxy, ProxyStats

if TYPE_CHECKING:
    from bot.slack.standin import Channel, SlackStandIn, User

TITLE = "Scheduler cycles: reconcile and idle cycle at fleet scale"
FULL_SIZES = (1_000, 10_000)
QUICK_SIZES = (200, 1_000)
#: The size at which the 5-minute period is measured against the 1-hour one (quick: the smallest size).
FULL_COMPARE_SIZE = 1_000
QUICK_COMPARE_SIZE = 200
OWNERS = 20
SHIFT = timedelta(hours=3)
LONG_PERIOD_S = 3600  # the size rows: one datapoint per machine and window
DEFAULT_PERIOD_S = 300  # the bot's default (RUNCTL_IDLE_PERIOD_SECONDS): 12 datapoints per window
WINDOW = timedelta(minutes=60)  # the bot's default idle window, left as it is
RSS_GOAL_MB = 150.0
PROJECT = "bench-cycle"
READ_TIMEOUT_S = 600.0
PER_RESERVATION = 10
# moto counts DescribeInstances' MaxResults in reservations: 100 reservations of 10 = AWS's 1,000 instances.
PAGE_RESERVATIONS = 100
AWS_PAGE = 1000  # instances per DescribeInstances page on AWS
METRIC_QUERIES_PER_CALL = 500  # GetMetricData's limit
SEED_THREADS = 4
TEAM_CHANNEL_ID = "C0BENCHCYC"
IMAGE_ID = "ami-0d27e0fb3bac4d724"  # one of the images moto ships


@dataclass(frozen=True)
class Category:
    name: str
    candidate: bool  # managed, running, old enough, not protected or kept: the metrics are fetched
    cpu: float | None  # the value of each datapoint, None for no datapoints
    tags: tuple[tuple[str, str], ...] = ()


def _categories() -> tuple[Category, ...]:
    from providers import tags

    return (
        Category("idle", True, 1.0),
        Category("busy", True, 60.0),
        Category("protected", False, 1.0, ((tags.PROTECTED, "true"),)),
        Category("kept", False, 1.0, ((tags.KEEP_UNTIL, tags.KEEP_FOREVER),)),
        Category("no data", True, None),
    )


#: Reservations cycle through this pattern of category names: 30 % idle, 10 % busy, 5 % protected,
#: 5 % kept, 50 % without datapoints, spread over the owners.
PATTERN = ("idle",) * 6 + ("busy",) * 2 + ("protected", "kept") + ("no data",) * 10


def _team_channel() -> Channel:
    from bot.slack.standin import Channel

    return Channel(id=TEAM_CHANNEL_ID, name="ml-fleet")


def _owners() -> list[User]:
    from bot.slack.standin import User

    return [User(id=f"U0BENCH{n:03d}", name=f"owner{n}", real_name=f"Owner {n}") for n in range(OWNERS)]


# --- the minimum, from the seed and the configuration ----------------------------------------------------


def expected_calls(machines: int, candidates: int, metrics: int) -> dict[str, int]:
    """The fewest requests one idle cycle can make: one listing, and the candidates' metrics in full batches.

    `machines` are the non-terminated machines the listing returns (⌈N/1000⌉ pages on AWS), `candidates`
    those the metric-free rules leave, `metrics` the metrics configured per machine.
    """
    minimum = {"ec2.DescribeInstances": max(1, math.ceil(machines / AWS_PAGE))}
    if candidates and metrics:
        minimum["cloudwatch.GetMetricData"] = math.ceil(candidates * metrics / METRIC_QUERIES_PER_CALL)
    return minimum


def configured_metrics(env: Mapping[str, str]) -> int:
    """How many metrics per machine the bot is configured to read, from the settings it is given."""
    from bot.config import load_settings
    from bot.wiring import aws_config_from
    from providers.aws.metrics import metric_specs

    with environment(env):
        return len(metric_specs(aws_config_from(load_settings())))


def check_calls(calls: Mapping[str, int], minimum: Mapping[str, int]) -> list[str]:
    """What differs between the calls made and the minimum (every call made must be one of the minimum)."""
    problems = [f"{key} {calls.get(key, 0)} (minimum {value})" for key, value in minimum.items()]
    problems = [p for p, key in zip(problems, minimum, strict=True) if calls.get(key, 0) != minimum[key]]
    problems += [f"{key} {value} (not needed)" for key, value in sorted(calls.items()) if key not in minimum]
    return problems


# --- seeding --------------------------------------------------------------------------------------------


@dataclass
class Seeded:
    by_category: dict[str, list[str]]
    owner_of: dict[str, str]
    datapoints: int
    timings: dict[str, float]

    @property
    def machines(self) -> int:
        return sum(len(ids) for ids in self.by_category.values())

    def ids(self, *, candidate: bool | None = None, category: str | None = None) -> list[str]:
        wanted = {
            c.name
            for c in _categories()
            if (candidate is None or c.candidate == candidate) and category in (None, c.name)
        }
        return [i for name in wanted for i in self.by_category.get(name, [])]

    def owners_of(self, ids: Sequence[str]) -> set[str]:
        return {self.owner_of[i] for i in ids}


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


def stamps(now: datetime, period_s: int, window: timedelta = WINDOW) -> list[datetime]:
    """One datapoint in the middle of each period of the window that ends at `now`."""
    period = timedelta(seconds=period_s)
    return [now - period * k - period / 2 for k in range(int(window / period))]


def _seed(moto: MotoProcess, size: int, now: datetime, period_s: int) -> Seeded:
    """Reservations of 10 over the owners, one category each (`PATTERN`), then the datapoints."""
    import boto3
    from botocore.config import Config

    from providers import tags

    owners = _owners()
    categories = {c.name: c for c in _categories()}
    config = Config(retries={"total_max_attempts": 3, "mode": "standard"}, max_pool_connections=SEED_THREADS)
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto.endpoint_url, config=config)
    cloudwatch = boto3.client("cloudwatch", region_name=REGION, endpoint_url=moto.endpoint_url)
    timings: dict[str, float] = {}
    began = time.perf_counter()
    per_owner = math.ceil(size / len(owners))
    launches: list[tuple[int, dict[str, str], str, str]] = []
    for n, owner in enumerate(owners):
        remaining = min(per_owner, size - n * per_owner)
        while remaining > 0:
            category = categories[PATTERN[len(launches) % len(PATTERN)]]
            owner_tags = {
                tags.MANAGED: "true",
                tags.OWNER: owner.id,
                tags.PROJECT: f"{PROJECT}-{n % 4}",
                **dict(category.tags),
            }
            launches.append((min(PER_RESERVATION, remaining), owner_tags, category.name, owner.id))
            remaining -= PER_RESERVATION
    with ThreadPoolExecutor(max_workers=SEED_THREADS) as pool:
        batches = list(pool.map(lambda job: _launch(ec2, job[0], job[1]), launches))
    timings["run_instances_s"] = round(time.perf_counter() - began, 1)
    by_category: dict[str, list[str]] = {name: [] for name in categories}
    owner_of: dict[str, str] = {}
    for (_count, _tags, name, owner_id), batch in zip(launches, batches, strict=True):
        by_category[name].extend(batch)
        owner_of.update(dict.fromkeys(batch, owner_id))
    points = [
        (instance_id, when, category.cpu)
        for category in categories.values()
        if category.cpu is not None
        for instance_id in by_category[category.name]
        for when in stamps(now, period_s)
    ]
    began = time.perf_counter()
    put_cpu(cloudwatch, points)
    timings["put_metric_data_s"] = round(time.perf_counter() - began, 1)
    return Seeded(by_category, owner_of, len(points), timings)


# --- the measured process -------------------------------------------------------------------------------


def _bot_env(
    db_path: Path, standin: SlackStandIn, moto: MotoProcess, proxy: CountingProxy, period_s: int
) -> dict[str, str]:
    """`serve`'s variables, AWS through the counting proxy, reminders allowed at any hour (so the DMs go)."""
    env = bot_environment(
        db_path,
        standin,
        moto,
        RUNCTL_TEAM_CHANNEL=TEAM_CHANNEL_ID,
        RUNCTL_IDLE_ENFORCE="false",
        RUNCTL_IDLE_PERIOD_SECONDS=str(period_s),
        RUNCTL_WORK_START="00:00",
        RUNCTL_WORK_END="23:59",
        RUNCTL_WORK_DAYS="mon,tue,wed,thu,fri,sat,sun",
    )
    return {**env, "AWS_ENDPOINT_URL": proxy.url}


def _proxy(url: str, path: str, *, post: bool = False) -> dict[str, Any]:
    """Ask the counting proxy for its tally or to reset it (a control request, never forwarded to moto)."""
    request = urllib.request.Request(url + path, method="POST" if post else "GET", data=b"" if post else None)
    with urllib.request.urlopen(request, timeout=60) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def _measure(env: dict[str, str], now: datetime) -> dict[str, Any]:
    """Child process: reconcile, then one idle cycle, with the production services; figures back.

    The proxy's tallies are fetched and reset between the phases, outside the timed work.
    """
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
    proxy_url = env["AWS_ENDPOINT_URL"]
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
        provider = AwsProvider(config, price_cache=Repositories.from_engine(engine).prices)
        notifier = SlackNotifier(make_web_client(settings))
        services = build_services(
            settings, engine=engine, notifier=notifier, provider=provider, clock=FixedClock(now)
        )
        scheduled = ScheduledServices.build(services, settings)
        try:
            rss_before = rss_mb()
            _proxy(proxy_url, RESET_PATH, post=True)
            began = time.perf_counter()
            reconciled = services.tracking.reconcile()
            reconcile_s = time.perf_counter() - began
            reconcile_wire = _proxy(proxy_url, CALLS_PATH)
            reconcile_counts = {
                "instances": len(reconciled.instances),
                "transitions": len(reconciled.transitions),
            }
            # The scheduler drops a job's result when the job ends; so does the benchmark.
            del reconciled
            peak_after_reconcile = peak_rss_mb()
            rss_after_reconcile = rss_mb()
            _proxy(proxy_url, RESET_PATH, post=True)
            began = time.perf_counter()
            report = scheduled.idle.run()
            cycle_s = time.perf_counter() - began
            cycle_wire = _proxy(proxy_url, CALLS_PATH)
        finally:
            services.shutdown()
            engine.dispose()
    return {
        "reconcile": {"wall_s": round(reconcile_s, 2), "wire": reconcile_wire, **reconcile_counts},
        "cycle": {
            "wall_s": round(cycle_s, 2),
            "wire": cycle_wire,
            "fleet_size": report.fleet_size,
            "candidates": report.candidates,
            "flagged": sorted({*report.steps.get("mark", ()), *report.steps.get("notify", ())}),
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


# --- one measurement ------------------------------------------------------------------------------------


def slack_summary(standin: SlackStandIn, team_channel: str) -> dict[str, Any]:
    """Slack calls per method, and the digests among the posts: in the team channel, and to everyone else."""
    calls = standin.calls()
    posts = [c for c in calls if c.method == "chat.postMessage"]
    team = sum(1 for c in posts if isinstance(c.params, dict) and c.params.get("channel") == team_channel)
    return {
        "calls": dict(sorted(Counter(c.method for c in calls).items())),
        "team_digests": team,
        "dm_digests": len(posts) - team,
    }


def _phase(wire: Mapping[str, Any], wall_s: float) -> dict[str, Any]:
    stats = ProxyStats.from_json(wire)
    return {
        "wall_s": wall_s,
        "api_calls": dict(sorted(stats.calls.items())),
        "api_errors": stats.errors,
        "in_aws_s": round(stats.busy_seconds, 2),
        "own_s": round(max(0.0, wall_s - stats.busy_seconds), 2),
        "queries_per_call": stats.items.get("cloudwatch.GetMetricData", []),
    }


def _one_size(
    moto: MotoProcess, proxy: CountingProxy, standin: SlackStandIn, size: int, period_s: int
) -> dict[str, Any]:
    moto.reset()
    standin.reset()
    now = (datetime.now(UTC) + SHIFT).replace(microsecond=0)
    seeded = _seed(moto, size, now, period_s)
    seeding = seeded.timings
    print(
        f"  N={size}, period {period_s} s: seeded in "
        f"{seeding['run_instances_s'] + seeding['put_metric_data_s']:.0f} s",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="runctl-bench-cycle-") as tmp:
        env = _bot_env(Path(tmp) / "bot.db", standin, moto, proxy, period_s)
        metrics = configured_metrics(env)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            measured = pool.submit(_measure, env, now).result()
    cycle_raw, reconcile_raw = measured.pop("cycle"), measured.pop("reconcile")
    cycle = {k: v for k, v in cycle_raw.items() if k not in ("wire", "flagged")}
    cycle.update(_phase(cycle_raw["wire"], cycle_raw["wall_s"]))
    reconcile = {k: v for k, v in reconcile_raw.items() if k != "wire"}
    reconcile.update(_phase(reconcile_raw["wire"], reconcile_raw["wall_s"]))

    candidates = seeded.ids(candidate=True)
    idle = seeded.ids(category="idle")
    if cycle["fleet_size"] != seeded.machines or cycle["candidates"] != len(candidates):
        raise RuntimeError(
            f"N={size}: the cycle saw {cycle['fleet_size']} machines and {cycle['candidates']} candidates; "
            f"the seed has {seeded.machines} and {len(candidates)}"
        )
    if set(cycle_raw["flagged"]) != set(idle):
        raise RuntimeError(
            f"N={size}: {len(idle)} machines are idle but the cycle flagged {len(cycle_raw['flagged'])} "
            f"(of which {len(set(cycle_raw['flagged']) - set(idle))} not idle): {cycle['steps']}"
        )
    if cycle["stopped"]:
        raise RuntimeError(f"N={size}: a dry-run cycle stopped {cycle['stopped']} machines")
    if cycle["api_errors"] or reconcile["api_errors"]:
        raise RuntimeError(f"N={size}: AWS errors {cycle['api_errors'] or reconcile['api_errors']}")

    minimum = expected_calls(seeded.machines, len(candidates), metrics)
    problems = check_calls(cycle["api_calls"], minimum)
    queries = cycle["queries_per_call"]
    if sum(queries) != len(candidates) * metrics:
        problems.append(
            f"{sum(queries)} metric queries for {len(candidates)} candidates × {metrics} metric(s)"
        )
    reconcile_minimum = expected_calls(seeded.machines, 0, metrics)
    reconcile_problems = check_calls(reconcile["api_calls"], reconcile_minimum)

    slack = slack_summary(standin, TEAM_CHANNEL_ID)
    owners_idle = len(seeded.owners_of(idle))
    slack_problems = [
        f"{slack[key]} {what} digests, expected {owners_idle}"
        for key, what in (("dm_digests", "DM"), ("team_digests", "team-channel"))
        if slack[key] != owners_idle
    ]
    print(
        f"  N={size}, period {period_s} s: reconcile {reconcile['wall_s']:.1f} s, "
        f"cycle {cycle['wall_s']:.1f} s "
        f"({cycle['in_aws_s']:.1f} s in moto), peak RSS {measured['peak_rss_mb']:.0f} MB, "
        f"calls {'= minimum' if not problems else 'NOT minimum: ' + '; '.join(problems)}",
        flush=True,
    )
    return {
        "machines": size,
        "period_s": period_s,
        "datapoints_per_machine": len(stamps(now, period_s)),
        "datapoints": seeded.datapoints,
        "categories": {name: len(ids) for name, ids in seeded.by_category.items()},
        "candidates_seeded": len(candidates),
        "idle": len(idle),
        "metrics_configured": metrics,
        "seeding": seeding,
        "reconcile": reconcile,
        "cycle": cycle,
        **measured,
        "minimum": minimum,
        "minimum_met": not problems,
        "minimum_problems": problems,
        "reconcile_minimum": reconcile_minimum,
        "reconcile_minimum_met": not reconcile_problems,
        "reconcile_minimum_problems": reconcile_problems,
        "slack": slack,
        "owners": OWNERS,
        "owners_with_idle": owners_idle,
        "slack_met": not slack_problems,
        "slack_problems": slack_problems,
    }


# --- the report -----------------------------------------------------------------------------------------


def _calls(calls: Mapping[str, int], *, strip_service: bool = True) -> str:
    """`Operation count, ...`, without the `service.` prefix of AWS keys."""
    return (
        ", ".join(f"{k.split('.', 1)[1] if strip_service else k} {v}" for k, v in sorted(calls.items()))
        or "—"
    )


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def _queries(row: Mapping[str, Any]) -> str:
    queries = row["cycle"]["queries_per_call"]
    return " + ".join(str(q) for q in queries) if len(queries) <= 4 else f"{len(queries)} × ≤{max(queries)}"


def render(result: dict[str, Any]) -> str:
    rows = result["sizes"]
    first = rows[0]
    shares = {name: count / first["machines"] for name, count in first["categories"].items()}
    mix = ", ".join(f"{share:.0%} {name}" for name, share in shares.items())
    lines = [
        "Per fleet size: one `reconcile` then one idle cycle (enforcement **off**, dry run), production "
        f"services in a fresh process, clock shifted {SHIFT.seconds // 3600} h, metric period "
        f"{LONG_PERIOD_S // 60} min. Mix: {mix} (protected and kept machines have idle CPU). API calls "
        "counted at the wire by the counting proxy, with the queries of each GetMetricData request; *in "
        "moto* = time with at least one request inside moto; Slack calls at the stand-in (rate limiting "
        f"off). Peak RSS goal ≤ {RSS_GOAL_MB:.0f} MB at 10,000.",
        "",
        "| machines | candidates | seeding (s) | reconcile (s) | reconcile calls (min) | cycle (s) | in moto "
        "(s) | DescribeInstances (min) | GetMetricData (min) | queries per request | other calls | "
        "calls = min | idle flagged | RSS after imports (MB) | peak RSS after reconcile (MB) | "
        "peak RSS (MB) |",
        "| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | --- | :---: | ---: | ---: | "
        "---: | ---: |",
    ]
    for row in rows:
        cycle, minimum = row["cycle"], row["minimum"]
        calls = cycle["api_calls"]
        other = {k: v for k, v in calls.items() if k not in minimum}
        seeding = row["seeding"]
        lines.append(
            f"| {row['machines']:,} | {row['candidates_seeded']:,} | "
            f"{seeding['run_instances_s'] + seeding['put_metric_data_s']:.0f} | "
            f"{row['reconcile']['wall_s']:.2f} | {_calls(row['reconcile']['api_calls'])} "
            f"({row['reconcile_minimum']['ec2.DescribeInstances']}) "
            f"{_mark(row['reconcile_minimum_met'])} | "
            f"{cycle['wall_s']:.2f} | {cycle['in_aws_s']:.2f} | "
            f"{calls.get('ec2.DescribeInstances', 0)} ({minimum['ec2.DescribeInstances']}) | "
            f"{calls.get('cloudwatch.GetMetricData', 0)} ({minimum.get('cloudwatch.GetMetricData', 0)}) | "
            f"{_queries(row)} | {_calls(other)} | {_mark(row['minimum_met'])} | {row['idle']:,} | "
            f"{row['rss_mb_after_imports']:.0f} | {row['peak_rss_mb_after_reconcile']:.0f} | "
            f"{row['peak_rss_mb']:.0f} |"
        )
    mismatched = [r for r in [*rows, *result["period_comparison"]] if not r["minimum_met"]]
    if mismatched:
        lines += [
            "",
            "**Calls differ from the minimum:** "
            + "; ".join(
                f"{r['machines']:,} machines, {r['period_s'] // 60} min period: "
                + ", ".join(r["minimum_problems"])
                for r in mismatched
            )
            + ".",
        ]
    else:
        lines += ["", "Every cycle made exactly the minimum calls, and nothing else."]
    lines += ["", *_period_lines(result), "", *_slack_lines(result)]
    lines += [
        "",
        "Minimum = ⌈N/1000⌉ DescribeInstances + ⌈candidates × metrics/500⌉ GetMetricData, from the seed (the "
        "candidates are the managed running machines past the 2 h age that are neither protected nor kept) "
        f"and the bot's settings ({first['metrics_configured']} metric(s) per machine: CPU"
        + (
            ", plus the configured GPU metric"
            if first["metrics_configured"] > 1
            else "; no GPU metric is set"
        )
        + "). AWS caps a DescribeInstances page at 1,000 instances; moto counts MaxResults in reservations, "
        f"so the fleet is launched {PER_RESERVATION} to a reservation and the bot asks for "
        f"{PAGE_RESERVATIONS} per page: each moto page holds 1,000 instances, as AWS's would. Wall times are "
        "mostly moto's own work (*in moto*): its tag look-ups and GetMetricData scans are linear per item, "
        f"so the benchmark raises the bot's read timeout from 30 s to {READ_TIMEOUT_S:.0f} s.",
    ]
    return "\n".join(lines)


def _period_lines(result: dict[str, Any]) -> list[str]:
    pair = result["period_comparison"]
    size = pair[0]["machines"]
    lines = [
        f"Metric period at {size:,} machines: the same fleet and cycle with the bot's default "
        f"{pair[1]['period_s'] // 60}-minute period against the {pair[0]['period_s'] // 60}-minute period "
        "of the rows above.",
        "",
        "| period | datapoints per machine | datapoints stored | GetMetricData (min) | queries per request | "
        "cycle (s) | in moto (s) | own (s) | peak RSS after reconcile (MB) | peak RSS (MB) |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in pair:
        cycle = row["cycle"]
        lines.append(
            f"| {row['period_s'] // 60} min | {row['datapoints_per_machine']} | {row['datapoints']:,} | "
            f"{cycle['api_calls'].get('cloudwatch.GetMetricData', 0)} "
            f"({row['minimum'].get('cloudwatch.GetMetricData', 0)}) | {_queries(row)} | "
            f"{cycle['wall_s']:.2f} | {cycle['in_aws_s']:.2f} | {cycle['own_s']:.2f} | "
            f"{row['peak_rss_mb_after_reconcile']:.0f} | {row['peak_rss_mb']:.0f} |"
        )
    long_row, short_row = pair

    def metric_calls(row: Mapping[str, Any]) -> int:
        return int(row["cycle"]["api_calls"].get("cloudwatch.GetMetricData", 0))

    growth = short_row["peak_rss_mb"] - long_row["peak_rss_mb"]
    largest = max(r["machines"] for r in result["sizes"])
    lines += [
        "",
        f"With {short_row['datapoints_per_machine']} datapoints per machine instead of "
        f"{long_row['datapoints_per_machine']}, the cycle's peak RSS changed by {growth:+.0f} MB and its "
        f"GetMetricData calls by {metric_calls(short_row) - metric_calls(long_row):+d}. "
        + (
            f"The {largest:,}-machine row keeps the {long_row['period_s'] // 60}-minute period: moto scans "
            "every stored datapoint for every query, so "
            f"{short_row['datapoints_per_machine']} points per machine there would take moto hours."
            if largest > size
            else ""
        ),
    ]
    return lines


def _slack_lines(result: dict[str, Any]) -> list[str]:
    parts = []
    for row in result["sizes"]:
        slack = row["slack"]
        others = {k: v for k, v in slack["calls"].items() if k != "chat.postMessage"}
        parts.append(
            f"{row['machines']:,} machines: {slack['dm_digests']} digest DM(s) and {slack['team_digests']} "
            f"team-channel digest(s) for the {row['owners_with_idle']} of {row['owners']} owners with an "
            f"idle machine {_mark(row['slack_met'])}, plus {_calls(others, strip_service=False)}"
        )
    return [
        "Slack calls of the cycle (one digest DM per owner with an idle machine, and the same digest in the "
        "team channel; `users.info` reads each owner's time zone once, `conversations.open` opens each DM): "
        + "; ".join(parts)
        + "."
    ]


def run(quick: bool) -> dict[str, Any]:
    from bot.slack.standin import SlackStandIn

    sizes = QUICK_SIZES if quick else FULL_SIZES
    compare = QUICK_COMPARE_SIZE if quick else FULL_COMPARE_SIZE
    rows: list[dict[str, Any]] = []
    with (
        environment(FAKE_AWS_ENV),
        MotoProcess.start() as moto,
        CountingProxy(moto.endpoint_url) as proxy,
        SlackStandIn(users=_owners(), channels=[_team_channel()], rate_limit_per_channel=None) as standin,
    ):
        for size in sizes:
            rows.append(_one_size(moto, proxy, standin, size, LONG_PERIOD_S))
        long_row = next(r for r in rows if r["machines"] == compare)
        short_row = _one_size(moto, proxy, standin, compare, DEFAULT_PERIOD_S)
    result: dict[str, Any] = {
        "title": TITLE,
        "sizes": rows,
        "period_comparison": [long_row, short_row],
        "rss_goal_mb": RSS_GOAL_MB,
        "minimum_met": all(r["minimum_met"] for r in [*rows, short_row]),
        "slack_met": all(r["slack_met"] for r in [*rows, short_row]),
    }
    result["markdown"] = render(result)
    return result
