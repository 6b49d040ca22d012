"""A moto server on 127.0.0.1 for integration and end-to-end tests, plus request counting and fault injection.

Usage (a suite's conftest.py)::

    @pytest.fixture(scope="session")
    def moto_server() -> Iterator[MotoServer]:
        server = MotoServer.start()
        yield server
        server.stop()

    @pytest.fixture
    def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
        moto_server.reset()                       # every test starts from an empty cloud
        apply_aws_env(monkeypatch, moto_server.endpoint_url)
        return moto_server

Counting and faults work on botocore's event system, at the client, so they see exactly the requests the code
under test sends (every attempt of every retry) without trusting the code's own bookkeeping. Attach them to a
`boto3.Session` *before* the code creates its clients (clients copy the session's handlers when they are
built), or to a client directly.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import threading
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from xml.sax.saxutils import escape

import boto3
import botocore.session
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.client import BaseClient
from botocore.compat import HTTPHeaders
from botocore.config import Config
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError
from botocore.httpsession import URLLib3Session
from botocore.loaders import create_loader
from moto.server import ThreadedMotoServer

ACCOUNT_ID = "123456789012"  # moto's default account
DEFAULT_REGION = "us-east-1"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
# Parsing the EC2 service model takes ~0.2 s; one loader (which caches parsed models) serves every session.
_SHARED_LOADER = create_loader()
# Anything that could send a test to a real account or make botocore look elsewhere for credentials.
_ENV_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_ENDPOINT_URL_EC2",
    "AWS_ENDPOINT_URL_SSM",
    "AWS_ENDPOINT_URL_CLOUDWATCH",
    "AWS_ENDPOINT_URL_PRICING",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_S3",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
)


def aws_env(endpoint_url: str, region: str = DEFAULT_REGION) -> dict[str, str]:
    """Environment for code (or a subprocess) that must talk to moto and nothing else."""
    return {
        **FAKE_CREDENTIALS,
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_EC2_METADATA_DISABLED": "true",  # no IMDS probe for credentials or region
        "AWS_CONFIG_FILE": "/nonexistent/runctl-bot-tests/config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/runctl-bot-tests/credentials",
    }


def apply_aws_env(monkeypatch: pytest.MonkeyPatch, endpoint_url: str, region: str = DEFAULT_REGION) -> None:
    for name in _ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    for name, value in aws_env(endpoint_url, region).items():
        monkeypatch.setenv(name, value)


class MotoServer:
    """moto in server mode on 127.0.0.1 with an OS-chosen port, for real boto3 clients over HTTP."""

    def __init__(self, server: ThreadedMotoServer, endpoint_url: str) -> None:
        self._server = server
        self.endpoint_url = endpoint_url

    @classmethod
    def start(cls) -> MotoServer:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        return cls(server, f"http://{host}:{port}")

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        """Forget every resource in every service (moto's `/moto-api/reset`)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def session(self, region: str = DEFAULT_REGION) -> boto3.Session:
        """A fresh session with fake credentials; service models are parsed once per run, not per test."""
        core = botocore.session.get_session()
        core.register_component("data_loader", _SHARED_LOADER)
        created = boto3.Session(
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
            region_name=region,
            botocore_session=core,
        )
        # boto3 appends its resource-model directory on every session; keep the shared list from growing.
        _SHARED_LOADER.search_paths[:] = list(dict.fromkeys(_SHARED_LOADER.search_paths))
        return created

    def client(self, service: str, region: str = DEFAULT_REGION) -> Any:
        """A client for seeding and inspecting state; its requests are not counted by anyone."""
        config = Config(retries={"total_max_attempts": 3, "mode": "standard"}, max_pool_connections=16)
        make_client: Callable[..., Any] = self.session(region).client
        return make_client(service, endpoint_url=self.endpoint_url, config=config)


# -- request counting --------------------------------------------------------------------------------------


def _events(target: boto3.Session | BaseClient) -> Any:
    return target.events if isinstance(target, boto3.Session) else target.meta.events


def _operation_of(event_name: str) -> tuple[str, str]:
    # "before-send.<service id>.<Operation>"
    _, service, operation = event_name.split(".", 2)
    return service, operation


class ApiCallCounter:
    """Counts HTTP requests per `service.Operation` at the client (botocore `before-send`).

    It also keeps the parameters of every API call as the code passed them (`provide-client-params`), so a
    test can check what was asked for, e.g. how instance ids were split across requests.
    """

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._params: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def attach(self, target: boto3.Session | BaseClient) -> ApiCallCounter:
        events = _events(target)
        events.register_first("before-send", self._on_send, unique_id=f"api-call-counter-{id(self)}")
        events.register_first(
            "provide-client-params", self._on_params, unique_id=f"api-call-params-{id(self)}"
        )
        return self

    def _on_send(self, request: AWSPreparedRequest, event_name: str, **_: Any) -> None:
        service, operation = _operation_of(event_name)
        with self._lock:
            self._counts[f"{service}.{operation}"] += 1

    def _on_params(self, params: Mapping[str, Any], event_name: str, **_: Any) -> None:
        service, operation = _operation_of(event_name)
        with self._lock:
            self._params.setdefault(f"{service}.{operation}", []).append(copy.deepcopy(dict(params)))

    def count(self, operation: str) -> int:
        """Requests for `"ec2.RunInstances"`, or for `"RunInstances"` in any service."""
        with self._lock:
            if "." in operation:
                return self._counts[operation]
            return sum(n for key, n in self._counts.items() if key.split(".", 1)[1] == operation)

    def params(self, operation: str) -> list[dict[str, Any]]:
        """The parameters of each call of `"service.Operation"`, in call order (one entry per API call)."""
        with self._lock:
            return [dict(p) for p in self._params.get(operation, [])]

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._params.clear()


# -- fault injection ---------------------------------------------------------------------------------------

FaultKind = Literal["error", "lose", "respond"]


@dataclass
class _Rule:
    service: str | None
    operation: str | None
    kind: FaultKind
    status: int = 0
    code: str = ""
    message: str = ""
    body: bytes | None = None
    lose_with: Literal["read-timeout", "connection-closed"] = "read-timeout"
    remaining: int | None = None
    probability: float = 1.0
    skip: int = 0

    def matches(self, service: str, operation: str) -> bool:
        return (self.service in (None, service)) and (self.operation in (None, operation))


@dataclass(frozen=True)
class InjectedFault:
    service: str
    operation: str
    kind: FaultKind
    code: str


class _RawBody:
    """The minimal raw-response object botocore reads an `AWSResponse` body from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def _cbor_text(value: str) -> bytes:
    data = value.encode()
    size = len(data)
    if size < 24:
        head = bytes([0x60 | size])
    elif size < 0x100:
        head = bytes([0x78, size])
    else:
        head = bytes([0x79]) + size.to_bytes(2, "big")
    return head + data


def _header(request: AWSPreparedRequest, name: str) -> str:
    value = request.headers.get(name)
    if isinstance(value, bytes):
        return value.decode()
    return str(value) if value is not None else ""


def _http_headers(values: Mapping[str, str]) -> HTTPHeaders:
    headers = HTTPHeaders()
    for name, value in values.items():
        headers[name] = value
    return headers


def error_response(
    request: AWSPreparedRequest, service: str, *, status: int, code: str, message: str
) -> AWSResponse:
    """An error answer in the wire protocol the request used (EC2 query, query, JSON 1.x or RPCv2 CBOR)."""
    headers: dict[str, str] = {"x-amzn-RequestId": "injected-fault"}
    if "cbor" in _header(request, "Content-Type") or _header(request, "smithy-protocol"):
        body = (
            bytes([0xA2])
            + _cbor_text("__type")
            + _cbor_text(code)
            + _cbor_text("message")
            + _cbor_text(message)
        )
        headers.update({"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"})
    elif _header(request, "X-Amz-Target"):
        body = json.dumps({"__type": code, "message": message}).encode()
        headers["Content-Type"] = "application/x-amz-json-1.1"
    elif service == "ec2":
        body = (
            f"<Response><Errors><Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            "</Error></Errors><RequestID>injected-fault</RequestID></Response>"
        ).encode()
        headers["Content-Type"] = "text/xml"
    else:
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{escape(code)}</Code>"
            f"<Message>{escape(message)}</Message></Error><RequestId>injected-fault</RequestId></ErrorResponse>"
        ).encode()
        headers["Content-Type"] = "text/xml"
    return AWSResponse(request.url, status, _http_headers(headers), _RawBody(body))


class FaultInjector:
    """Makes chosen requests fail, at the client, before or after they reach the server.

    * `error(...)`: the request never leaves the client; botocore parses a synthetic error answer
      (throttling, 5xx, capacity, auth ...).
    * `lose_response(...)`: the request is really sent to moto (so it takes effect), then the answer is
      dropped and the client sees a read timeout or a closed connection.
    * `respond(...)`: a synthetic success answer, for APIs moto lacks (the Pricing API).

    Rules are checked in the order they were added; `skip` lets the first matching requests through,
    `times` bounds how often a rule fires, `probability` makes it fire at random from a seeded generator
    (reproducible).
    """

    def __init__(self, *, seed: int = 0) -> None:
        self._rules: list[_Rule] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.injected: list[InjectedFault] = []
        self.lost_answers: list[tuple[int, int]] = []  # (HTTP status, body size) the server sent back
        self._http = URLLib3Session(timeout=30)

    def attach(self, target: boto3.Session | BaseClient) -> FaultInjector:
        _events(target).register_last("before-send", self._on_send, unique_id=f"fault-injector-{id(self)}")
        return self

    def error(
        self,
        service: str | None,
        operation: str | None = None,
        *,
        code: str,
        status: int = 400,
        message: str = "injected by the test",
        times: int | None = None,
        probability: float = 1.0,
        skip: int = 0,
    ) -> FaultInjector:
        """Answer matching requests with an error, without sending them."""
        return self._add(
            _Rule(
                service=service,
                operation=operation,
                kind="error",
                status=status,
                code=code,
                message=message,
                remaining=times,
                probability=probability,
                skip=skip,
            )
        )

    def throttle(
        self,
        service: str | None,
        operation: str | None = None,
        *,
        code: str | None = None,
        times: int | None = None,
        probability: float = 1.0,
        skip: int = 0,
    ) -> FaultInjector:
        """Throttling as each service spells it (EC2: RequestLimitExceeded, HTTP 503)."""
        chosen = code or ("RequestLimitExceeded" if service == "ec2" else "ThrottlingException")
        status = 503 if chosen == "RequestLimitExceeded" else 400
        return self.error(
            service,
            operation,
            code=chosen,
            status=status,
            message="Rate exceeded",
            times=times,
            probability=probability,
            skip=skip,
        )

    def server_error(
        self,
        service: str | None,
        operation: str | None = None,
        *,
        status: int = 503,
        code: str = "ServiceUnavailable",
        times: int | None = None,
        probability: float = 1.0,
        skip: int = 0,
    ) -> FaultInjector:
        return self.error(
            service,
            operation,
            code=code,
            status=status,
            message="Service unavailable",
            times=times,
            probability=probability,
            skip=skip,
        )

    def lose_response(
        self,
        service: str | None,
        operation: str | None = None,
        *,
        how: Literal["read-timeout", "connection-closed"] = "read-timeout",
        times: int | None = 1,
        probability: float = 1.0,
        skip: int = 0,
    ) -> FaultInjector:
        """Deliver matching requests to moto, then lose the answer."""
        return self._add(
            _Rule(
                service=service,
                operation=operation,
                kind="lose",
                code=how,
                lose_with=how,
                remaining=times,
                probability=probability,
                skip=skip,
            )
        )

    def respond(
        self,
        service: str,
        operation: str,
        body: Mapping[str, Any] | bytes,
        *,
        status: int = 200,
        times: int | None = None,
    ) -> FaultInjector:
        """A synthetic answer; a mapping is sent as JSON (the JSON-protocol services)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self._add(
            _Rule(
                service=service, operation=operation, kind="respond", status=status, body=raw, remaining=times
            )
        )

    def count(self, kind: FaultKind | None = None) -> int:
        with self._lock:
            return sum(1 for f in self.injected if kind is None or f.kind == kind)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def _add(self, rule: _Rule) -> FaultInjector:
        if not 0.0 <= rule.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        with self._lock:
            self._rules.append(rule)
        return self

    def _pick(self, service: str, operation: str) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if not rule.matches(service, operation) or rule.remaining == 0:
                    continue
                if rule.skip > 0:
                    rule.skip -= 1  # let this matching request through untouched
                    continue
                if rule.probability < 1.0 and self._random.random() >= rule.probability:
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                self.injected.append(InjectedFault(service, operation, rule.kind, rule.code))
                return rule
        return None

    def _on_send(self, request: AWSPreparedRequest, event_name: str, **_: Any) -> AWSResponse | None:
        service, operation = _operation_of(event_name)
        rule = self._pick(service, operation)
        if rule is None:
            return None
        if rule.kind == "error":
            return error_response(request, service, status=rule.status, code=rule.code, message=rule.message)
        if rule.kind == "respond":
            headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": "injected-response"}
            return AWSResponse(request.url, rule.status, _http_headers(headers), _RawBody(rule.body or b""))
        # "lose": deliver the request for real, read the whole answer, then drop it on the floor.
        delivered = self._http.send(request)
        with self._lock:
            self.lost_answers.append((delivered.status_code, len(delivered.content)))
        if rule.lose_with == "connection-closed":
            raise ConnectionClosedError(endpoint_url=request.url)
        raise ReadTimeoutError(endpoint_url=request.url)


# -- seeding helpers ---------------------------------------------------------------------------------------


def tag_specifications(tags: Mapping[str, str]) -> list[dict[str, Any]]:
    return (
        [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
        if tags
        else []
    )


def run_instances(
    ec2: Any,
    count: int,
    *,
    tags: Mapping[str, str] | None = None,
    instance_type: str = "t3.micro",
    image_id: str = "ami-0d27e0fb3bac4d724",
    per_reservation: int = 1000,
) -> list[str]:
    """`count` instances in as few RunInstances requests as possible (one reservation per request)."""
    ids: list[str] = []
    remaining = count
    while remaining > 0:
        batch = min(per_reservation, remaining)
        response = ec2.run_instances(
            ImageId=image_id,
            InstanceType=instance_type,
            MinCount=batch,
            MaxCount=batch,
            TagSpecifications=tag_specifications(tags or {}),
        )
        ids.extend(i["InstanceId"] for i in response["Instances"])
        remaining -= batch
    return ids


def run_reservations(
    ec2: Any,
    count: int,
    *,
    tags: Mapping[str, str] | None = None,
    instance_type: str = "t3.micro",
    workers: int = 4,
) -> list[str]:
    """`count` instances, each in its own reservation (moto pages DescribeInstances by reservation)."""

    def one(_: int) -> str:
        return run_instances(ec2, 1, tags=tags, instance_type=instance_type)[0]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, range(count)))


def put_metric_points(
    cloudwatch: Any,
    namespace: str,
    metric: str,
    points: Sequence[tuple[str, datetime, float]],
    *,
    dimension: str = "InstanceId",
    unit: str = "Percent",
) -> None:
    """Seed datapoints `(instance id, timestamp, value)`, 1,000 per PutMetricData request."""
    data = [
        {
            "MetricName": metric,
            "Dimensions": [{"Name": dimension, "Value": instance_id}],
            "Timestamp": when,
            "Value": value,
            "Unit": unit,
        }
        for instance_id, when, value in points
    ]
    for start in range(0, len(data), 1000):
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[start : start + 1000])
