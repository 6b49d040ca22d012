"""Utilisation of many instances from CloudWatch `GetMetricData`, never one request per instance.

One query per (instance, metric); at most 500 queries per request (the API limit), and each request follows
`NextToken` until its results are complete. 600 instances with CPU only: two requests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from providers.aws.calls import AwsCaller
from providers.aws.config import CLOUDWATCH_STATISTICS, AwsConfig
from providers.aws.ec2 import unique
from providers.base import UtilisationSeries
from providers.errors import InvalidRequestError

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

MAX_QUERIES_PER_CALL = 500
CPU = "cpu"
GPU = "gpu"
_HIGH_RESOLUTION_PERIODS = (1, 5, 10, 30)


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


@dataclass(frozen=True)
class _Query:
    query_id: str
    instance_id: str
    metric: MetricSpec


def build_queries(
    instance_ids: Sequence[str], specs: Sequence[MetricSpec], *, period_seconds: int, statistic: str
) -> list[tuple[_Query, dict[str, Any]]]:
    queries: list[tuple[_Query, dict[str, Any]]] = []
    for index, instance_id in enumerate(instance_ids):
        for spec in specs:
            query = _Query(f"{spec.key}{index}", instance_id, spec)
            queries.append(
                (
                    query,
                    {
                        "Id": query.query_id,
                        "MetricStat": {
                            "Metric": {
                                "Namespace": spec.namespace,
                                "MetricName": spec.name,
                                "Dimensions": [{"Name": spec.dimension, "Value": instance_id}],
                            },
                            "Period": period_seconds,
                            "Stat": statistic,
                        },
                        "ReturnData": True,
                    },
                )
            )
    return queries


class CloudWatchUtilisation:
    def __init__(self, client: CloudWatchClient, caller: AwsCaller, config: AwsConfig) -> None:
        self._client = client
        self._caller = caller
        self._specs = metric_specs(config)
        self._default_statistic = config.cpu_statistic

    def fetch(
        self,
        instance_ids: Sequence[str],
        *,
        end: datetime,
        window: timedelta,
        period_seconds: int = 300,
        statistic: str | None = None,
    ) -> dict[str, dict[str, UtilisationSeries]]:
        """Per instance, per configured metric, the series in [end - window, end), oldest first.

        Every requested instance gets every configured metric, possibly empty: missing data must be visible
        (expected vs received datapoints) so that it can never read as idle.
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
        queries = build_queries(ids, self._specs, period_seconds=period_seconds, statistic=stat)
        by_id = {query.query_id: query for query, _ in queries}
        for batch in chunked_queries(queries):
            for page in self._caller.pages(
                "cloudwatch:GetMetricData",
                self._client.get_metric_data,
                {
                    "MetricDataQueries": batch,
                    "StartTime": start_utc,
                    "EndTime": end_utc,
                    "ScanBy": "TimestampAscending",
                },
            ):
                _collect(page, points)
        result: dict[str, dict[str, UtilisationSeries]] = {}
        for query_id, query in by_id.items():
            series_points = points.get(query_id, {})
            ordered = sorted(series_points.items())
            result.setdefault(query.instance_id, {})[query.metric.key] = UtilisationSeries(
                instance_id=query.instance_id,
                metric=query.metric.key,
                timestamps=tuple(ts for ts, _ in ordered),
                values=tuple(value for _, value in ordered),
                expected_datapoints=expected,
            )
        return result


def chunked_queries(queries: Sequence[tuple[_Query, dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    bodies = [body for _, body in queries]
    return [bodies[i : i + MAX_QUERIES_PER_CALL] for i in range(0, len(bodies), MAX_QUERIES_PER_CALL)]


def _collect(page: Mapping[str, Any], points: dict[str, dict[datetime, float]]) -> None:
    for result in page.get("MetricDataResults") or ():
        series = points.setdefault(str(result["Id"]), {})
        for ts, value in zip(result.get("Timestamps") or (), result.get("Values") or (), strict=False):
            when = ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)
            series[when] = float(value)
