"""Utilisation of many instances from CloudWatch `GetMetricData`, never one request per instance.

One query per (instance, metric); at most 500 queries per request (the API limit), and each request follows
`NextToken` until its results are complete. 600 instances with CPU only: two requests.

The GPU metric, when configured, is asked for only on machines that may have accelerators
(`families.may_have_accelerators`): a t3 has no GPU, and an empty GPU series would count as missing data
and keep it from ever being idle. Any machine whose type is not known gets the GPU query (fail safe).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from providers.aws.calls import AwsCaller
from providers.aws.config import CLOUDWATCH_STATISTICS, AwsConfig
from providers.aws.ec2 import unique
from providers.aws.families import may_have_accelerators
from providers.base import UtilisationSeries
from providers.errors import InvalidRequestError

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

MAX_QUERIES_PER_CALL = 500
CPU = "cpu"
GPU = "gpu"
_HIGH_RESOLUTION_PERIODS = (1, 5, 10, 30)

# Instance id -> instance type for the ids given; ids it does not know are simply left out.
InstanceTypeLookup = Callable[[Sequence[str]], Mapping[str, str]]


@dataclass(frozen=True)
class MetricSpec:
    key: str  # "cpu" or "gpu": the key in the result
    namespace: str
    name: str
    dimension: str  # the dimension whose value is the instance id


def metric_specs(config: AwsConfig) -> list[MetricSpec]:
    specs = [MetricSpec(CPU, "AWS/EC2", "CPUUtilization", "InstanceId")]
    if config.gpu_metric_namespace and config.gpu_metric_name:
        specs.append(
            MetricSpec(GPU, config.gpu_metric_namespace, config.gpu_metric_name, config.gpu_metric_dimension)
        )
    return specs


def expected_datapoints(window: timedelta, period_seconds: int) -> int:
    return int(window.total_seconds()) // period_seconds


def validate_window(end: datetime, window: timedelta, period_seconds: int, statistic: str) -> None:
    if end.tzinfo is None:
        raise InvalidRequestError("utilisation end time must be timezone-aware")
    if period_seconds not in _HIGH_RESOLUTION_PERIODS and (period_seconds < 60 or period_seconds % 60):
        raise InvalidRequestError("period must be 1, 5, 10, 30 or a multiple of 60 seconds")
    if window.total_seconds() < period_seconds:
        raise InvalidRequestError("the window must be at least one period long")
    if statistic not in CLOUDWATCH_STATISTICS:
        raise InvalidRequestError(f"statistic must be one of {sorted(CLOUDWATCH_STATISTICS)}")


@dataclass(frozen=True, slots=True)
class _Query:
    query_id: str
    instance_id: str
    metric: MetricSpec

    def body(self, *, period_seconds: int, statistic: str) -> dict[str, Any]:
        """The `MetricDataQueries` entry, built only when its request is: 10,000 of them are ~10 MB."""
        spec = self.metric
        return {
            "Id": self.query_id,
            "MetricStat": {
                "Metric": {
                    "Namespace": spec.namespace,
                    "MetricName": spec.name,
                    "Dimensions": [{"Name": spec.dimension, "Value": self.instance_id}],
                },
                "Period": period_seconds,
                "Stat": statistic,
            },
            "ReturnData": True,
        }


def applies(spec: MetricSpec, instance_type: str | None) -> bool:
    """The GPU metric only where an accelerator may be (unknown type: yes); every other metric everywhere."""
    return spec.key != GPU or may_have_accelerators(instance_type)


def build_queries(
    instance_ids: Sequence[str],
    specs: Sequence[MetricSpec],
    instance_types: Mapping[str, str] | None = None,
) -> list[_Query]:
    """One query per (instance, metric that applies to it), in that order, with ids GetMetricData accepts
    (`cpu0`, `gpu0`...). Without `instance_types` every metric applies to every instance."""
    types = instance_types if instance_types is not None else {}
    return [
        _Query(f"{spec.key}{index}", instance_id, spec)
        for index, instance_id in enumerate(instance_ids)
        for spec in specs
        if instance_types is None or applies(spec, types.get(instance_id))
    ]


class CloudWatchUtilisation:
    def __init__(
        self,
        client: CloudWatchClient,
        caller: AwsCaller,
        config: AwsConfig,
        *,
        instance_types: InstanceTypeLookup | None = None,
    ) -> None:
        """`instance_types` tells which machines may have accelerators; it is asked only when a GPU metric
        is configured, and without it every machine gets the GPU query (the cautious default)."""
        self._client = client
        self._caller = caller
        self._specs = metric_specs(config)
        self._default_statistic = config.cpu_statistic
        self._lookup = instance_types

    def _types(self, ids: Sequence[str], given: Mapping[str, str] | None) -> Mapping[str, str] | None:
        if not any(spec.key == GPU for spec in self._specs):
            return None  # CPU only: types change nothing, so nothing is looked up
        if given is not None:
            return given
        return self._lookup(ids) if self._lookup is not None else None

    def fetch(
        self,
        instance_ids: Sequence[str],
        *,
        end: datetime,
        window: timedelta,
        period_seconds: int = 300,
        statistic: str | None = None,
        instance_types: Mapping[str, str] | None = None,
    ) -> dict[str, dict[str, UtilisationSeries]]:
        """Per instance, per metric that applies to it, the series in [end - window, end), oldest first.

        Every requested instance gets every metric that applies to it, possibly empty: missing data must be
        visible (expected vs received datapoints) so that it can never read as idle. The GPU metric is left
        out only for machines whose type (from `instance_types`, else the lookup) has no accelerator.
        """
        stat = statistic or self._default_statistic
        validate_window(end, window, period_seconds, stat)
        ids = unique(instance_ids)
        if not ids:
            return {}
        end_utc = end.astimezone(UTC)
        start_utc = end_utc - window
        expected = expected_datapoints(window, period_seconds)
        points: dict[str, dict[datetime, float]] = {}
        queries = build_queries(ids, self._specs, self._types(ids, instance_types))
        for start in range(0, len(queries), MAX_QUERIES_PER_CALL):
            batch = [
                q.body(period_seconds=period_seconds, statistic=stat)
                for q in queries[start : start + MAX_QUERIES_PER_CALL]
            ]
            for results in self._caller.parsed_pages(
                "cloudwatch:GetMetricData",
                self._client.get_metric_data,
                {
                    "MetricDataQueries": batch,
                    "StartTime": start_utc,
                    "EndTime": end_utc,
                    "ScanBy": "TimestampAscending",
                },
                _page_points,
            ):
                for query_id, series in results:
                    points.setdefault(query_id, {}).update(series)
            del batch
        result: dict[str, dict[str, UtilisationSeries]] = {}
        for query in queries:
            ordered = sorted(points.pop(query.query_id, {}).items())
            result.setdefault(query.instance_id, {})[query.metric.key] = UtilisationSeries(
                instance_id=query.instance_id,
                metric=query.metric.key,
                timestamps=tuple(ts for ts, _ in ordered),
                values=tuple(value for _, value in ordered),
                expected_datapoints=expected,
            )
        return result


def _page_points(page: Mapping[str, Any]) -> list[tuple[str, dict[datetime, float]]]:
    """`(query id, {timestamp: value})` per result of one answer (a query may continue on the next page)."""
    found: list[tuple[str, dict[datetime, float]]] = []
    for result in page.get("MetricDataResults") or ():
        series: dict[datetime, float] = {}
        for ts, value in zip(result.get("Timestamps") or (), result.get("Values") or (), strict=False):
            when = ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)
            series[when] = float(value)
        found.append((str(result["Id"]), series))
    return found
