"""Idle scan side by side with Cloud Custodian: `runctl-bot cleanup plan` and an equivalent c7n policy.

Per fleet size, one seeded fleet in moto is scanned by both tools, each as a child process:

* the bot: `runctl-bot cleanup plan --format ids` with the production settings reader, a migrated SQLite
  database and every idle rule given explicitly (window, period, statistic, threshold, coverage, age);
* Cloud Custodian (PyPI `c7n`, pinned in `benchmarks/custodian/requirements.txt`, installed on first use
  into its own virtualenv under `benchmarks/.cache/`, never into the project's): `custodian run --dryrun`
  on `benchmarks/custodian/policy.yml.tmpl` filled in with the same values.

Both talk to moto through `benchmarks/custodian/proxy.py`, a counting reverse proxy, so their API calls are
counted at the wire by action, not by either tool. Each tool's wall time and peak RSS (its `ru_maxrss`
from `wait4`, taken by the small `custodian/launcher.py` so that this process's memory does not leak into
the figure) are measured, its answer is compared with the set the seed makes idle (exactly),
and its calls with the theoretical minimum ⌈N/1000⌉ DescribeInstances + ⌈candidates/500⌉ GetMetricData.
The proxy also reports how long at least one request was inside moto, so the table splits each wall time
into moto's share and the tool's own.

The fleet: one machine per reservation (moto pages DescribeInstances by reservation, so this gives the
1,000-per-page listing AWS would), in a fixed mix of idle, busy, sparse-data, no-data, protected, kept,
stopped, young and unmanaged machines, with the managed and protection tags in each spelling the bot
accepts. moto stamps every launch with the current second, so "young" is made real: the young machines are
launched a measured gap after all the others, and each tool's minimum age is set, just before it starts,
so that its age threshold falls inside the gap; afterwards the proxy's timestamps prove it did.

CPU datapoints: one every `period` on a fixed grid, long enough before and after the runs that every
window a tool can ask about holds exactly window/period points. moto's CloudWatch scans every stored
datapoint for each query (GetMetricData) or call (GetMetricStatistics), so the layout is chosen per size:
at up to 1,000 machines the bot's defaults (5-minute points, 12 per 60-minute window) for every machine;
at 10,000 one point every 12 minutes (5 per window, both tools told so) and only for the machines that
pass the rules needing no metrics, which keeps moto's work for c7n's ~8,000 calls within minutes. Each
tool run is bounded (15 minutes); a run that hits the bound is reported as such, with what it did by then.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import signal
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.common import FAKE_AWS_ENV, REGION, MotoProcess, environment, put_cpu, x86_image
from benchmarks.custodian.proxy import CountingProxy, ProxyStats

TITLE = "Idle scan: runctl-bot cleanup plan vs Cloud Custodian"
FULL_SIZES = (50, 200, 1_000, 10_000)
QUICK_SIZES = (50, 200)
HERE = Path(__file__).resolve().parent
C7N_DIR = HERE / "custodian"
REQUIREMENTS = C7N_DIR / "requirements.txt"
POLICY_TEMPLATE = C7N_DIR / "policy.yml.tmpl"
LAUNCHER = C7N_DIR / "launcher.py"
POLICY_NAME = "runctl-idle-scan"
CACHE_DIR = HERE / ".cache"
C7N_VENV = CACHE_DIR / "c7n-venv"

# The bot's idle rules (docs/configuration.md defaults), given to both tools explicitly.
THRESHOLD_PERCENT = 5.0
WINDOW = timedelta(minutes=60)
MIN_COVERAGE = 0.8
RUN_BOUND_S = 900.0
MIN_GAP_S = 20.0
INSTANCE_TYPE = "g5.xlarge"
SEED_WORKERS = 4
PAGE = 1000
METRICS_PER_CALL = 500


# --- the fleet --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Category:
    name: str
    share: float
    candidate: bool  # passes every rule that needs no metrics
    idle: bool  # expected in the idle set
    cpu: str  # "idle", "busy", "sparse" or "none"


CATEGORIES = (
    Category("idle", 0.25, candidate=True, idle=True, cpu="idle"),
    Category("busy", 0.15, candidate=True, idle=False, cpu="busy"),
    Category("sparse data", 0.05, candidate=True, idle=False, cpu="sparse"),
    Category("no data", 0.05, candidate=True, idle=False, cpu="none"),
    Category("protected", 0.10, candidate=False, idle=False, cpu="idle"),
    Category("kept", 0.05, candidate=False, idle=False, cpu="idle"),
    Category("stopped", 0.15, candidate=False, idle=False, cpu="idle"),
    Category("young", 0.10, candidate=False, idle=False, cpu="idle"),
    Category("unmanaged", 0.10, candidate=False, idle=False, cpu="idle"),
)
_BY_NAME = {c.name: c for c in CATEGORIES}


def category_counts(size: int) -> dict[str, int]:
    """Machines per category for `size` (largest remainder, so the counts add up exactly)."""
    exact = {c.name: c.share * size for c in CATEGORIES}
    counts = {name: math.floor(value) for name, value in exact.items()}
    leftover = size - sum(counts.values())
    by_remainder = sorted(exact, key=lambda name: (-(exact[name] - counts[name]), name))
    for name in by_remainder[:leftover]:
        counts[name] += 1
    return counts


def _managed_tags(index: int) -> dict[str, str]:
    """Every way a machine counts as managed (providers/tags.py), in the spellings the bot accepts."""
    variant = index % 10
    if variant == 0:
        return {"CreatedBy": "runctl"}  # launched by the runctl CLI
    if variant == 1:
        return {"runctl:user": f"cli-user-{index % 3}"}
    value = "TRUE" if variant == 2 else "true"
    return {"runctl:managed": value, "runctl:owner": f"U0BENCH{index % 20:03d}", "runctl:project": "bench"}


def machine_tags(category: str, index: int, now: datetime) -> dict[str, str]:
    name = {"Name": f"bench-{category.replace(' ', '-')}-{index}"}
    if category == "unmanaged":
        other = (
            {"team": "data"},
            {"runctl:managed": "false"},
            {"CreatedBy": "terraform"},
        )[index % 3]
        return {**name, **other}
    tags = {**name, **_managed_tags(index)}
    if category == "protected":
        key = ("runctl:protected", "runctl:important", "runctl:persistent")[index % 3]
        tags[key] = "True" if index % 2 else "true"
    elif category == "kept":
        tags["runctl:keep-until"] = "never" if index % 2 else (now + timedelta(days=30)).isoformat()
    return tags


@dataclass(frozen=True)
class Layout:
    """Where the datapoints are: how often, and whether machines the cheap rules exclude have any."""

    period_s: int
    data_for_excluded: bool

    @property
    def expected(self) -> int:
        return int(WINDOW.total_seconds()) // self.period_s

    @property
    def min_datapoints(self) -> int:
        """The fewest datapoints the bot accepts as proof (coverage ≥ min_coverage of the expected)."""
        return math.ceil(MIN_COVERAGE * self.expected - 1e-9)


def layout_for(size: int) -> Layout:
    return Layout(300, True) if size <= 1_000 else Layout(720, False)


def cpu_values(pattern: str, index: int, slots: Iterable[int]) -> list[tuple[int, float]]:
    """(grid slot, value) for one machine. Busy machines peak on every other slot (some exactly at the
    threshold, which is not idle), so every window holds a peak even after moto drops one bucket."""
    rng = random.Random(index)
    points: list[tuple[int, float]] = []
    for slot in slots:
        low = round(rng.uniform(0.1, THRESHOLD_PERCENT - 0.1), 2)
        if pattern == "idle" or (pattern == "sparse" and slot % 3 == 0):
            points.append((slot, low))
        elif pattern == "busy":
            peak = THRESHOLD_PERCENT if index % 2 == 0 else round(rng.uniform(20.0, 95.0), 2)
            points.append((slot, peak if slot % 2 == 0 else low))
    return points


@dataclass
class Fleet:
    size: int
    layout: Layout
    by_category: dict[str, list[str]]
    old_latest: datetime  # the latest launch (or volume attach) time among the machines meant to be old
    young_earliest: datetime | None  # the earliest among the young ones
    grid_start: datetime  # the first datapoint slot
    valid_from: datetime  # a tool's window holds exactly `expected` grid slots from here ...
    valid_until: datetime  # ... until here
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def expected_idle(self) -> set[str]:
        return {i for c in CATEGORIES if c.idle for i in self.by_category[c.name]}

    @property
    def candidates(self) -> int:
        return sum(len(self.by_category[c.name]) for c in CATEGORIES if c.candidate)


class Seeder:
    """Seeds moto directly (not through the proxy), with boto3 clients in this process."""

    def __init__(self, moto: MotoProcess) -> None:
        import boto3
        from botocore.config import Config

        config = Config(retries={"total_max_attempts": 3, "mode": "standard"}, max_pool_connections=16)
        self._ec2: Any = boto3.client(
            "ec2", region_name=REGION, endpoint_url=moto.endpoint_url, config=config
        )
        self._cloudwatch: Any = boto3.client(
            "cloudwatch", region_name=REGION, endpoint_url=moto.endpoint_url, config=config
        )
        self._image = x86_image(moto)

    def launch(self, tag_sets: Sequence[Mapping[str, str]]) -> list[str]:
        """One RunInstances per machine: moto pages DescribeInstances by reservation, not by instance."""

        def one(tags: Mapping[str, str]) -> str:
            response = self._ec2.run_instances(
                ImageId=self._image,
                InstanceType=INSTANCE_TYPE,
                MinCount=1,
                MaxCount=1,
                TagSpecifications=[
                    {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
                ],
            )
            return str(response["Instances"][0]["InstanceId"])

        with ThreadPoolExecutor(max_workers=SEED_WORKERS) as pool:
            return list(pool.map(one, tag_sets))

    def stop(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), PAGE):
            self._ec2.stop_instances(InstanceIds=list(ids[start : start + PAGE]))

    def put_cpu(self, points: Sequence[tuple[str, datetime, float]]) -> None:
        put_cpu(self._cloudwatch, points)

    def one_listing_page_s(self) -> float:
        began = time.perf_counter()
        self._ec2.describe_instances(MaxResults=PAGE)
        return time.perf_counter() - began

    def describe_all(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for page in self._ec2.get_paginator("describe_instances").paginate(MaxResults=PAGE):
            for reservation in page["Reservations"]:
                for instance in reservation["Instances"]:
                    found[str(instance["InstanceId"])] = instance
        return found


def _age_times(instance: Mapping[str, Any]) -> list[datetime]:
    """The instants either tool may take a machine's age from: LaunchTime (the bot) and, as c7n's
    instance-age filter does, the attach time of its EBS volumes."""
    times = [instance["LaunchTime"]]
    times += [b["Ebs"]["AttachTime"] for b in instance.get("BlockDeviceMappings", []) if "Ebs" in b]
    return [t.astimezone(UTC) for t in times]


def seed_fleet(moto: MotoProcess, size: int) -> Fleet:
    """The mix for `size`: old machines, datapoints, a measured gap, then the young machines."""
    layout = layout_for(size)
    counts = category_counts(size)
    seeder = Seeder(moto)
    now = datetime.now(UTC)
    timings: dict[str, float] = {}
    began = time.perf_counter()
    by_category: dict[str, list[str]] = {}
    index = 0
    for category in CATEGORIES:
        if category.name == "young":
            continue
        tag_sets = [machine_tags(category.name, index + n, now) for n in range(counts[category.name])]
        index += len(tag_sets)
        by_category[category.name] = seeder.launch(tag_sets)
    seeder.stop(by_category["stopped"])
    timings["launch_s"] = round(time.perf_counter() - began, 1)
    old_done = datetime.now(UTC)

    # The grid: slot k at grid_start + k·period. Any window [t - W, t) with valid_from ≤ t < valid_until
    # holds exactly `expected` slots; the runs must happen inside that span (checked afterwards).
    period = timedelta(seconds=layout.period_s)
    horizon = timedelta(minutes=30) if size <= 1_000 else timedelta(minutes=60)
    grid_start = old_done - WINDOW + timedelta(seconds=1.5)
    slots = range(int((WINDOW + horizon) / period) + 1)
    valid_from = grid_start + WINDOW
    valid_until = grid_start + period * (len(slots) - 1) + period

    def points_for(ids_by_category: Mapping[str, list[str]]) -> list[tuple[str, datetime, float]]:
        out: list[tuple[str, datetime, float]] = []
        for name, ids in ids_by_category.items():
            category = _BY_NAME[name]
            if not category.candidate and not layout.data_for_excluded:
                continue
            for instance_id in ids:
                seed = int(hashlib.sha256(instance_id.encode()).hexdigest()[:8], 16)
                for slot, value in cpu_values(category.cpu, seed, slots):
                    out.append((instance_id, grid_start + period * slot, value))
        return out

    began = time.perf_counter()
    points = points_for(by_category)
    seeder.put_cpu(points)
    timings["datapoints"] = float(len(points))

    # The gap: c7n reads its clock for instance-age only after listing the whole fleet, so the young
    # machines come late enough after the others that a threshold set at start still falls between.
    listing = seeder.one_listing_page_s() * math.ceil(size / PAGE)
    gap = max(MIN_GAP_S, 2.0 * listing + 15.0)
    described = seeder.describe_all()
    old_latest = max(t for i in described.values() for t in _age_times(i))
    wait = (old_latest + timedelta(seconds=gap) - datetime.now(UTC)).total_seconds()
    if wait > 0:
        time.sleep(wait)
    young_tags = [machine_tags("young", index + n, now) for n in range(counts["young"])]
    by_category["young"] = seeder.launch(young_tags)
    young_points = points_for({"young": by_category["young"]})
    seeder.put_cpu(young_points)
    timings["datapoints"] += len(young_points)
    timings["metrics_and_gap_s"] = round(time.perf_counter() - began, 1)
    timings["gap_s"] = round(gap, 1)

    described = seeder.describe_all()
    young = [t for i in by_category["young"] for t in _age_times(described[i])]
    _check_states(by_category, described)
    if len(described) != size:
        raise RuntimeError(f"N={size}: moto lists {len(described)} machines, {size} were launched")
    ordered = {c.name: by_category[c.name] for c in CATEGORIES}
    return Fleet(
        size,
        layout,
        ordered,
        old_latest,
        min(young) if young else None,
        grid_start,
        valid_from,
        valid_until,
        timings,
    )


def _check_states(by_category: Mapping[str, list[str]], described: Mapping[str, Mapping[str, Any]]) -> None:
    for name, ids in by_category.items():
        wanted = ("stopping", "stopped") if name == "stopped" else ("running",)
        for instance_id in ids:
            state = described[instance_id]["State"]["Name"]
            if state not in wanted:
                raise RuntimeError(
                    f"{instance_id} ({name}) is {state} in moto, expected {' or '.join(wanted)}"
                )


# --- the two tools ----------------------------------------------------------------------------------------


@dataclass
class ToolRun:
    returncode: int | None  # None when the run hit the bound and was killed
    finished: bool
    wall_s: float
    peak_rss_mb: float | None  # None when the run was killed
    started: datetime
    ended: datetime
    stdout: str
    stderr: str


def run_measured(argv: Sequence[str], env: Mapping[str, str], workdir: Path, bound_s: float) -> ToolRun:
    """The tool's wall time (spawn to reap) and peak RSS (`ru_maxrss` from `wait4`), both taken by
    `custodian/launcher.py`, whose small memory, unlike this process's, does not leak into the figure."""
    out_path, err_path, result_path = workdir / "stdout.txt", workdir / "stderr.txt", workdir / "run.json"
    result_path.unlink(missing_ok=True)
    launcher = [sys.executable, "-I", "-S", str(LAUNCHER), str(result_path)]
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = datetime.now(UTC)
        began = time.perf_counter()
        process = subprocess.Popen(
            [*launcher, *argv], env=dict(env), stdout=out, stderr=err, cwd=workdir, start_new_session=True
        )
        try:
            process.wait(timeout=bound_s)
            finished = True
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the launcher's own session: it and the tool
            process.wait()
            finished = False
        elapsed = time.perf_counter() - began
        ended = datetime.now(UTC)
    stdout = out_path.read_text(encoding="utf-8", errors="replace")
    stderr = err_path.read_text(encoding="utf-8", errors="replace")
    if not finished:
        return ToolRun(None, False, round(elapsed, 2), None, started, ended, stdout, stderr)
    if process.returncode != 0 or not result_path.is_file():
        raise RuntimeError(f"the launcher failed ({process.returncode}) for {argv[0]}: {stderr[-2000:]}")
    measured = json.loads(result_path.read_text(encoding="utf-8"))
    return ToolRun(
        returncode=int(measured["returncode"]),
        finished=True,
        wall_s=round(float(measured["wall_s"]), 2),
        peak_rss_mb=round(int(measured["maxrss_kb"]) / 1024, 1),
        started=started,
        ended=ended,
        stdout=stdout,
        stderr=stderr,
    )


def _base_env(home: Path, endpoint: str) -> dict[str, str]:
    """A clean environment: no developer profile, tokens or RUNCTL_ settings; AWS is the proxy."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
    return {**keep, **FAKE_AWS_ENV, "HOME": str(home), "AWS_ENDPOINT_URL": endpoint}


def bot_executable() -> list[str]:
    script = Path(sys.executable).with_name("runctl-bot")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "bot"]


def bot_plan_args(layout: Layout, min_age_s: int) -> list[str]:
    return [
        "cleanup",
        "plan",
        "--format",
        "ids",
        "--window",
        f"{int(WINDOW.total_seconds() // 60)}m",
        "--period",
        str(layout.period_s),
        "--statistic",
        "max",
        "--cpu-threshold",
        f"{THRESHOLD_PERCENT:g}",
        "--min-coverage",
        f"{MIN_COVERAGE:g}",
        "--min-age",
        f"{min_age_s}s",
    ]


def render_policy(layout: Layout, min_age_s: int) -> str:
    template = string.Template(POLICY_TEMPLATE.read_text(encoding="utf-8"))
    return template.substitute(
        min_age_minutes=repr(min_age_s / 60),
        window_days=repr(WINDOW.total_seconds() / 86400),
        window_seconds=str(int(WINDOW.total_seconds())),
        threshold=f"{THRESHOLD_PERCENT:g}",
        min_datapoints=str(layout.min_datapoints),
    )


def _requirements_digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def ensure_c7n_venv() -> Path:
    """c7n's own virtualenv, created on first use and reused while the requirements file is unchanged."""
    marker = C7N_VENV / ".requirements.sha256"
    custodian = C7N_VENV / "bin" / "custodian"
    if custodian.is_file() and marker.is_file() and marker.read_text().strip() == _requirements_digest():
        return C7N_VENV
    print(f"  creating {C7N_VENV} from {REQUIREMENTS.name}", flush=True)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    for argv in (
        [sys.executable, "-m", "venv", "--clear", str(C7N_VENV)],
        [str(C7N_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)],
    ):
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-3000:]}")
    if not custodian.is_file():
        raise RuntimeError(f"installing {REQUIREMENTS} gave no {custodian}")
    marker.write_text(_requirements_digest() + "\n")
    return C7N_VENV


def c7n_versions(venv: Path) -> dict[str, str]:
    script = (
        "import importlib.metadata as m, json; "
        "print(json.dumps({p: m.version(p) for p in ('c7n', 'boto3', 'botocore')}))"
    )
    answer = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script], check=True, capture_output=True, text=True
    )
    versions: dict[str, str] = json.loads(answer.stdout)
    return versions


def bot_versions() -> dict[str, str]:
    return {p: metadata.version(p) for p in ("boto3", "botocore")}


# --- one size ---------------------------------------------------------------------------------------------


@dataclass
class Measured:
    tool: str
    run: ToolRun
    stats: ProxyStats
    found: set[str] | None  # None when the run did not finish
    min_age_s: int

    def summary(self, expected: set[str], category_of: Mapping[str, str]) -> dict[str, Any]:
        found = self.found
        wrong: dict[str, int] = {}
        for instance_id in (found ^ expected) if found is not None else ():
            label = ("missed " if instance_id in expected else "wrongly listed ") + category_of.get(
                instance_id, "unknown machine"
            )
            wrong[label] = wrong.get(label, 0) + 1
        return {
            "tool": self.tool,
            "finished": self.run.finished,
            "returncode": self.run.returncode,
            "correct": found == expected if found is not None else None,
            "found": len(found) if found is not None else None,
            "missing": len(expected - found) if found is not None else None,
            "extra": len(found - expected) if found is not None else None,
            "wrong_by_category": dict(sorted(wrong.items())),
            "api_calls": dict(sorted(self.stats.calls.items())),
            "api_calls_total": self.stats.total,
            "wall_s": self.run.wall_s,
            "moto_busy_s": round(self.stats.busy_seconds, 2),
            "moto_s_by_action": {k: round(v, 2) for k, v in sorted(self.stats.seconds.items())},
            "own_s": round(max(0.0, self.run.wall_s - self.stats.busy_seconds), 2),
            "peak_rss_mb": self.run.peak_rss_mb,
            "min_age_s": self.min_age_s,
        }


def _min_age_now(fleet: Fleet) -> int:
    """Whole seconds such that, from now on, every machine meant to be old is past the threshold."""
    return math.floor((datetime.now(UTC) - fleet.old_latest).total_seconds()) - 1


def _check_age_split(fleet: Fleet, tool: str, run: ToolRun, min_age_s: int, clock_read_by: float) -> None:
    """The tool's age threshold (its clock when it judged age, minus min age) fell inside the gap."""
    earliest = run.started - timedelta(seconds=min_age_s)
    latest = datetime.fromtimestamp(clock_read_by, UTC) - timedelta(seconds=min_age_s)
    if earliest <= fleet.old_latest:
        raise RuntimeError(
            f"{tool}: age threshold {earliest} is not after the old machines ({fleet.old_latest})"
        )
    if fleet.young_earliest is not None and latest >= fleet.young_earliest:
        raise RuntimeError(
            f"{tool}: age threshold may be as late as {latest}, past the young machines' launch "
            f"({fleet.young_earliest}); the gap was too short for this run"
        )


def _check_window(fleet: Fleet, tool: str, run: ToolRun) -> None:
    if run.started < fleet.valid_from or run.ended >= fleet.valid_until:
        raise RuntimeError(
            f"{tool} ran {run.started}..{run.ended}, outside the span the datapoints cover "
            f"({fleet.valid_from}..{fleet.valid_until})"
        )


def _problems(stats: ProxyStats, run: ToolRun, tool: str) -> None:
    if stats.errors:
        raise RuntimeError(f"{tool}: AWS answered errors {stats.errors}; stderr tail: {run.stderr[-2000:]}")
    if run.finished and run.returncode != 0:
        raise RuntimeError(f"{tool} exited {run.returncode}: {run.stderr[-3000:]}")


def run_bot(fleet: Fleet, proxy: CountingProxy, workdir: Path) -> Measured:
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **_base_env(workdir, proxy.url),
        "DATABASE_URL": f"sqlite:///{workdir / 'bot.db'}",
        "RUNCTL_PRICING_API": "false",  # moto has no Pricing API; the shipped price table answers
        # moto answers a 500-query GetMetricData over 10,000 machines in ~24 s; AWS in well under one.
        "RUNCTL_AWS_READ_TIMEOUT": "10m",
        "RUNCTL_LOG_FORMAT": "text",
        "RUNCTL_LOG_LEVEL": "WARNING",
    }
    subprocess.run([*bot_executable(), "migrate"], env=env, check=True, capture_output=True, cwd=workdir)
    proxy.reset()
    min_age_s = _min_age_now(fleet)
    run = run_measured(
        [*bot_executable(), *bot_plan_args(fleet.layout, min_age_s)], env, workdir, RUN_BOUND_S
    )
    stats = proxy.stats()
    _problems(stats, run, "runctl-bot")
    if run.finished:
        _check_window(fleet, "runctl-bot", run)
        # The bot reads its clock before it lists the fleet.
        _check_age_split(fleet, "runctl-bot", run, min_age_s, stats.first_seen["ec2.DescribeInstances"])
    found = set(run.stdout.split()) if run.finished else None
    return Measured("runctl-bot", run, stats, found, min_age_s)


def run_c7n(fleet: Fleet, proxy: CountingProxy, venv: Path, workdir: Path) -> Measured:
    workdir.mkdir(parents=True, exist_ok=True)
    env = _base_env(workdir, proxy.url)
    output = workdir / "out"
    proxy.reset()
    min_age_s = _min_age_now(fleet)
    policy = workdir / "policy.yml"
    policy.write_text(render_policy(fleet.layout, min_age_s), encoding="utf-8")
    argv = [
        str(venv / "bin" / "custodian"),
        "run",
        "--dryrun",
        "--cache-period",
        "0",
        "--region",
        REGION,
        "--output-dir",
        str(output),
        str(policy),
    ]
    run = run_measured(argv, env, workdir, RUN_BOUND_S)
    stats = proxy.stats()
    _problems(stats, run, "c7n")
    found: set[str] | None = None
    if run.finished:
        for marker in ("CW Retrieval error", "Traceback", ":ERROR "):
            if marker in run.stderr:
                raise RuntimeError(f"c7n reported a problem ({marker!r}): {run.stderr[-3000:]}")
        _check_window(fleet, "c7n", run)
        # c7n judges age after listing and before its first CloudWatch call (or its end, if none).
        judged_by = stats.first_seen.get("cloudwatch.GetMetricStatistics", run.ended.timestamp())
        _check_age_split(fleet, "c7n", run, min_age_s, judged_by)
        resources = json.loads((output / POLICY_NAME / "resources.json").read_text(encoding="utf-8"))
        found = {str(r["InstanceId"]) for r in resources}
    return Measured("c7n", run, stats, found, min_age_s)


def _progress(measured: Measured) -> str:
    run = measured.run
    rss = f", peak RSS {run.peak_rss_mb:.0f} MB" if run.peak_rss_mb is not None else ", hit the bound"
    return f"{run.wall_s:.1f} s, {measured.stats.total:,} calls{rss}"


def theoretical_minimum(size: int, candidates: int) -> dict[str, int]:
    return {
        "ec2.DescribeInstances": math.ceil(size / PAGE),
        "cloudwatch.GetMetricData": math.ceil(candidates / METRICS_PER_CALL),
    }


def one_size(moto: MotoProcess, proxy: CountingProxy, venv: Path, size: int) -> dict[str, Any]:
    moto.reset()
    began = time.perf_counter()
    fleet = seed_fleet(moto, size)
    print(
        f"  N={size}: seeded in {time.perf_counter() - began:.0f} s "
        f"({int(fleet.timings['datapoints']):,} datapoints, gap {fleet.timings['gap_s']:.0f} s)",
        flush=True,
    )
    expected = fleet.expected_idle
    with tempfile.TemporaryDirectory(prefix="runctl-bench-c7n-") as tmp:
        bot = run_bot(fleet, proxy, Path(tmp) / "bot")
        print(f"  N={size}: runctl-bot {_progress(bot)}", flush=True)
        c7n = run_c7n(fleet, proxy, venv, Path(tmp) / "c7n")
        print(f"  N={size}: c7n {_progress(c7n)}", flush=True)
    minimum = theoretical_minimum(size, fleet.candidates)
    category_of = {i: name for name, ids in fleet.by_category.items() for i in ids}
    tools = [bot.summary(expected, category_of), c7n.summary(expected, category_of)]
    bot_row, c7n_row = tools
    return {
        "machines": size,
        "mix": {c.name: len(fleet.by_category[c.name]) for c in CATEGORIES},
        "candidates": fleet.candidates,
        "expected_idle": len(expected),
        "layout": {
            "period_s": fleet.layout.period_s,
            "datapoints_per_window": fleet.layout.expected,
            "min_datapoints": fleet.layout.min_datapoints,
            "data_for_excluded": fleet.layout.data_for_excluded,
        },
        "seeding": fleet.timings,
        "theoretical_minimum": minimum,
        "theoretical_minimum_total": sum(minimum.values()),
        "tools": tools,
        "bot_calls_at_minimum": bot_row["api_calls"] == minimum,
        "bot_faster": bool(bot_row["finished"])
        and (not c7n_row["finished"] or bot_row["wall_s"] < c7n_row["wall_s"]),
    }


# --- report -----------------------------------------------------------------------------------------------


def _calls_text(calls: Mapping[str, int]) -> str:
    return ", ".join(f"{key.split('.', 1)[1]} {n:,}" for key, n in sorted(calls.items())) or "none"


def _mark(value: bool | None) -> str:
    return "—" if value is None else ("✓" if value else "✗")


def _rss(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def _exactness(tool: Mapping[str, Any]) -> str:
    wrong = tool.get("wrong_by_category") or {}
    details = ", ".join(f"{label}: {n:,}" for label, n in wrong.items())
    return _mark(tool["correct"]) + (f" ({details})" if details else "")


def render(result: Mapping[str, Any]) -> str:
    lines = [
        f"Bot (botocore {result['versions']['bot']['botocore']}) vs c7n {result['versions']['c7n']['c7n']} "
        f"(botocore {result['versions']['c7n']['botocore']}), each a child process against moto through a "
        "counting proxy. Same rules for both: running, managed, not protected, not kept, older than the gap, "
        f"CPU Maximum < {THRESHOLD_PERCENT:g} % over {int(WINDOW.total_seconds() // 60)} min with ≥ "
        f"{MIN_COVERAGE:.0%} of the expected datapoints. Calls counted at the proxy; *in moto* = time "
        "with at least one request inside moto, *own* = wall − in moto.",
        "",
        "| machines | candidates / idle | datapoints | tool | exact set | API calls | total (minimum) "
        "| wall (s) | in moto (s) | own (s) | peak RSS (MB) |",
        "| ---: | ---: | --- | --- | :---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in result["sizes"]:
        layout = row["layout"]
        points = f"every {layout['period_s'] // 60} min, {layout['datapoints_per_window']}/window" + (
            "" if layout["data_for_excluded"] else ", candidates only"
        )
        for tool in row["tools"]:
            finished = tool["finished"]
            total = f"{tool['api_calls_total']:,} ({row['theoretical_minimum_total']:,})"
            wall = f"{tool['wall_s']:.1f}" + ("" if finished else " (bound, killed)")
            lines.append(
                f"| {row['machines']:,} | {row['candidates']:,} / {row['expected_idle']:,} | {points} | "
                f"{tool['tool']} | {_exactness(tool)} | {_calls_text(tool['api_calls'])} | {total} | "
                f"{wall} | {tool['moto_busy_s']:.1f} | {tool['own_s']:.1f} | {_rss(tool['peak_rss_mb'])} |"
            )
    lines += [
        "",
        "Minimum = ⌈N/1000⌉ DescribeInstances + ⌈candidates/500⌉ GetMetricData. "
        f"Mix: {', '.join(f'{c.share:.0%} {c.name}' for c in CATEGORIES)}.",
    ]
    return "\n".join(lines)


def run(quick: bool) -> dict[str, Any]:
    sizes = QUICK_SIZES if quick else FULL_SIZES
    venv = ensure_c7n_venv()
    rows: list[dict[str, Any]] = []
    with environment(FAKE_AWS_ENV), MotoProcess.start() as moto, CountingProxy(moto.endpoint_url) as proxy:
        for size in sizes:
            rows.append(one_size(moto, proxy, venv, size))
    result: dict[str, Any] = {
        "title": TITLE,
        "versions": {"bot": bot_versions(), "c7n": c7n_versions(venv)},
        "rules": {
            "window_minutes": WINDOW.total_seconds() / 60,
            "statistic": "Maximum",
            "threshold_percent": THRESHOLD_PERCENT,
            "min_coverage": MIN_COVERAGE,
            "run_bound_s": RUN_BOUND_S,
        },
        "sizes": rows,
    }
    result["markdown"] = render(result)
    return result
