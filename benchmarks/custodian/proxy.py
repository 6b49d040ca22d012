"""A counting reverse proxy in front of moto: every AWS API call of a tool, by service and action.

The benchmark compares the calls of two tools written against different botocore versions, so it counts
neither inside the bot nor inside Cloud Custodian: both are pointed at this proxy (`AWS_ENDPOINT_URL`),
which forwards every request to moto unchanged and counts it on the way through.

How an action is recognised, by wire protocol:

* EC2 and the AWS query protocol: `Action=` in the form-encoded body (or in the query string of a GET).
* JSON 1.0/1.1: the `X-Amz-Target: <prefix>.<Operation>` header.
* Smithy RPC v2 CBOR, which botocore 1.4x uses for CloudWatch: the path `/service/<name>/operation/<Op>`.

The service is the signing name in the SigV4 credential scope of the `Authorization` header, named as
botocore names the client (`monitoring` is `cloudwatch`), so keys read like `cloudwatch.GetMetricData`.
A request without a SigV4 signature is counted under `unsigned`.

For the requests whose size decides the call count, the proxy also keeps the number of items each one
asked for (`items`): the queries of every `cloudwatch.GetMetricData` request, read from its body in
whichever protocol it came (`MetricDataQueries` in CBOR, JSON or the query form), so a benchmark can check
that each request was as full as the API allows without counting anything inside the measured process.

Besides counts, the proxy keeps how long at least one request was inside moto (`busy_seconds`): a tool's
wall time minus that is the time it spent on its own work, which matters because moto's CloudWatch scans
every stored datapoint per query and would otherwise be charged to whichever tool asks more often.

Control endpoints, answered by the proxy itself and never forwarded: `GET /__proxy__/calls` (the
statistics as JSON) and `POST /__proxy__/reset`.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

CONTROL_PREFIX = "/__proxy__/"
CALLS_PATH = CONTROL_PREFIX + "calls"
RESET_PATH = CONTROL_PREFIX + "reset"
UNSIGNED = "unsigned"

#: SigV4 signing names that differ from botocore's client names.
SERVICE_NAMES = {"monitoring": "cloudwatch", "email": "ses", "states": "stepfunctions"}
_CREDENTIAL = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/,\s]+/([^/,\s]+)/aws4_request")
_RPC_V2_PATH = re.compile(r"^/service/[^/]+/operation/([^/]+)$")
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)
_STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def service_of(headers: Mapping[str, str] | Message) -> str:
    """The SigV4 signing name from `Authorization`, as botocore names the service; `unsigned` without one."""
    match = _CREDENTIAL.search(headers.get("Authorization") or "")
    if match is None:
        return UNSIGNED
    name = match.group(1)
    return SERVICE_NAMES.get(name, name)


def operation_of(method: str, path: str, headers: Mapping[str, str] | Message, body: bytes) -> str:
    """The API action of one request, whichever of the query, JSON or RPC v2 CBOR protocols it uses."""
    target = headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    parts = urlsplit(path)
    rpc = _RPC_V2_PATH.match(parts.path)
    if rpc:
        return unquote(rpc.group(1))
    if "x-www-form-urlencoded" in (headers.get("Content-Type") or "").lower():
        action = parse_qs(body.decode("utf-8", "replace")).get("Action")
        if action:
            return action[0]
    action = parse_qs(parts.query).get("Action")
    if action:
        return action[0]
    return f"{method} {parts.path}"


def _cbor_map(body: bytes) -> Mapping[str, Any]:
    """A Smithy RPC v2 CBOR request body, decoded with botocore's own CBOR reader (imported only here)."""
    from botocore.parsers import RpcV2CBORParser

    parser = RpcV2CBORParser()
    decoded = parser.parse_data_item(parser.get_peekable_stream_from_bytes(body))
    return decoded if isinstance(decoded, Mapping) else {}


def metric_queries(headers: Mapping[str, str] | Message, body: bytes) -> int:
    """How many `MetricDataQueries` one GetMetricData request carries, in the CBOR, JSON or query protocol."""
    content_type = (headers.get("Content-Type") or "").lower()
    if "cbor" in content_type:
        return len(_cbor_map(body).get("MetricDataQueries") or ())
    if "json" in content_type:
        return len(json.loads(body or b"{}").get("MetricDataQueries") or ())
    form = parse_qs(body.decode("utf-8", "replace"))
    return sum(1 for name in form if re.fullmatch(r"MetricDataQueries\.member\.\d+\.Id", name))


#: Per call key, how to read the number of items a request asked for (see `ProxyStats.items`).
ITEM_COUNTERS: Mapping[str, Callable[[Mapping[str, str] | Message, bytes], int]] = {
    "cloudwatch.GetMetricData": metric_queries
}


def _items_of(key: str, headers: Mapping[str, str] | Message, body: bytes) -> int | None:
    """The request's item count for a key in ITEM_COUNTERS (-1 when its body cannot be read), else None."""
    counter = ITEM_COUNTERS.get(key)
    if counter is None:
        return None
    try:
        return counter(headers, body)
    except Exception:  # a body the proxy cannot read is forwarded all the same; moto will judge it
        return -1


def call_key(method: str, path: str, headers: Mapping[str, str] | Message, body: bytes) -> str:
    """`service.Action`, e.g. `ec2.DescribeInstances` or `cloudwatch.GetMetricStatistics`."""
    return f"{service_of(headers)}.{operation_of(method, path, headers, body)}"


@dataclass(frozen=True)
class ProxyStats:
    """What went through the proxy since the last reset."""

    calls: dict[str, int]
    errors: dict[str, int]  # answers with HTTP status ≥ 400, including the proxy's own 502s
    busy_seconds: float  # time during which at least one request was inside moto
    server_seconds: float  # the sum of every request's time inside moto (≥ busy when requests overlap)
    seconds: dict[str, float] = field(default_factory=dict)  # that sum per key
    first_seen: dict[str, float] = field(default_factory=dict)  # epoch seconds of the first request per key
    last_seen: dict[str, float] = field(default_factory=dict)  # epoch seconds the last answer per key ended
    items: dict[str, list[int]] = field(default_factory=dict)  # per key in ITEM_COUNTERS, items per request

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": dict(sorted(self.calls.items())),
            "errors": dict(sorted(self.errors.items())),
            "busy_seconds": round(self.busy_seconds, 3),
            "server_seconds": round(self.server_seconds, 3),
            "seconds": {k: round(v, 3) for k, v in sorted(self.seconds.items())},
            "first_seen": dict(sorted(self.first_seen.items())),
            "last_seen": dict(sorted(self.last_seen.items())),
            "items": dict(sorted(self.items.items())),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProxyStats:
        return cls(
            calls={str(k): int(v) for k, v in data["calls"].items()},
            errors={str(k): int(v) for k, v in data["errors"].items()},
            busy_seconds=float(data["busy_seconds"]),
            server_seconds=float(data["server_seconds"]),
            seconds={str(k): float(v) for k, v in data.get("seconds", {}).items()},
            first_seen={str(k): float(v) for k, v in data.get("first_seen", {}).items()},
            last_seen={str(k): float(v) for k, v in data.get("last_seen", {}).items()},
            items={str(k): [int(n) for n in v] for k, v in data.get("items", {}).items()},
        )


class _Tally:
    """Counts and timing, shared by the proxy's handler threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._seconds: dict[str, float] = {}
        self._first: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._items: dict[str, list[int]] = {}
        self._in_flight = 0
        self._busy_since = 0.0
        self._busy = 0.0
        self._server = 0.0

    def begin(self, key: str, items: int | None = None) -> float:
        now = time.perf_counter()
        with self._lock:
            self._calls[key] += 1
            if items is not None:
                self._items.setdefault(key, []).append(items)
            self._first.setdefault(key, time.time())
            if self._in_flight == 0:
                self._busy_since = now
            self._in_flight += 1
        return now

    def end(self, key: str, began: float, status: int) -> None:
        now = time.perf_counter()
        with self._lock:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._busy += now - self._busy_since
            self._server += now - began
            self._seconds[key] = self._seconds.get(key, 0.0) + now - began
            self._last[key] = time.time()
            if status >= 400:
                self._errors[key] += 1

    def snapshot(self) -> ProxyStats:
        now = time.perf_counter()
        with self._lock:
            busy = self._busy + (now - self._busy_since if self._in_flight else 0.0)
            return ProxyStats(
                calls=dict(self._calls),
                errors=dict(self._errors),
                busy_seconds=busy,
                server_seconds=self._server,
                seconds=dict(self._seconds),
                first_seen=dict(self._first),
                last_seen=dict(self._last),
                items={k: list(v) for k, v in self._items.items()},
            )

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._errors.clear()
            self._seconds.clear()
            self._first.clear()
            self._last.clear()
            self._items.clear()
            self._busy = 0.0
            self._server = 0.0
            self._busy_since = time.perf_counter()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], tally: _Tally, upstream: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.tally = tally
        self.upstream = upstream


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self._upstream: http.client.HTTPConnection | None = None
        self._used = 0

    def finish(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per request would bury the benchmark's own output."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        body = self._read_body()
        if self.path.startswith(CONTROL_PREFIX):
            self._control()
            return
        key = call_key(self.command, self.path, self.headers, body)
        began = self.server.tally.begin(key, _items_of(key, self.headers, body))
        try:
            status, headers, payload = self._forward(body)
        except (OSError, http.client.HTTPException) as exc:
            self.server.tally.end(key, began, 502)
            message = f"runctl-bench proxy: upstream failed: {type(exc).__name__}: {exc}".encode()
            self._reply(502, [("Content-Type", "text/plain")], message)
            return
        self.server.tally.end(key, began, status)
        self._reply(status, headers, payload)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        for attempt in range(2):
            if self._upstream is None:
                host, port = self.server.upstream
                self._upstream = http.client.HTTPConnection(host, port, timeout=3600)
                self._used = 0
            reused = self._used > 0
            try:
                self._upstream.request(self.command, self.path, body=body or None, headers=headers)
                response = self._upstream.getresponse()
                payload = response.read()
            except _STALE_CONNECTION:
                self._upstream.close()
                self._upstream = None
                if reused and attempt == 0:
                    continue  # moto closed an idle keep-alive connection before reading the request
                raise
            except (OSError, http.client.HTTPException):
                self._upstream.close()
                self._upstream = None
                raise
            self._used += 1
            if response.will_close:
                self._upstream.close()
                self._upstream = None
            if self.command == "HEAD":
                return response.status, response.getheaders(), b""
            return response.status, response.getheaders(), payload
        raise http.client.HTTPException("unreachable: the retry loop always returns or raises")

    def _reply(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        self.send_response_only(status)
        length_sent = False
        for name, value in headers:
            lowered = name.lower()
            if lowered == "content-length" and self.command == "HEAD":
                self.send_header(name, value)
                length_sent = True
            elif lowered not in _HOP_BY_HOP:
                self.send_header(name, value)
        if not length_sent:
            self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    def _control(self) -> None:
        path = urlsplit(self.path).path
        if path == CALLS_PATH and self.command == "GET":
            body = json.dumps(self.server.tally.snapshot().to_json()).encode()
            self._reply(200, [("Content-Type", "application/json")], body)
        elif path == RESET_PATH and self.command == "POST":
            self.server.tally.reset()
            self._reply(200, [("Content-Type", "application/json")], b'{"reset": true}')
        else:
            self._reply(404, [("Content-Type", "text/plain")], b"unknown proxy control endpoint")


class CountingProxy:
    """The proxy on 127.0.0.1 and an OS-chosen port, serving from a background thread of this process."""

    def __init__(self, upstream_url: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the upstream must be a plain http:// URL, got {upstream_url!r}")
        self._tally = _Tally()
        self._server = _Server((host, port), self._tally, (parts.hostname, parts.port or 80))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> CountingProxy:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="counting-proxy",
            daemon=True,
        )
        self._thread.start()
        return self

    def stats(self) -> ProxyStats:
        return self._tally.snapshot()

    def reset(self) -> None:
        self._tally.reset()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
