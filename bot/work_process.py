"""The work process: everything after an ack runs in a second process, so acks never wait for it.

Under `serve`, the web process only verifies, parses, authorises and acks; each piece of work (a kind and
the Slack payload, see `bot.slack.handoff`) goes down a pipe to a child process that holds the full bot:
its own database engine, provider, executor and, for `--role all`, the scheduler. CPU-bound work
(botocore parsing, Block Kit rendering, cost maths) then competes with acks for neither the interpreter
lock nor the collector: measured in `docs/performance.md`.

The parent keeps every piece of work it sent until the child reports it done. When the child dies, work it
had not started is sent again to a new child; work it had started is not (it may have half happened: the
delivery claim and compare-and-set make a retry safe, but a second try is the user's call), and the user
is told through the payload's `response_url`.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry
from slack_bolt import Respond

from bot.config import Settings

log = logging.getLogger(__name__)

INTERRUPTED = (
    ":warning: The bot's work process restarted while it was working on your request, so it may be "
    "half done. Check with `/runctl status` or `/runctl list` before you try again."
)

MAX_RESTART_DELAY = 30.0
#: How long a stopping work process waits for a warm-up still running (it takes about a second).
WARM_UP_JOIN_S = 10.0


@dataclass
class _Item:
    kind: str
    body: dict[str, Any]
    started: bool = False


class ProcessHandoff:
    """The web process's side: queue work, send it to the child, keep it until done, restart the child."""

    def __init__(self, settings: Settings, *, scheduler: bool, restart_delay: float = 1.0) -> None:
        self.settings = settings
        self.scheduler = scheduler
        self.restart_delay = restart_delay
        self._context = multiprocessing.get_context("spawn")
        self._ids = itertools.count(1)
        self._items: dict[int, _Item] = {}
        self._lock = threading.Condition()
        self._outbox: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._metric_answers: dict[int, queue.SimpleQueue[bytes]] = {}
        self._stopping = False
        self._ready = threading.Event()
        self._conn: Connection | None = None
        self._process: Any = None  # multiprocessing.context.SpawnProcess
        self._threads: list[threading.Thread] = []
        self.restarts = 0
        self._failed_starts = 0

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        from bot.metrics import WORK_PENDING

        # Read when /metrics is scraped: a queue that only grows means the work process is stuck or slow.
        WORK_PENDING.set_function(self.pending)
        self._spawn()
        for target, name in ((self._send_loop, "work-send"), (self._receive_loop, "work-receive")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _spawn(self) -> None:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=worker_main,
            args=(self.settings, child, self.scheduler),
            name="runctl-work",
            daemon=False,
        )
        process.start()
        child.close()
        self._ready.clear()
        with self._lock:
            self._conn, self._process = parent, process
            # Whatever the last child never started goes to this one, in the order it arrived.
            for item_id, item in sorted(self._items.items()):
                self._outbox.put(("work", item_id, item.kind, item.body))
        log.info("work process %d started", process.pid)

    def stop(self, timeout: float = 60.0) -> None:
        """Finish the queued work, then let the child drain its executor and the scheduler and exit."""
        self.drain(timeout)
        with self._lock:
            self._stopping = True
            process = self._process
        self._outbox.put(("stop",))
        if process is not None:
            process.join(timeout)
            if process.is_alive():
                log.error("work process %d did not stop in %.0f s; terminating it", process.pid, timeout)
                process.terminate()
                process.join(5)
        self._outbox.put(None)
        for thread in self._threads:
            thread.join(5)
        if self._conn is not None:
            self._conn.close()

    def alive(self) -> bool:
        process = self._process
        return bool(process is not None and process.is_alive() and self._ready.is_set())

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    # --- the Handoff protocol --------------------------------------------------------------------

    def put(self, kind: str, body: dict[str, Any], respond: Respond) -> None:
        item_id = next(self._ids)
        with self._lock:
            self._items[item_id] = _Item(kind, body)
        self._outbox.put(("work", item_id, kind, body))

    def drain(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._items:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True

    def pending(self) -> int:
        with self._lock:
            return len(self._items)

    # --- metrics ---------------------------------------------------------------------------------

    def exposition(self, timeout: float = 2.0) -> bytes | None:
        """The child's `/metrics` text, or None when it does not answer in time."""
        request = next(self._ids)
        answer: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        with self._lock:
            self._metric_answers[request] = answer
        self._outbox.put(("metrics", request))
        try:
            return answer.get(timeout=timeout)
        except queue.Empty:
            return None
        finally:
            with self._lock:
                self._metric_answers.pop(request, None)

    # --- the two pipe threads --------------------------------------------------------------------

    def _send_loop(self) -> None:
        """The only writer of the pipe: a full pipe blocks this thread, never a request thread."""
        while True:
            message = self._outbox.get()
            if message is None:
                return
            conn = self._conn
            try:
                if conn is not None:
                    conn.send(message)
            except (OSError, ValueError):
                # The child is gone: the receive loop starts a new one and resends what was never started.
                continue

    def _receive_loop(self) -> None:
        while True:
            conn = self._conn
            try:
                assert conn is not None
                message = conn.recv()
            except (EOFError, OSError, AssertionError):
                with self._lock:
                    stopping = self._stopping
                if stopping:
                    return
                self._child_died()
                continue
            self._on_message(message)

    def _on_message(self, message: tuple[Any, ...]) -> None:
        what = message[0]
        if what == "ready":
            self._ready.set()
        elif what == "started":
            with self._lock:
                item = self._items.get(message[1])
                if item is not None:
                    item.started = True
        elif what == "done":
            with self._lock:
                self._items.pop(message[1], None)
                self._lock.notify_all()
        elif what == "metrics":
            with self._lock:
                answer = self._metric_answers.get(message[1])
            if answer is not None:
                answer.put(message[2])

    def _child_died(self) -> None:
        process = self._process
        if process is not None:
            process.join(5)
        code = process.exitcode if process is not None else None
        # A child that dies before it is ready (bad config, database down) is retried ever more slowly.
        self._failed_starts = 0 if self._ready.is_set() else self._failed_starts + 1
        if self._conn is not None:
            self._conn.close()
        with self._lock:
            lost = [(item_id, item) for item_id, item in self._items.items() if item.started]
            for item_id, _ in lost:
                del self._items[item_id]
            self._lock.notify_all()
        log.error(
            "work process exited unexpectedly (exit code %s); %d piece(s) of work were interrupted",
            code,
            len(lost),
        )
        for _, item in lost:
            _tell_interrupted(item)
        self.restarts += 1
        time.sleep(min(MAX_RESTART_DELAY, self.restart_delay * 2**self._failed_starts))
        self._spawn()


def _tell_interrupted(item: _Item) -> None:
    from bot.slack.handoff import respond_for

    respond = respond_for(item.body)
    if respond.response_url is None:
        return
    try:
        respond(text=INTERRUPTED, response_type="ephemeral", replace_original=False)
    except Exception:
        log.exception("could not tell the user that their %s was interrupted", item.kind)


# --- the child -----------------------------------------------------------------------------------


def worker_main(settings: Settings, conn: Connection, scheduler: bool) -> None:
    """Entry point of the spawned child: the full bot, fed work by the web process."""
    from bot.logs import setup_logging
    from bot.metrics import exposition
    from bot.runtime import settle_heap
    from bot.services import warmup
    from bot.slack.handoff import respond_for
    from bot.wiring import build_application

    # The web process decides when this one stops (a `stop` message, or its end closing the pipe);
    # a signal to the whole process group must not cut work short here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    setup_logging(settings.log_level, settings.log_format)
    # Slack waits for acks, not for this work: when the CPUs are busy, the kernel serves the web process
    # first.
    if settings.work_process_nice:
        os.nice(settings.work_process_nice)
    application = build_application(settings, role="scheduler" if scheduler else "web")
    assert application.slack is not None
    kinds = application.slack.kinds
    sending = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        with sending:
            try:
                conn.send(message)
            except (OSError, ValueError):
                log.warning("the web process is gone; %s not reported", message[0])

    seen: set[int] = set()

    def run(item_id: int, kind: str, body: dict[str, Any]) -> None:
        send(("started", item_id))
        try:
            kinds.run(kind, body, respond_for(body))
        finally:
            send(("done", item_id))

    application.start()
    settle_heap()
    send(("ready",))
    log.info("work process ready (scheduler %s)", "on" if scheduler else "off")
    # One-time costs (chart imports, client models) now, in the background, rather than in the first
    # report; what it loads is long-lived, so it goes out of the collector's way like the rest.
    warming = warmup.start(application.services, then=settle_heap)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            log.warning("the web process closed the pipe; stopping")
            break
        if message[0] == "work":
            # A piece resent around a restart can arrive twice; it runs once.
            if message[1] not in seen:
                seen.add(message[1])
                application.services.submit(run, message[1], message[2], message[3])
        elif message[0] == "metrics":
            send(("metrics", message[1], exposition()))
        elif message[0] == "stop":
            break
    warming.join(WARM_UP_JOIN_S)
    application.stop()
    log.info("work process stopped cleanly")


# --- one /metrics for both processes -------------------------------------------------------------


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


def merge_expositions(*texts: bytes) -> bytes:
    """One exposition from several processes' texts: counts and gauges add up, `_created` keeps the first."""
    merged: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text.decode()):
            target = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            samples = values.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in samples:
                    samples[key] = sample.value
                elif sample.name.endswith("_created"):
                    samples[key] = min(samples[key], sample.value)
                else:
                    samples[key] += sample.value
    for name, target in merged.items():
        for (sample_name, labels), value in values[name].items():
            target.add_sample(sample_name, dict(labels), value)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(merged.values()))
    return generate_latest(registry)
