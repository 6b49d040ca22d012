"""`/metrics` under `serve` adds the web process's and the work process's registries into one exposition."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bot.work_process import merge_expositions


def _process(commands: dict[tuple[str, str], int], idle: float, acks: list[float]) -> bytes:
    registry = CollectorRegistry()
    counter = Counter("runctl_commands_total", "commands", ["verb", "outcome"], registry=registry)
    gauge = Gauge("runctl_idle_machines", "idle", registry=registry)
    histogram = Histogram("runctl_ack_seconds", "acks", buckets=(0.01, 0.1), registry=registry)
    for (verb, outcome), n in commands.items():
        counter.labels(verb, outcome).inc(n)
    gauge.set(idle)
    for seconds in acks:
        histogram.observe(seconds)
    return generate_latest(registry)


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_counters_histograms_and_gauges_add_up_across_processes() -> None:
    web = _process({("help", "ok"): 2, ("list", "denied"): 1}, idle=0, acks=[0.004, 0.05])
    work = _process({("list", "ok"): 5, ("help", "ok"): 1}, idle=7, acks=[])
    merged = _samples(merge_expositions(web, work))
    assert merged[("runctl_commands_total", (("outcome", "ok"), ("verb", "help")))] == 3
    assert merged[("runctl_commands_total", (("outcome", "denied"), ("verb", "list")))] == 1
    assert merged[("runctl_commands_total", (("outcome", "ok"), ("verb", "list")))] == 5
    assert merged[("runctl_idle_machines", ())] == 7
    assert merged[("runctl_ack_seconds_count", ())] == 2
    assert merged[("runctl_ack_seconds_bucket", (("le", "0.01"),))] == 1
    assert merged[("runctl_ack_seconds_bucket", (("le", "+Inf"),))] == 2


def test_the_merged_text_keeps_types_and_help_and_parses_again() -> None:
    text = merge_expositions(_process({("list", "ok"): 1}, idle=1, acks=[0.2]))
    assert b"# TYPE runctl_commands_total counter" in text
    assert b"# TYPE runctl_ack_seconds histogram" in text
    assert b"# HELP runctl_idle_machines idle" in text
    assert _samples(text) == _samples(_process({("list", "ok"): 1}, idle=1, acks=[0.2]))
