"""Ack latency: how long Slack waits for the bot's HTTP answer to a signed `/runctl` command.

Slack drops a slash command that is not acknowledged within 3 s, so the ack must not wait for AWS. This
measures, in one run and on one HTTP stack (waitress via `bot.web.HttpServer` + `make_wsgi_app` + Bolt's
`SlackRequestHandler`, same thread count, same Bolt settings), each as a process of its own:

* **bare** — `python -m benchmarks.bare_app`, a Bolt app whose only listener is `ack()`: the floor the
  stack itself sets;
* **bot** — `runctl-bot serve --role web`, the production process: it acks and its work process runs the
  work after each ack for real (lists against a 50-machine fleet; creates that launch in moto) while later
  requests are measured;
* **bot + cycle** — the same, with the real idle cycle (`IdleCycleService.run()` through the production
  services, dry run) running back to back in another process, as the scheduler runs it in the work
  process: it lists the fleet and fetches metrics from the same moto, writes marks in the same database
  and posts its digests to the same Slack stand-in. Each cell's loop starts from a fleet without open
  marks, so its first cycle marks and notifies for real.

Latency is measured in a separate process from the first byte written to the last byte of the response
read, over HTTP/1.1 keep-alive connections (one per client thread, a closed loop). The target is
bot p99 ≤ 1.5 × bare p99 at every concurrency level.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from benchmarks.common import (
    LoadGenerator,
    LoadResult,
    MotoProcess,
    PreparedRequest,
    RunningBot,
    ServedProcess,
    environment,
    free_port,
    latency_summary,
    live_instances,
    running_bot,
    seed_cpu,
    seed_fleet,
    terminate,
    x86_image,
)
from bot.config import Settings, load_settings
from bot.core.clock import SystemClock
from bot.services.dispatch import DEFAULT_PROJECT as CREATE_PROJECT  # what a plain `create` tags
from bot.slack.standin import Channel, SlackStandIn, User
from bot.slack.standin.delivery import slash_command_request
from providers import tags

NAME = "ack_latency"
TITLE = "Ack latency of /runctl"
COMMAND = "/runctl"
LEVELS = (1, 10, 50)
FLEET_SIZE = 50
TARGET_RATIO = 1.5
SLACK_LIMIT_MS = 3000.0
#: moto and the Slack stand-in play AWS and Slack, which in production run on other machines. Here they
#: share the two cores with the bot, so they run at the work process's default niceness: they compete
#: with the acks no more than the bot's own work after the ack does. The load generator keeps niceness 0.
HARNESS_NICE = int(Settings.model_fields["work_process_nice"].default)
FULL_REQUESTS = 100
QUICK_REQUESTS = 30
#: "bare": Bolt's defaults (the listener runs in Bolt's pool, the request thread polls for `ack()` every
#: 10 ms); "bare inline": the bot's own Bolt setting (`PROCESS_BEFORE_RESPONSE`), the floor of its stack.
BARES = ("bare", "bare inline")
BOTS = ("bot", "bot+cycle")
VARIANTS = (*BARES, *BOTS)
#: `help` is answered in the ack itself: nothing runs after it, which isolates the bot's own ack path.
COMMANDS = {"list": "list", "create": "create g5.xlarge", "help": "help"}
FLEET_PROJECT = "bench"
HIGH = "1000000"  # "no limit" for the launch guards: every create must launch, none may wait for approval
LIMITS = {
    "RUNCTL_QUOTA_WARN": HIGH,
    "RUNCTL_QUOTA_REFUSE": HIGH,
    "RUNCTL_USER_MAX_INSTANCES": HIGH,
    "RUNCTL_USER_MAX_COST_PER_HOUR": HIGH,
    "RUNCTL_APPROVAL_COST_PER_HOUR": HIGH,
}


def _people() -> tuple[User, User, Channel]:
    requester = User(id="U0BENCHREQ", name="riya", real_name="Riya Requester", tz="Europe/London")
    admin = User(id="U0BENCHADM", name="grace", real_name="Grace Admin", tz="UTC", is_admin=True)
    channel = Channel(id="C0BENCHFLT", name="ml-fleet", created=1_700_000_000)
    return requester, admin, channel


@contextmanager
def bare_apps(bot: RunningBot) -> Iterator[dict[str, str]]:
    """Both bare apps, each as its own process on the bot's environment (workers, secret, client) and its
    own port; yields the URL to send commands to, by variant."""
    servers = []
    try:
        urls = {}
        for variant in BARES:
            port = free_port()
            env = {**bot.env, "RUNCTL_PORT": str(port)}
            argv = [
                sys.executable,
                "-m",
                "benchmarks.bare_app",
                *(["--inline"] if "inline" in variant else []),
            ]
            servers.append(ServedProcess(argv, env, port, variant.replace(" ", "-")).start())
            urls[variant] = f"{servers[-1].base_url}/slack/events"
        yield urls
    finally:
        for server in servers:
            server.stop()


def _reconcile(settings: Settings) -> None:
    """Record the seeded fleet in the bot's database, as its scheduler's first reconcile would."""
    from bot.slack.client import make_web_client
    from bot.slack.notifier import SlackNotifier
    from bot.wiring import build_services
    from storage.engine import make_engine

    engine = make_engine(settings.database_url)
    services = build_services(
        settings, engine=engine, notifier=SlackNotifier(make_web_client(settings)), clock=SystemClock()
    )
    try:
        services.tracking.reconcile()
    finally:
        services.shutdown()
        engine.dispose()


def _nice_this_thread(nice: int) -> None:
    """Linux keeps a niceness per thread, and threads started from this one inherit it."""
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


@contextmanager
def _harness_standin(users: list[User], channels: list[Channel]) -> Iterator[SlackStandIn]:
    """The Slack stand-in, its server thread (and so every request thread) at `HARNESS_NICE`, while the
    rest of this process, which only waits for the load generator, keeps its niceness."""
    standin = SlackStandIn(users=users, channels=channels, rate_limit_per_channel=None)
    failure: list[BaseException] = []

    def start() -> None:
        _nice_this_thread(HARNESS_NICE)
        try:
            standin.start()
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    starter = threading.Thread(target=start, name="bench-standin-start")
    starter.start()
    starter.join()
    if failure:
        raise failure[0]
    try:
        yield standin
    finally:
        standin.stop()


class Reaper:
    """Terminates what the creates launch within a fraction of a second, from outside the bot.

    Without it every create of a cell would grow the fleet, and each create's quota scan (a
    DescribeInstances over every live machine) would cost more than the one before. It also records
    what was launched, which is the proof that each acked create really ran.
    """

    def __init__(self, moto: MotoProcess, project: str, interval: float = 0.25) -> None:
        self._moto = moto
        self._filters = [{"Name": f"tag:{tags.PROJECT}", "Values": [project]}]
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-reaper", daemon=True)
        self.launched: set[str] = set()
        self.error: BaseException | None = None

    def sweep(self) -> None:
        found = live_instances(self._moto, self._filters)
        if found:
            terminate(self._moto, found)
            self.launched.update(found)

    def _loop(self) -> None:
        _nice_this_thread(HARNESS_NICE)
        while not self._stop.wait(self._interval):
            try:
                self.sweep()
            except Exception as exc:  # reported by stop()
                self.error = exc
                return

    def start(self) -> Reaper:
        self._thread.start()
        return self

    def stop(self) -> set[str]:
        self._stop.set()
        self._thread.join(60)
        if self.error is not None:
            raise RuntimeError(f"terminating launched machines failed: {self.error!r}") from self.error
        self.sweep()
        return self.launched


class CycleLoop:
    """The idle cycle back to back in its own process, where the scheduler would run it.

    Under `serve` the scheduler lives in the work process, apart from the acks, so the stress runs in a
    separate process on the same database, moto and Slack stand-in, niced as the work process is. The
    settings differ from the bot's in three ways only, so that every cycle does all its work: the idle age
    rule is one second (a fresh moto fleet is minutes old, below the 2 h default), reminders are allowed at
    any hour, and digests go to the team channel too. Enforcement stays off: nothing is stopped.
    """

    def __init__(self, settings: Settings, team_channel: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._cycling = context.Event()
        self._results: Any = context.Queue()
        cycle_settings = settings.model_copy(
            update={
                "min_age_idle": timedelta(seconds=1),
                "work_start": "00:00",
                "work_end": "23:59",
                "work_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "team_channel": team_channel,
                "idle_enforce": False,
            }
        )
        self._process = context.Process(
            target=_cycle_loop_main,
            args=(cycle_settings, self._stop, self._cycling, self._results),
            name="bench-cycle",
        )
        self.durations: list[float] = []
        self.totals: dict[str, int] = {}

    def start(self, timeout: float = 120.0) -> CycleLoop:
        """Start the process and return once its first cycle is under way, so every request meets one."""
        self._process.start()
        if not self._cycling.wait(timeout):
            self._process.kill()
            raise RuntimeError(f"the idle-cycle process did not start a cycle within {timeout:g} s")
        return self

    def stop(self) -> None:
        self._stop.set()
        outcome, durations, totals = self._results.get(timeout=300)
        self._process.join(60)
        if outcome != "ok":
            raise RuntimeError(f"the background idle cycle failed: {outcome}")
        self.durations, self.totals = durations, totals
        if not self.durations:
            raise RuntimeError("no idle cycle completed during the measurement")
        if not self.totals.get("marked") or not self.totals.get("digests"):
            raise RuntimeError(f"the idle cycles marked or notified nothing: {self.totals}")


def _cycle_loop_main(settings: Settings, stop: Any, cycling: Any, results: Any) -> None:
    """The cycle loop's process: production services on the given settings, cycles until told to stop."""
    from bot.scheduler.runtime import ScheduledServices
    from bot.slack.client import make_web_client
    from bot.slack.notifier import SlackNotifier
    from bot.wiring import build_services
    from storage.engine import make_engine
    from storage.models import MarkState

    os.nice(settings.work_process_nice)  # as the work process, where the scheduler runs, does
    engine = make_engine(settings.database_url)
    services = build_services(
        settings, engine=engine, notifier=SlackNotifier(make_web_client(settings)), clock=SystemClock()
    )
    cycle = ScheduledServices.build(services, settings).idle
    marks = services.deps.repos.cleanup_marks
    # A fleet nobody has been reminded about yet: close what an earlier cell's cycles left open.
    for row in marks.list_open():
        marks.transition(row.id or 0, row.state, MarkState.UNMARKED.value)
    durations: list[float] = []
    totals = {"cycles": 0, "candidates": 0, "marked": 0, "digests": 0}
    try:
        while True:
            began = time.perf_counter()
            cycling.set()
            report = cycle.run()
            durations.append(time.perf_counter() - began)
            totals["cycles"] += 1
            totals["candidates"] = max(totals["candidates"], report.candidates)
            totals["marked"] += len(report.steps.get("mark", ())) + len(report.steps.get("notify", ()))
            totals["digests"] += 1 if report.steps.get("notify") else 0
            if report.stopped:
                raise RuntimeError(f"a dry-run cycle stopped {len(report.stopped)} machines")
            if stop.is_set():  # checked after a cycle: the one running when the acks end always completes
                break
    except Exception as exc:  # reported by stop(): a failing cycle would invalidate the column
        results.put((repr(exc), durations, totals))
        return
    finally:
        services.shutdown()
        engine.dispose()
    results.put(("ok", durations, totals))


@contextmanager
def _quiet_logs() -> Iterator[None]:
    """waitress warns on every queued request at 50 clients; the queueing shows in the latencies anyway."""
    logger = logging.getLogger("waitress.queue")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class Bench:
    """One bot, two bare apps, one load generator: runs and checks the cells."""

    def __init__(
        self,
        bot: RunningBot,
        settings: Settings,
        bare_urls: dict[str, str],
        load: LoadGenerator,
        requester: User,
        channel: Channel,
    ) -> None:
        self.bot = bot
        self.settings = settings
        self.bare_urls = bare_urls
        self.load = load
        self.requester = requester
        self.channel = channel

    def prepare(self, text: str, count: int) -> list[PreparedRequest]:
        """Signed deliveries, each with its own trigger id and response_url, built before the clock starts."""
        prepared = []
        for _ in range(count):
            request = slash_command_request(
                self.bot.standin, command=COMMAND, text=text, user=self.requester.id, channel=self.channel.id
            )
            prepared.append(PreparedRequest(request.body, request.headers))
        return prepared

    def fire(self, url: str, text: str, count: int, concurrency: int) -> LoadResult:
        result = self.load.fire(url, self.prepare(text, count), concurrency)
        if result.errors or set(result.statuses) != {200} or len(result.latencies) != count:
            raise RuntimeError(
                f"{url} `{text}` x{count} at {concurrency}: statuses {dict(result.statuses)}, "
                f"errors {result.errors[:3]}"
            )
        return result

    def drain(self) -> float:
        began = time.perf_counter()
        if not self.bot.drain(timeout=300):
            raise RuntimeError("the bot's work did not drain within 300 s")
        return time.perf_counter() - began

    def answered(self) -> int:
        return sum(1 for p in self.bot.standin.response_posts() if not p.outcome.startswith("rejected"))

    def warm_up(self) -> None:
        """First requests pay for imports, auth.test and connection pools; none of that is an ack."""
        for url in (*self.bare_urls.values(), self.bot.url):
            self.fire(url, "list", 20, 5)
        reaper = Reaper(self.bot.moto, CREATE_PROJECT).start()
        self.fire(self.bot.url, COMMANDS["create"], 5, 5)
        self.drain()
        reaper.stop()

    def cell(self, command: str, concurrency: int, variant: str, count: int) -> dict[str, Any]:
        text = COMMANDS[command]
        if variant in BARES:
            result = self.fire(self.bare_urls[variant], text, count, concurrency)
            return {"latency": latency_summary(result.latencies), **_load_facts(result)}
        loop: CycleLoop | None = None
        if variant == "bot+cycle":
            loop = CycleLoop(self.settings, self.channel.id).start()
        reaper = Reaper(self.bot.moto, CREATE_PROJECT).start() if command == "create" else None
        answered_before = self.answered()
        began = time.perf_counter()
        try:
            try:
                result = self.fire(self.bot.url, text, count, concurrency)
                last_ack = time.perf_counter()
            finally:
                if loop is not None:
                    # It is there to stress the acks; it finishes the cycle under way, and the drain
                    # below is timed from the last ack, so that wait is not left out of it.
                    loop.stop()
            self.drain()
            drained_after = time.perf_counter() - last_ack
        finally:
            launched = reaper.stop() if reaper is not None else set()
        work_total = time.perf_counter() - began
        cell: dict[str, Any] = {
            "latency": latency_summary(result.latencies),
            **_load_facts(result),
            "work": {
                "drain_after_last_ack_s": round(drained_after, 3),
                "acks_and_work_s": round(work_total, 3),
            },
        }
        done = self.answered() - answered_before
        if command == "list":
            cell["work"]["lists_answered"] = done
            if done != count:
                raise RuntimeError(f"{count} lists were acked but {done} were answered")
        elif command == "help":
            if done or self.bot.pending():
                raise RuntimeError(f"`help` is answered in the ack, yet {done} answers were posted after it")
        else:
            cell["work"]["machines_launched"] = len(launched)
            if len(launched) != count:
                raise RuntimeError(f"{count} creates were acked but {len(launched)} machines were launched")
        if loop is not None:
            cell["cycle"] = {
                "cycles_completed": len(loop.durations),
                "cycle_mean_ms": round(1000 * sum(loop.durations) / len(loop.durations), 1),
                "candidates": loop.totals["candidates"],
                "machines_marked": loop.totals["marked"],
                "cycles_with_digests": loop.totals["digests"],
            }
        return cell


def _load_facts(result: LoadResult) -> dict[str, Any]:
    over = sum(1 for s in result.latencies if s * 1000 > SLACK_LIMIT_MS)
    return {
        "wall_s": round(result.wall_seconds, 3),
        "requests_per_s": round(result.throughput, 1),
        "connections_opened": result.connections_opened,
        "over_slack_limit": over,
    }


def run(quick: bool) -> dict[str, Any]:
    count = QUICK_REQUESTS if quick else FULL_REQUESTS
    requester, admin, channel = _people()
    started = time.perf_counter()
    with (
        _quiet_logs(),
        MotoProcess.start(nice=HARNESS_NICE) as moto,
        _harness_standin([requester, admin], [channel]) as standin,
        running_bot(
            standin,
            moto,
            {
                "RUNCTL_USERS": requester.id,
                "RUNCTL_ADMINS": admin.id,
                "RUNCTL_AMI_ID": x86_image(moto),
                **LIMITS,
            },
        ) as bot,
        # What the bot runs on, here too: the fleet's reconcile and the idle-cycle process use it.
        environment(bot.env),
        LoadGenerator() as load,
    ):
        settings = load_settings()  # as the bot process read them
        workers = settings.workers
        fleet = seed_fleet(
            moto, FLEET_SIZE, {tags.MANAGED: "true", tags.OWNER: requester.id, tags.PROJECT: FLEET_PROJECT}
        )
        seed_cpu(moto, {i: (1.0 if n % 2 else 60.0) for n, i in enumerate(fleet)})
        _reconcile(settings)
        with bare_apps(bot) as bare_urls:
            bench = Bench(bot, settings, bare_urls, load, requester, channel)
            bench.warm_up()
            cells: list[dict[str, Any]] = []
            for command in COMMANDS:
                for level in LEVELS:
                    row: dict[str, Any] = {"command": f"/runctl {COMMANDS[command]}", "concurrency": level}
                    for variant in VARIANTS:
                        row[variant] = bench.cell(command, level, variant, count)
                        _progress(command, level, variant, row[variant])
                    for bare, key in (("bare", "ratio_p99"), ("bare inline", "ratio_p99_inline")):
                        floor = row[bare]["latency"]["p99_ms"]
                        row[key] = {v: round(row[v]["latency"]["p99_ms"] / floor, 2) for v in BOTS}
                    cells.append(row)
        peaks = bot.server.peak_rss_mb()
        rss = {
            "bot_process_peak_rss_mb": peaks.pop(str(bot.server.pid)),
            "work_process_peak_rss_mb": max(peaks.values(), default=0.0),
        }
    met = all(r <= TARGET_RATIO for c in cells for r in c["ratio_p99"].values())
    inline_met = all(r <= TARGET_RATIO for c in cells for r in c["ratio_p99_inline"].values())
    setup = {
        "requests_per_cell": count,
        "levels": list(LEVELS),
        "fleet_machines": FLEET_SIZE,
        "http_threads": workers,
        "bot_workers": workers,
        "connections": "HTTP/1.1 keep-alive, one per client thread; closed loop",
        "limits": "quota, user and approval limits set to 1,000,000 so every create launches",
        "harness": f"moto and the Slack stand-in at niceness {HARNESS_NICE} (the work process's), the load "
        "generator at 0",
        "cycle": "the idle cycle back to back (dry run), age rule 1 s so all 50 machines are metric "
        "candidates, reminders at any hour, digests to the owner and the team channel; each cell starts "
        "without open marks",
    }
    result: dict[str, Any] = {
        "title": TITLE,
        "setup": setup,
        "cells": cells,
        "target": f"bot p99 <= {TARGET_RATIO} x bare p99 at every level",
        "target_met": met,
        "inline_floor": f"bot p99 <= {TARGET_RATIO} x bare inline p99 at every level",
        "inline_floor_met": inline_met,
        "slack_limit_ms": SLACK_LIMIT_MS,
        **rss,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    result["markdown"] = render(result)
    return result


def _progress(command: str, level: int, variant: str, cell: dict[str, Any]) -> None:
    lat = cell["latency"]
    work = cell.get("work", {})
    extra = f", work drained {work['drain_after_last_ack_s']:.2f} s after the last ack" if work else ""
    print(
        f"  {command:<6} x{level:<3} {variant:<11} p50 {lat['p50_ms']:7.2f}  p99 {lat['p99_ms']:7.2f}  "
        f"max {lat['max_ms']:7.2f} ms{extra}",
        flush=True,
    )


def render(result: dict[str, Any]) -> str:
    """The markdown section: latency table, work-after-ack table, and what was set up."""
    setup = result["setup"]
    verdict = "met" if result["target_met"] else "missed"
    inline_verdict = "met" if result["inline_floor_met"] else "missed"
    n = setup["requests_per_cell"]
    from_top = n - math.ceil(0.99 * n)  # how many samples are slower than the nearest-rank p99
    p99_is = "the slowest" if from_top == 0 else f"the slowest but {from_top}"
    lines = [
        f"{n} signed requests per cell. Latency is the time from sending a request to the last byte of "
        f"its HTTP response (the ack), in ms; with {n} samples p99 is {p99_is}. "
        "*bare*: a Bolt app that only acks, on Bolt's defaults; *bare inline*: the same with the bot's "
        "own Bolt setting, the listener in the request thread. Each app is a process of its own. "
        f"Target: bot p99 ≤ {TARGET_RATIO}× bare p99 at every level — **{verdict}**; "
        f"against bare inline — **{inline_verdict}**. `help` is answered in the ack, with no work after it.",
        "",
        "| command | concurrent | app | p50 | p95 | p99 | max | p99 ÷ bare | p99 ÷ bare inline | req/s |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for cell in result["cells"]:
        for variant in VARIANTS:
            data = cell[variant]
            lat = data["latency"]
            ratios = ["—", "—"]
            if variant in BOTS:
                ratios = [
                    f"{r:.2f}{' ✗' if r > TARGET_RATIO else ''}"
                    for r in (cell["ratio_p99"][variant], cell["ratio_p99_inline"][variant])
                ]
            lines.append(
                f"| `{cell['command']}` | {cell['concurrency']} | {variant} | {lat['p50_ms']:.1f} | "
                f"{lat['p95_ms']:.1f} | {lat['p99_ms']:.1f} | {lat['max_ms']:.1f} | {ratios[0]} | "
                f"{ratios[1]} | {data['requests_per_s']:.0f} |"
            )
    over = sum(c[v]["over_slack_limit"] for c in result["cells"] for v in VARIANTS)
    lines += [
        "",
        f"Acks slower than Slack's 3 s limit: {over}.",
        "",
        "Work after the ack. It really ran: every list was answered through its `response_url`, every "
        "create launched a machine, counted in moto. *Acks + work* runs from the first request until "
        "the work process has reported every piece of work done; the idle-cycle loop stops with the last "
        "ack. *Cycles* = idle cycles completed during the cell (mean duration), *marked* = machines it "
        "marked or notified, with the digests it sent.",
        "",
        "| command | concurrent | app | acks + work (s) | drained after last ack (s) | cycles (mean ms) | "
        "marked (cycles with digests) |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for cell in result["cells"]:
        if cell["command"] == f"{COMMAND} help":
            continue
        for variant in BOTS:
            data = cell[variant]
            cycle = data.get("cycle")
            cycles = f"{cycle['cycles_completed']} ({cycle['cycle_mean_ms']:.0f})" if cycle else "—"
            marked = f"{cycle['machines_marked']} ({cycle['cycles_with_digests']})" if cycle else "—"
            lines.append(
                f"| `{cell['command']}` | {cell['concurrency']} | {variant} | "
                f"{data['work']['acks_and_work_s']:.2f} | {data['work']['drain_after_last_ack_s']:.2f} | "
                f"{cycles} | {marked} |"
            )
    lines += [
        "",
        f"Setup: {setup['fleet_machines']} managed machines in moto (half idle, half busy CPU); "
        f"{setup['http_threads']} waitress threads and {setup['bot_workers']} executor workers "
        f"(the defaults); {setup['connections']}; {setup['limits']}; {setup['harness']}; "
        f"bot+cycle: {setup['cycle']}. Peak RSS: the bot's web process "
        f"{result['bot_process_peak_rss_mb']:.0f} MB, its work process "
        f"{result['work_process_peak_rss_mb']:.0f} MB; "
        f"whole run {result['wall_s']:.0f} s.",
    ]
    return "\n".join(lines)
