"""The work process's start-up warm-up: one-time costs paid in the background, not by the first report.

Profiled in `benchmarks/bench_report.py`, the first channel report after a start paid ~0.6 s for importing
matplotlib and its first render, and ~0.2 s for loading EC2's service model into the provider's client;
its database reads cost a few ms more than later ones. None of it depends on the fleet, so the work process
pays it once, right after it reports ready, in a thread of its own: the web process keeps acking
meanwhile, and work that arrives during the warm-up runs as before (it only shares the imports).

Every step does the real thing: imports the chart module and renders a one-bar chart, runs the report's
history query for an owner nobody has (an empty result), and builds the provider's EC2 and CloudWatch
clients (no request is sent). A failed step is logged and skipped: the first report then pays for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from bot.services.container import BotServices

log = logging.getLogger(__name__)

#: No Slack user id looks like this, so the history query finds nothing.
NOBODY = "runctl-warm-up"
CLIENTS = ("ec2", "cloudwatch")


def _chart() -> None:
    from bot.services.reports import ReportData, cost_chart

    now = datetime.now(UTC)
    data = ReportData(
        at=now,
        running=0,
        hourly_now=Decimal(0),
        running_by_owner={},
        running_by_project={},
        cost_today=Decimal(0),
        cost_week=Decimal(1),
        daily={now.date(): {"warm-up": Decimal(1)}},
        top_spenders=[],
        saved_hours=Decimal(0),
        saved_usd=Decimal(0),
        unmanaged=(),
    )
    if not cost_chart(data).startswith(b"\x89PNG"):
        raise RuntimeError("the warm-up chart is not a PNG")


def _history(services: BotServices) -> None:
    snapshot = services.deps.repos.history.open_snapshot(datetime.now(UTC), owner=NOBODY)
    if snapshot.resources:
        raise RuntimeError(f"{len(snapshot.resources)} machines belong to {NOBODY!r}")


def _clients(services: BotServices) -> None:
    clients = getattr(services.deps.provider, "clients", None)
    if clients is None:  # not the AWS provider: nothing to load
        return
    for name in CLIENTS:
        clients.client(name)


def warm_up(services: BotServices) -> dict[str, float]:
    """Run every step once; seconds per step that succeeded."""
    steps = (
        ("chart", _chart),
        ("history", lambda: _history(services)),
        ("clients", lambda: _clients(services)),
    )
    seconds: dict[str, float] = {}
    for name, step in steps:
        began = time.perf_counter()
        try:
            step()
        except Exception:
            log.warning("warm-up step %s failed; the first use pays for it", name, exc_info=True)
            continue
        seconds[name] = round(time.perf_counter() - began, 3)
    log.info("warm-up done: %s", ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items()) or "nothing")
    return seconds


def start(services: BotServices, *, then: Callable[[], object] | None = None) -> threading.Thread:
    """`warm_up` (then `then`, if given) in a daemon thread; join it before stopping the services."""

    def run() -> None:
        warm_up(services)
        if then is not None:
            then()

    thread = threading.Thread(target=run, name="runctl-warm-up", daemon=True)
    thread.start()
    return thread
