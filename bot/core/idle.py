"""The idle verdict (DESIGN §3 rule 4): idle must be *proven*, not assumed.

`idle_verdict(series_by_metric, policy, now)` looks at each utilisation series over the window
`[now - window, now)` and returns one of three outcomes:

- `IDLE`: every required metric (CPU) is present, and every metric that is present (CPU, and GPU where the
  provider has one) has enough datapoints (coverage ≥ `min_coverage` of the expected count) and stays
  strictly below the threshold by the configured statistic (`max`: every datapoint; `mean`: the average).
  A value exactly at the threshold is not idle.
- `BUSY`: a metric shows activity. With `max` one datapoint at or above the threshold is proof enough, even
  when data is partial; with `mean` the average must be over a sufficiently covered window.
- `INSUFFICIENT_DATA`: anything else — a missing required metric, too few datapoints, a malformed series.
  Rules treat it as *not idle*; reminders keep waiting rather than unmarking.

The window's start is rounded down to a whole period, as CloudWatch rounds a request's StartTime: the
first bucket is stamped at that boundary, before `now - window`, and holds data from inside the window
(without this, a window of one period could never be proven idle). Datapoints outside the window are
ignored, NaN values count as missing, and datapoints sharing a timestamp
count once towards coverage. The expected count is the larger of what the provider says and what the
policy's window and period imply, so a provider/policy mismatch can only make the verdict more cautious.
The GPU series is considered whenever the provider returns one: a provider should omit it for machines
that have no GPU metric, because an empty GPU series means missing data, and missing data is not idle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from bot.core.clock import as_utc, require_utc
from bot.core.policy import IdlePolicy, IdleStatistic
from providers.base import UtilisationSeries

EvidenceValue = str | int | float | bool | None


class IdleStatus(StrEnum):
    IDLE = "idle"
    BUSY = "busy"
    INSUFFICIENT_DATA = "insufficient_data"


@dataclass(frozen=True)
class MetricEvidence:
    metric: str
    status: IdleStatus
    received: int  # distinct in-window datapoints
    expected: int
    threshold: float
    statistic: IdleStatistic
    maximum: float | None
    mean: float | None
    reason: str

    @property
    def coverage(self) -> float:
        return min(1.0, self.received / self.expected) if self.expected > 0 else 0.0

    @property
    def value(self) -> float | None:
        """The statistic the verdict was judged on."""
        return self.maximum if self.statistic is IdleStatistic.MAX else self.mean


@dataclass(frozen=True)
class IdleVerdict:
    instance_id: str
    status: IdleStatus
    reason: str
    as_of: datetime  # the end of the window, UTC
    window: timedelta
    metrics: tuple[MetricEvidence, ...]

    @property
    def idle(self) -> bool:
        return self.status is IdleStatus.IDLE

    @property
    def busy(self) -> bool:
        return self.status is IdleStatus.BUSY

    def evidence(self) -> dict[str, EvidenceValue]:
        """Flat, JSON-friendly evidence for reminders and the audit log (`cpu_max`, `gpu_coverage`, …)."""
        out: dict[str, EvidenceValue] = {
            "idle_status": self.status.value,
            "idle_as_of": self.as_of.isoformat(),
            "idle_window_minutes": self.window.total_seconds() / 60,
        }
        for m in self.metrics:
            out[f"{m.metric}_status"] = m.status.value
            out[f"{m.metric}_max"] = m.maximum
            out[f"{m.metric}_mean"] = m.mean
            out[f"{m.metric}_datapoints"] = m.received
            out[f"{m.metric}_expected"] = m.expected
            out[f"{m.metric}_coverage"] = round(m.coverage, 4)
            out[f"{m.metric}_threshold"] = m.threshold
        if self.metrics:
            out["idle_statistic"] = self.metrics[0].statistic.value
        return out


def _label(metric: str) -> str:
    return metric.upper() if len(metric) <= 4 else metric


def _pct(value: float) -> str:
    return f"{value:.1f} %"


def _bucket_floor(when: datetime, period_seconds: int) -> datetime:
    """The start of the metric bucket holding `when`: buckets are aligned to the period since the epoch."""
    seconds = when.timestamp()
    return when - timedelta(seconds=seconds % period_seconds)


def _metric_evidence(
    metric: str, series: UtilisationSeries, policy: IdlePolicy, start: datetime, end: datetime
) -> MetricEvidence:
    expected = max(series.expected_datapoints, policy.expected_datapoints)
    threshold, statistic = policy.threshold_percent, policy.statistic
    label = _label(metric)

    def evidence(
        status: IdleStatus, received: int, reason: str, top: float | None = None, mean: float | None = None
    ) -> MetricEvidence:
        return MetricEvidence(metric, status, received, expected, threshold, statistic, top, mean, reason)

    if len(series.timestamps) != len(series.values):
        return evidence(
            IdleStatus.INSUFFICIENT_DATA,
            0,
            f"the {label} series is malformed ({len(series.timestamps)} timestamps, "
            f"{len(series.values)} values)",
        )
    in_window = [
        (as_utc(ts), float(v))
        for ts, v in zip(series.timestamps, series.values, strict=True)
        if start <= as_utc(ts) < end and not math.isnan(float(v))
    ]
    # The rounded-down start can let one more bucket in than a full window holds.
    received = min(len({ts for ts, _ in in_window}), expected)
    minutes = f"{policy.window.total_seconds() / 60:g} min"
    if received == 0:
        return evidence(IdleStatus.INSUFFICIENT_DATA, 0, f"no {label} datapoints in the last {minutes}")
    values = [v for _, v in in_window]
    top = max(values)
    mean = math.fsum(values) / len(values) if all(math.isfinite(v) for v in values) else top
    coverage = min(1.0, received / expected)
    enough = coverage >= policy.min_coverage
    judged = top if statistic is IdleStatistic.MAX else mean
    counted = f"{received}/{expected} datapoints"
    if judged >= threshold and (enough or statistic is IdleStatistic.MAX):
        word = "reached" if statistic is IdleStatistic.MAX else "averaged"
        return evidence(
            IdleStatus.BUSY,
            received,
            f"{label} {word} {_pct(judged)} (threshold {_pct(threshold)}, {counted})",
            top,
            mean,
        )
    if not enough:
        return evidence(
            IdleStatus.INSUFFICIENT_DATA,
            received,
            f"only {received} of {expected} {label} datapoints ({coverage:.0%}) in the last {minutes}; "
            f"at least {policy.min_coverage:.0%} needed",
            top,
            mean,
        )
    return evidence(
        IdleStatus.IDLE,
        received,
        f"{label} {statistic.value} {_pct(judged)} < {_pct(threshold)} over the last {minutes} ({counted})",
        top,
        mean,
    )


def idle_verdict(
    series_by_metric: Mapping[str, UtilisationSeries],
    policy: IdlePolicy,
    now: datetime,
    *,
    instance_id: str | None = None,
) -> IdleVerdict:
    """Judge one machine's utilisation over the window that ends at `now`."""
    now = require_utc(now)
    start = _bucket_floor(now - policy.window, policy.period_seconds)
    ids = {s.instance_id for s in series_by_metric.values()}
    if instance_id is not None:
        ids.add(instance_id)
    if len(ids) > 1:
        raise ValueError(f"utilisation series of different machines were mixed: {sorted(ids)}")
    machine = next(iter(ids), "")
    by_metric = {name.strip().lower(): series for name, series in series_by_metric.items()}
    metrics = [
        _metric_evidence(name, by_metric[name], policy, start, now)
        for name in sorted(by_metric, key=lambda n: (n != "cpu", n))
    ]
    missing = sorted(policy.required_metrics - by_metric.keys())
    busy = [m for m in metrics if m.status is IdleStatus.BUSY]
    short = [m for m in metrics if m.status is IdleStatus.INSUFFICIENT_DATA]
    if busy:
        status, reason = IdleStatus.BUSY, "; ".join(m.reason for m in busy)
    elif missing or short:
        parts = [f"no {_label(name)} data" for name in missing] + [m.reason for m in short]
        status, reason = IdleStatus.INSUFFICIENT_DATA, "; ".join(parts) + " (missing data is not idle)"
    else:
        status, reason = IdleStatus.IDLE, "; ".join(m.reason for m in metrics)
    return IdleVerdict(machine, status, reason, now, policy.window, tuple(metrics))
