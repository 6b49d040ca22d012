"""Shared set-up for the benchmarks: the real bot on 127.0.0.1, a load generator, and honest statistics.

What runs where, and why:

* The bot runs as `runctl-bot serve --role web`, a process of its own with its work process beside it, as
  in production: the acks are measured in the process that serves them, with nothing of the benchmark's
  own (the Slack stand-in, checks against moto) competing with them for that process's interpreter lock.
* moto runs in a process of its own: in production AWS is not inside the bot's process either.
* The Slack stand-in runs in this process (the bot's answers are small posts to it); it is what builds and
  signs requests exactly as Slack would.
* Load comes from a separate process (`LoadGenerator`), for the same reason: client threads in a measured
  process would steal its interpreter lock.

Nothing here imports from `tests/`: benchmarks must run from a checkout without the test suite. The bot,
boto3 and moto are imported inside the functions that use them, because the moto and load-generator
child processes import this module too and should start without them.
"""

from __future__ import annotations

import gc
import http.client
import math
import multiprocessing
import os
import platform
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from bot.slack.standin import SlackStandIn

REGION = "us-east-1"
#: Credentials moto accepts; set in this process (and inherited by children) so boto3 never looks further.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/runctl-bench/config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/runctl-bench/credentials",
}
_AWS_ENV_TO_CLEAR = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent

# --- the machine --------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    """What the figures were measured on; every result file carries it, as numbers mean nothing without."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "memory_gb": _memory_gb(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()}",
    }


def describe_machine(info: Mapping[str, Any]) -> str:
    memory = f", {info['memory_gb']} GB RAM" if info.get("memory_gb") else ""
    return (
        f"{info['cpu_model']}, {info['usable_cpus']} usable of {info['logical_cpus']} logical CPUs"
        f"{memory}, {info['python']}, {info['os']}"
    )


def _status_kb(field_name: str, pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return float(line.split()[1])
    raise RuntimeError(f"{field_name} is not in /proc/{pid}/status")


def rss_mb() -> float:
    """This process's resident set size now."""
    return round(_status_kb("VmRSS") / 1024, 1)


def peak_rss_mb() -> float:
    """The highest resident set size this process has had (the kernel's high-water mark)."""
    return round(_status_kb("VmHWM") / 1024, 1)


# --- statistics ---------------------------------------------------------------------------------------


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: a value that really occurred, never an interpolation between two."""
    if not samples:
        raise ValueError("no samples")
    if not 0 < p <= 100:
        raise ValueError("p must be in (0, 100]")
    ordered = sorted(samples)
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max and the mean, in milliseconds rounded to 0.01 ms."""

    def ms(value: float) -> float:
        return round(value * 1000, 2)

    return {
        "n": len(seconds),
        "p50_ms": ms(percentile(seconds, 50)),
        "p95_ms": ms(percentile(seconds, 95)),
        "p99_ms": ms(percentile(seconds, 99)),
        "max_ms": ms(max(seconds)),
        "mean_ms": ms(sum(seconds) / len(seconds)),
    }


class GcWatch:
    """Garbage collections in this process while the block runs, with how long each held the process.

    A collection runs in whichever thread happened to allocate, holding the GIL, so every other thread
    (an ack included) waits for it: long full collections show up directly in latency tails.
    """

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._started = 0.0

    def _on(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._started))

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._on)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._on)

    def summary(self) -> dict[str, float]:
        full = [d for generation, d in self.pauses if generation == 2]
        return {
            "collections": len(self.pauses),
            "full_collections": len(full),
            "longest_full_ms": round(1000 * max(full, default=0.0), 1),
            "total_ms": round(1000 * sum(d for _, d in self.pauses), 1),
        }


# --- environment --------------------------------------------------------------------------------------


@contextmanager
def environment(values: Mapping[str, str], *, clear: Sequence[str] = ()) -> Iterator[None]:
    """Set (and remove) environment variables for the block, then put everything back."""
    names = set(values) | set(clear)
    saved = {name: os.environ.get(name) for name in names}
    try:
        for name in clear:
            os.environ.pop(name, None)
        os.environ.update(values)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --- moto in its own process --------------------------------------------------------------------------


def _moto_main(conn: Connection, nice: int = 0) -> None:
    """Child process: serve moto on 127.0.0.1 and run the parent's own AWS calls (seeding, checking).

    The parent's calls run here so that their boto3 clients (tens of thousands of parsed service-model
    objects) do not sit in the measured process, where every garbage collection would scan them too.
    """
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    if nice:
        os.nice(nice)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    conn.send(url)
    clients: dict[str, Any] = {}
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                return
            if message == "stop":
                return
            kind, service, operation, kwargs = message
            try:
                if service not in clients:
                    clients[service] = boto3.client(service, region_name=REGION, endpoint_url=url)
                client = clients[service]
                if kind == "paginate":
                    answer: Any = list(client.get_paginator(operation).paginate(**kwargs))
                else:
                    answer = getattr(client, operation)(**kwargs)
                conn.send(("ok", answer))
            except Exception as exc:
                conn.send(("error", f"{service}.{operation}: {type(exc).__name__}: {exc}"))
    finally:
        server.stop()


class MotoProcess:
    """moto's server mode in a spawned child process, for real boto3 clients over HTTP.

    `call` and `paginate` run an AWS call in the child (outside the bot's process) and return the answer.
    """

    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Connection, url: str) -> None:
        self._process = process
        self._conn = conn
        self._lock = threading.Lock()
        self.endpoint_url = url

    @classmethod
    def start(cls, timeout: float = 60.0, *, nice: int = 0) -> MotoProcess:
        """`nice`: CPU niceness for the moto process, where it shares the cores with what is measured."""
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(target=_moto_main, args=(child, nice), name="moto", daemon=True)
        with environment(FAKE_AWS_ENV, clear=_AWS_ENV_TO_CLEAR):
            process.start()
        child.close()
        if not parent.poll(timeout):
            process.kill()
            raise RuntimeError(f"moto did not start within {timeout:g} s")
        return cls(process, parent, str(parent.recv()))

    def _ask(self, kind: str, service: str, operation: str, kwargs: dict[str, Any]) -> Any:
        with self._lock:
            self._conn.send((kind, service, operation, kwargs))
            status, answer = self._conn.recv()
        if status != "ok":
            raise RuntimeError(str(answer))
        return answer

    def call(self, service: str, operation: str, **kwargs: Any) -> dict[str, Any]:
        """`boto3.client(service).<operation>(**kwargs)`, run against moto from the child process."""
        answer: dict[str, Any] = self._ask("call", service, operation, kwargs)
        return answer

    def paginate(self, service: str, operation: str, **kwargs: Any) -> list[dict[str, Any]]:
        pages: list[dict[str, Any]] = self._ask("paginate", service, operation, kwargs)
        return pages

    def reset(self) -> None:
        """Forget every resource in every service."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def stop(self) -> None:
        try:
            with self._lock:
                self._conn.send("stop")
        except (BrokenPipeError, OSError):
            pass
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._conn.close()

    def __enter__(self) -> MotoProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


# --- fleet seeding ------------------------------------------------------------------------------------


def seed_fleet(
    moto: MotoProcess,
    count: int,
    tags: Mapping[str, str],
    *,
    instance_type: str = "g5.xlarge",
) -> list[str]:
    """`count` machines launched in one RunInstances call, tagged at launch as the bot would have."""
    response = moto.call(
        "ec2",
        "run_instances",
        ImageId=x86_image(moto),
        InstanceType=instance_type,
        MinCount=count,
        MaxCount=count,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )
    return [str(i["InstanceId"]) for i in response["Instances"]]


def put_cpu(cloudwatch: Any, points: Sequence[tuple[str, datetime, float]]) -> int:
    """CPUUtilization datapoints `(instance id, timestamp, value)`, 1,000 per PutMetricData request.

    `cloudwatch` is anything with boto3's `put_metric_data` signature: a client, or `MotoProcess.calls`.
    Returns how many datapoints were written.
    """
    data = [
        {
            "MetricName": "CPUUtilization",
            "Dimensions": [{"Name": "InstanceId", "Value": instance_id}],
            "Timestamp": when,
            "Value": value,
            "Unit": "Percent",
        }
        for instance_id, when, value in points
    ]
    for start in range(0, len(data), 1000):
        cloudwatch.put_metric_data(Namespace="AWS/EC2", MetricData=data[start : start + 1000])
    return len(data)


def seed_cpu(
    moto: MotoProcess,
    values: Mapping[str, float],
    *,
    window: timedelta = timedelta(minutes=60),
    period: timedelta = timedelta(minutes=5),
) -> int:
    """A CPUUtilization datapoint every `period` over the last `window` per instance; returns how many."""
    now = datetime.now(UTC)
    steps = int(window / period)
    points = [
        (instance_id, now - period * step - timedelta(seconds=30), value)
        for instance_id, value in values.items()
        for step in range(steps)
    ]
    return put_cpu(_MotoCloudWatch(moto), points)


class _MotoCloudWatch:
    """`put_metric_data` run inside the moto process, as the benchmark's other AWS calls are."""

    def __init__(self, moto: MotoProcess) -> None:
        self._moto = moto

    def put_metric_data(self, **kwargs: Any) -> None:
        self._moto.call("cloudwatch", "put_metric_data", **kwargs)


def x86_image(moto: MotoProcess) -> str:
    """An x86_64 image moto ships, for `RUNCTL_AMI_ID` (moto has no AWS-owned Deep Learning AMI to find)."""
    images = moto.call(
        "ec2",
        "describe_images",
        Filters=[{"Name": "architecture", "Values": ["x86_64"]}, {"Name": "state", "Values": ["available"]}],
    )["Images"]
    if not images:
        raise RuntimeError("moto lists no x86_64 image")
    return str(sorted(images, key=lambda i: str(i["ImageId"]))[0]["ImageId"])


def live_instances(moto: MotoProcess, filters: Sequence[Mapping[str, Any]]) -> list[str]:
    """Ids of pending or running instances matching `filters` (asked of moto, not of the bot)."""
    all_filters = [*filters, {"Name": "instance-state-name", "Values": ["pending", "running"]}]
    ids: list[str] = []
    for page in moto.paginate("ec2", "describe_instances", Filters=all_filters):
        for reservation in page["Reservations"]:
            ids.extend(str(i["InstanceId"]) for i in reservation["Instances"])
    return ids


def terminate(moto: MotoProcess, instance_ids: Sequence[str]) -> None:
    for start in range(0, len(instance_ids), 500):
        moto.call("ec2", "terminate_instances", InstanceIds=list(instance_ids[start : start + 500]))


# --- serving a WSGI app with the production stack -----------------------------------------------------


# --- the whole bot ------------------------------------------------------------------------------------


class ServedProcess:
    """A command that serves HTTP on 127.0.0.1:`port`, run as its own process, as it runs in production.

    Started by `start`, which returns once `ready_path` answers 200; stopped with SIGTERM (a clean
    shutdown), then killed if it does not exit. Its output goes to a temporary file, shown on failure.
    """

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], port: int, name: str) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.port = port
        self.name = name
        # Closed in stop(); the process writes to it for as long as it runs.
        self._log = tempfile.TemporaryFile(prefix=f"runctl-bench-{name}-")  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, ready_path: str = "/healthz", timeout: float = 90.0) -> ServedProcess:
        env = {k: v for k, v in os.environ.items() if k not in _AWS_ENV_TO_CLEAR}
        env.update(self.env)
        # In the benchmark's own session: with the kernel's autogroup scheduling (on by default), CPU
        # niceness only counts between processes of one session, and the benchmark sets some on purpose.
        self.process = subprocess.Popen(
            self.argv, env=env, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {self.output()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}{ready_path}", timeout=5) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready on {ready_path} within {timeout:g} s: {self.output()}")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def output(self, tail: int = 4000) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-tail:]

    def peak_rss_mb(self) -> dict[str, float]:
        """The high-water resident set of the process and of each child (the bot's work process), by pid."""
        peaks = {}
        for pid in (self.pid, *_children(self.pid)):
            try:
                peaks[str(pid)] = round(_status_kb("VmHWM", pid) / 1024, 1)
            except (OSError, RuntimeError):
                continue
        return peaks

    def stop(self, timeout: float = 60.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="utf-8") as children:
            return [int(c) for c in children.read().split()]
    except OSError:
        return []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningBot:
    """`runctl-bot serve --role web` as a process of its own, its work process beside it."""

    standin: SlackStandIn
    moto: MotoProcess
    server: ServedProcess
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"{self.server.base_url}/slack/events"

    @property
    def signing_secret(self) -> str:
        return self.standin.signing_secret

    def pending(self) -> float:
        """Acked requests whose work is not done yet, from the bot's own `/metrics`."""
        with urllib.request.urlopen(f"{self.server.base_url}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        for line in text.splitlines():
            if line.startswith("runctl_work_pending "):
                return float(line.split()[1])
        raise RuntimeError("the bot's /metrics has no runctl_work_pending")

    def drain(self, timeout: float = 300.0, longest_poll: float = 0.25) -> bool:
        """Wait until the work after every ack so far is done; True when none is left.

        Each poll costs the bot a `/metrics` (the work process's exposition, parsed and merged), so the
        polls thin out to one every `longest_poll` seconds rather than slowing the work they wait for.
        """
        deadline = time.monotonic() + timeout
        wait = 0.01
        while time.monotonic() < deadline:
            if self.pending() == 0:
                return True
            time.sleep(wait)
            wait = min(longest_poll, wait * 2)
        return False


def bot_environment(db_path: Path, standin: SlackStandIn, moto: MotoProcess, **extra: str) -> dict[str, str]:
    """The variables `runctl-bot serve` would be given, pointing at the stand-in and moto."""
    return {
        "DATABASE_URL": f"sqlite:///{db_path}",
        "SLACK_BOT_TOKEN": standin.bot_token,
        "SLACK_SIGNING_SECRET": standin.signing_secret,
        "RUNCTL_SLACK_API_URL": standin.api_url,
        "AWS_ENDPOINT_URL": moto.endpoint_url,
        "RUNCTL_PRICING_API": "false",  # moto has no Pricing API; the shipped price table answers
        **FAKE_AWS_ENV,
        **extra,
    }


@contextmanager
def running_bot(
    standin: SlackStandIn,
    moto: MotoProcess,
    extra: Mapping[str, str] | None = None,
    *,
    workdir: Path | None = None,
) -> Iterator[RunningBot]:
    """`runctl-bot serve --role web` on 127.0.0.1, with settings from the environment, as in production.

    The database is migrated here first. The call returns once `/readyz` says ready, which includes the
    work process.
    """
    from storage.migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="runctl-bench-") as tmp:
        db_path = (workdir or Path(tmp)) / "bot.db"
        port = free_port()
        env = bot_environment(
            db_path, standin, moto, RUNCTL_HOST="127.0.0.1", RUNCTL_PORT=str(port), **(extra or {})
        )
        upgrade(env["DATABASE_URL"])
        server = ServedProcess([sys.executable, "-m", "bot", "serve", "--role", "web"], env, port, "bot")
        server.start("/readyz")
        try:
            yield RunningBot(standin, moto, server, env)
        finally:
            server.stop()


# --- load generation in its own process ---------------------------------------------------------------


@dataclass(frozen=True)
class PreparedRequest:
    """The exact bytes and headers of one delivery (built and signed beforehand, outside the timing)."""

    body: bytes
    headers: dict[str, str]


@dataclass
class LoadResult:
    latencies: list[float]
    statuses: Counter[int]
    wall_seconds: float
    connections_opened: int
    errors: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.wall_seconds if self.wall_seconds > 0 else 0.0


def _fire(url: str, requests: list[PreparedRequest], concurrency: int, keep_alive: bool) -> LoadResult:
    """Child process: `concurrency` client threads send `requests` back to back (a closed loop).

    Each latency runs from just before the request is written to the last byte of the response read.
    """
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
    work: queue.SimpleQueue[PreparedRequest] = queue.SimpleQueue()
    for request in requests:
        work.put(request)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    opened = [0]
    lock = threading.Lock()
    start_gate = threading.Barrier(concurrency + 1)

    def client() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        mine: list[float] = []
        codes: Counter[int] = Counter()
        problems: list[str] = []
        connects = 0
        start_gate.wait()
        while True:
            try:
                request = work.get_nowait()
            except queue.Empty:
                break
            headers = dict(request.headers)
            if not keep_alive:
                headers["Connection"] = "close"
            try:
                if conn.sock is None:
                    connects += 1
                began = time.perf_counter()
                conn.request("POST", path, body=request.body, headers=headers)
                response = conn.getresponse()
                response.read()
                elapsed = time.perf_counter() - began
            except (OSError, http.client.HTTPException) as exc:
                problems.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                continue
            mine.append(elapsed)
            codes[response.status] += 1
            if not keep_alive or response.will_close:
                conn.close()
        conn.close()
        with lock:
            latencies.extend(mine)
            statuses.update(codes)
            errors.extend(problems)
            opened[0] += connects

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    start_gate.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return LoadResult(latencies, statuses, time.perf_counter() - began, opened[0], errors)


class LoadGenerator:
    """A spawned process that fires prepared requests at a URL with N concurrent clients."""

    def __init__(self) -> None:
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        self.fire("http://127.0.0.1:9/", [], 1)  # start the process now, not during the first measurement

    def fire(
        self, url: str, requests: list[PreparedRequest], concurrency: int, *, keep_alive: bool = True
    ) -> LoadResult:
        return self._pool.submit(_fire, url, requests, concurrency, keep_alive).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# --- results files ------------------------------------------------------------------------------------


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()
