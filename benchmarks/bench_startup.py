"""Startup: `runctl-bot serve` to its first `/healthz` answer, and `runctl-bot sandbox` to its page.

Each command runs as a fresh subprocess (the console script in this virtualenv), timed from just before
the process is spawned to the first HTTP 200 from 127.0.0.1, polled every 5 ms, then stopped with SIGTERM.
Targets (issue 9 item 5, issue 8): serve < 2 s, sandbox < 5 s.

* `serve` gets an already migrated SQLite file, the Slack stand-in and a moto server (both started once,
  in this process and in moto's own), as a deployment's environment would point at Slack and AWS.
* `sandbox` gets a fresh data directory each run: first use, so it starts its own moto, seeds the demo
  fleet and migrates its database, all inside the timed span.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.common import FAKE_AWS_ENV, MotoProcess, bot_environment
from bot.slack.standin import SlackStandIn

TITLE = "Startup of serve and sandbox"
FULL_RUNS = 5
QUICK_RUNS = 2
TARGETS_S = {"serve": 2.0, "sandbox": 5.0}
TIMEOUT_S = 60.0


def _command() -> list[str]:
    script = Path(sys.executable).with_name("runctl-bot")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "bot.cli"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            response.read()
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def _time_to_answer(args: list[str], url: str, env: dict[str, str], cwd: Path) -> float:
    """Seconds from spawning `args` to the first 200 from `url`; the process is stopped afterwards."""
    began = time.perf_counter()
    process = subprocess.Popen(
        args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        while not _answers(url):
            if process.poll() is not None:
                error = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise RuntimeError(f"{' '.join(args)} exited with {process.returncode}: {error[-2000:]}")
            if time.perf_counter() - began > TIMEOUT_S:
                raise RuntimeError(f"{' '.join(args)} did not answer {url} within {TIMEOUT_S:g} s")
            time.sleep(0.005)
        return time.perf_counter() - began
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stderr:
            process.stderr.close()


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SLACK_", "RUNCTL_"))}
    env.pop("DATABASE_URL", None)
    return {**env, **FAKE_AWS_ENV}


def _serve_runs(runs: int, workdir: Path) -> list[float]:
    from storage.migrate import upgrade

    samples: list[float] = []
    with MotoProcess.start() as moto, SlackStandIn() as standin:
        db_path = workdir / "serve.db"
        upgrade(f"sqlite:///{db_path}")
        for _ in range(runs):
            port = _free_port()
            env = {**_base_env(), **bot_environment(db_path, standin, moto, RUNCTL_PORT=str(port))}
            samples.append(
                _time_to_answer([*_command(), "serve"], f"http://127.0.0.1:{port}/healthz", env, workdir)
            )
    return samples


def _sandbox_runs(runs: int, workdir: Path) -> list[float]:
    samples: list[float] = []
    for n in range(runs):
        port = _free_port()
        data_dir = workdir / f"sandbox-{n}"
        args = [*_command(), "sandbox", "--port", str(port), "--data-dir", str(data_dir)]
        samples.append(_time_to_answer(args, f"http://127.0.0.1:{port}/", _base_env(), workdir))
    return samples


def render(result: dict[str, Any]) -> str:
    lines = [
        f"{result['runs']} runs each, a fresh process per run, timed from spawn to the first HTTP 200.",
        "",
        "| command | answers | median (s) | max (s) | target | runs (s) |",
        "| --- | --- | ---: | ---: | --- | --- |",
    ]
    for name, row in result["commands"].items():
        mark = "met" if row["target_met"] else "**missed**"
        lines.append(
            f"| `runctl-bot {name}` | `{row['url_path']}` | {row['median_s']:.2f} | {row['max_s']:.2f} | "
            f"< {row['target_s']:g} s, {mark} | {', '.join(f'{s:.2f}' for s in row['samples_s'])} |"
        )
    lines += [
        "",
        "`serve`: migrated SQLite, the Slack stand-in and moto already running. `sandbox`: a fresh data "
        "directory each run, so its own moto, the demo fleet and the migration are inside the time.",
    ]
    return "\n".join(lines)


def run(quick: bool) -> dict[str, Any]:
    runs = QUICK_RUNS if quick else FULL_RUNS
    with tempfile.TemporaryDirectory(prefix="runctl-bench-startup-") as tmp:
        workdir = Path(tmp)
        measured = {"serve": _serve_runs(runs, workdir), "sandbox": _sandbox_runs(runs, workdir)}
    paths = {"serve": "/healthz", "sandbox": "/"}
    commands = {
        name: {
            "url_path": paths[name],
            "samples_s": [round(s, 3) for s in samples],
            "median_s": round(statistics.median(samples), 3),
            "max_s": round(max(samples), 3),
            "target_s": TARGETS_S[name],
            "target_met": max(samples) < TARGETS_S[name],
        }
        for name, samples in measured.items()
    }
    result: dict[str, Any] = {"title": TITLE, "runs": runs, "commands": commands}
    result["markdown"] = render(result)
    return result
