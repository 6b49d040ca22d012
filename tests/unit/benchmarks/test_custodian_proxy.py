"""The benchmark's counting proxy: what it counts, per wire protocol, in front of a real moto server."""

from __future__ import annotations

import http.client
import json
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from benchmarks.custodian.proxy import (
    CALLS_PATH,
    RESET_PATH,
    CountingProxy,
    ProxyStats,
    _items_of,
    call_key,
    metric_queries,
)
from tests.support.moto import MotoServer

SIGNED_EC2 = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20261129/us-east-1/ec2/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=00"
}
SIGNED_MONITORING = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20261129/us-east-1/monitoring/aws4_request, "
    "SignedHeaders=host, Signature=00"
}
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[CountingProxy]:
    moto_server.reset()
    with CountingProxy(moto_server.endpoint_url) as running:
        yield running


def _client(moto_server: MotoServer, proxy: CountingProxy, service: str) -> Any:
    """A boto3 client with fake credentials whose every request goes through the proxy."""
    make_client: Callable[..., Any] = moto_server.session().client
    return make_client(service, endpoint_url=proxy.url)


# -- recognising the action ----------------------------------------------------------------------------------


def test_ec2_query_protocol_is_read_from_the_form_body() -> None:
    body = b"Action=DescribeInstances&Version=2016-11-15&MaxResults=1000"
    assert call_key("POST", "/", {**SIGNED_EC2, **FORM}, body) == "ec2.DescribeInstances"


def test_cloudwatch_query_protocol_is_named_as_botocore_names_the_client() -> None:
    body = b"Action=GetMetricStatistics&Version=2010-08-01"
    assert call_key("POST", "/", {**SIGNED_MONITORING, **FORM}, body) == "cloudwatch.GetMetricStatistics"


def test_json_protocol_is_read_from_the_target_header() -> None:
    headers = {**SIGNED_MONITORING, "X-Amz-Target": "GraniteServiceVersion20100801.GetMetricData"}
    assert call_key("POST", "/", headers, b"{}") == "cloudwatch.GetMetricData"


def test_rpc_v2_cbor_is_read_from_the_path() -> None:
    path = "/service/GraniteServiceVersion20100801/operation/GetMetricData"
    headers = {**SIGNED_MONITORING, "smithy-protocol": "rpc-v2-cbor"}
    assert call_key("POST", path, headers, b"\xa0") == "cloudwatch.GetMetricData"


def test_query_string_actions_and_unsigned_requests_are_still_counted() -> None:
    assert call_key("GET", "/?Action=DescribeRegions&Version=2016-11-15", SIGNED_EC2, b"") == (
        "ec2.DescribeRegions"
    )
    assert call_key("POST", "/moto-api/reset", {}, b"") == "unsigned.POST /moto-api/reset"


# -- in front of moto --------------------------------------------------------------------------------------


def test_counts_every_call_by_action_and_forwards_the_answers(
    moto_server: MotoServer, proxy: CountingProxy
) -> None:
    ec2 = _client(moto_server, proxy, "ec2")
    cloudwatch = _client(moto_server, proxy, "cloudwatch")
    sts = _client(moto_server, proxy, "sts")
    launched = ec2.run_instances(ImageId="ami-0d27e0fb3bac4d724", MinCount=2, MaxCount=2)["Instances"]
    ids = sorted(i["InstanceId"] for i in launched)
    listed = ec2.describe_instances()["Reservations"][0]["Instances"]
    ec2.describe_instances(InstanceIds=ids[:1])
    now = datetime.now(UTC)
    cloudwatch.put_metric_data(
        Namespace="AWS/EC2",
        MetricData=[
            {
                "MetricName": "CPUUtilization",
                "Dimensions": [{"Name": "InstanceId", "Value": ids[0]}],
                "Timestamp": now - timedelta(minutes=2),
                "Value": 3.5,
            }
        ],
    )
    answer = cloudwatch.get_metric_statistics(
        Namespace="AWS/EC2",
        MetricName="CPUUtilization",
        Dimensions=[{"Name": "InstanceId", "Value": ids[0]}],
        StartTime=now - timedelta(minutes=10),
        EndTime=now,
        Period=600,
        Statistics=["Maximum"],
    )
    assert sts.get_caller_identity()["Account"] == "123456789012"

    stats = proxy.stats()
    assert sorted(i["InstanceId"] for i in listed) == ids
    assert [p["Maximum"] for p in answer["Datapoints"]] == [3.5]
    assert stats.calls == {
        "ec2.RunInstances": 1,
        "ec2.DescribeInstances": 2,
        "cloudwatch.PutMetricData": 1,
        "cloudwatch.GetMetricStatistics": 1,
        "sts.GetCallerIdentity": 1,
    }
    assert stats.total == 6
    assert stats.errors == {}
    assert 0 < stats.busy_seconds <= stats.server_seconds
    assert stats.seconds.keys() == stats.calls.keys()
    assert sum(stats.seconds.values()) == pytest.approx(stats.server_seconds)
    assert stats.first_seen["ec2.DescribeInstances"] <= stats.last_seen["ec2.DescribeInstances"]


def test_cloudwatch_as_this_botocore_sends_it_is_counted(
    moto_server: MotoServer, proxy: CountingProxy
) -> None:
    cloudwatch = _client(moto_server, proxy, "cloudwatch")
    now = datetime.now(UTC)
    query = {
        "Id": "cpu0",
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/EC2",
                "MetricName": "CPUUtilization",
                "Dimensions": [{"Name": "InstanceId", "Value": "i-0123456789abcdef0"}],
            },
            "Period": 300,
            "Stat": "Maximum",
        },
    }
    for _ in range(3):
        cloudwatch.get_metric_data(MetricDataQueries=[query], StartTime=now - timedelta(hours=1), EndTime=now)
    assert proxy.stats().calls == {"cloudwatch.GetMetricData": 3}


def test_error_answers_are_passed_through_and_counted_as_errors(
    moto_server: MotoServer, proxy: CountingProxy
) -> None:
    ec2 = _client(moto_server, proxy, "ec2")
    with pytest.raises(ClientError) as raised:
        ec2.describe_instances(InstanceIds=["i-0123456789abcdef0"])
    assert raised.value.response["Error"]["Code"] == "InvalidInstanceID.NotFound"
    stats = proxy.stats()
    assert stats.calls == {"ec2.DescribeInstances": 1}
    assert stats.errors == {"ec2.DescribeInstances": 1}


def test_a_chunked_request_body_is_read_whole(proxy: CountingProxy) -> None:
    parts = urlsplit(proxy.url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    body = [b"Action=DescribeRegions", b"&Version=2016-11-15"]
    connection.request("POST", "/", body=iter(body), headers={**SIGNED_EC2, **FORM}, encode_chunked=True)
    response = connection.getresponse()
    answer = response.read()
    connection.close()
    assert response.status == 200
    assert b"us-east-1" in answer
    assert proxy.stats().calls == {"ec2.DescribeRegions": 1}


def test_reset_and_read_over_http(moto_server: MotoServer, proxy: CountingProxy) -> None:
    _client(moto_server, proxy, "ec2").describe_instances()
    with urllib.request.urlopen(proxy.url + CALLS_PATH, timeout=30) as response:
        before = json.loads(response.read())
    reset = urllib.request.Request(proxy.url + RESET_PATH, method="POST", data=b"")
    with urllib.request.urlopen(reset, timeout=30) as response:
        assert json.loads(response.read()) == {"reset": True}
    with urllib.request.urlopen(proxy.url + CALLS_PATH, timeout=30) as response:
        after = json.loads(response.read())
    assert before["calls"] == {"ec2.DescribeInstances": 1}
    assert after["calls"] == {}
    assert after["busy_seconds"] == 0.0
    assert proxy.stats().total == 0


def test_unknown_control_paths_are_refused_and_not_forwarded(proxy: CountingProxy) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(proxy.url + "/__proxy__/nothing", timeout=30)
    assert raised.value.code == 404
    assert proxy.stats().total == 0


# -- metric queries per GetMetricData request ----------------------------------------------------------------


def _metric_query(n: int) -> dict[str, Any]:
    return {
        "Id": f"cpu{n}",
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/EC2",
                "MetricName": "CPUUtilization",
                "Dimensions": [{"Name": "InstanceId", "Value": f"i-{n:017x}"}],
            },
            "Period": 300,
            "Stat": "Maximum",
        },
        "ReturnData": True,
    }


def _serialized(protocol: str, queries: int) -> tuple[dict[str, str], bytes]:
    """A GetMetricData request body as botocore serializes it in `protocol`."""
    import botocore.session
    from botocore.serialize import create_serializer

    model = botocore.session.get_session().get_service_model("cloudwatch").operation_model("GetMetricData")
    now = datetime.now(UTC)
    request = create_serializer(protocol).serialize_to_request(
        {
            "MetricDataQueries": [_metric_query(n) for n in range(queries)],
            "StartTime": now - timedelta(hours=1),
            "EndTime": now,
        },
        model,
    )
    body = request["body"]
    if isinstance(body, dict):  # the query serializer hands back the form fields
        from urllib.parse import urlencode

        body = urlencode(body)
    return dict(request["headers"]), body if isinstance(body, bytes) else str(body).encode()


@pytest.mark.parametrize("protocol", ["smithy-rpc-v2-cbor", "json", "query"])
def test_metric_queries_are_read_from_the_body_in_every_protocol(protocol: str) -> None:
    headers, body = _serialized(protocol, 7)
    if protocol == "query":
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
    assert metric_queries(headers, body) == 7


def test_queries_of_each_get_metric_data_request_are_kept_in_order(
    moto_server: MotoServer, proxy: CountingProxy
) -> None:
    cloudwatch = _client(moto_server, proxy, "cloudwatch")
    now = datetime.now(UTC)
    for count in (3, 1):
        cloudwatch.get_metric_data(
            MetricDataQueries=[_metric_query(n) for n in range(count)],
            StartTime=now - timedelta(hours=1),
            EndTime=now,
        )
    _client(moto_server, proxy, "ec2").describe_instances()
    stats = proxy.stats()
    assert stats.items == {"cloudwatch.GetMetricData": [3, 1]}
    assert ProxyStats.from_json(json.loads(json.dumps(stats.to_json()))).items == stats.items
    proxy.reset()
    assert proxy.stats().items == {}


def test_an_unreadable_metric_body_is_forwarded_and_marked() -> None:
    headers = {**SIGNED_MONITORING, "Content-Type": "application/cbor"}
    path = "/service/GraniteServiceVersion20100801/operation/GetMetricData"
    key = call_key("POST", path, headers, b"\xff\x00")
    assert key == "cloudwatch.GetMetricData"
    assert _items_of(key, headers, b"\x1f") == -1
    assert _items_of("ec2.DescribeInstances", headers, b"") is None
