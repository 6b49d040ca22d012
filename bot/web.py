"""The HTTP surface: Slack's endpoint plus health, served by waitress (a production WSGI server)."""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import TYPE_CHECKING, Any

from waitress.server import create_server

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

Check = Callable[[], tuple[bool, dict[str, Any]]]


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> Iterable[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def make_wsgi_app(
    slack_handler: WSGIApplication | None,
    *,
    ready: Check | None = None,
    metrics: Callable[[], bytes] | None = None,
) -> WSGIApplication:
    """Route `/slack/events` to Bolt, `/healthz` (liveness) and `/readyz` (dependencies) to us.

    `metrics` renders `/metrics` (by default this process's registry; `serve` adds the work process's).
    """

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/healthz":
            return _json(start_response, "200 OK", {"status": "ok"})
        if path == "/readyz":
            ok, detail = ready() if ready else (True, {})
            return _json(start_response, "200 OK" if ok else "503 Service Unavailable", detail)
        if path == "/metrics":
            from bot.metrics import exposition

            data = (metrics or exposition)()
            start_response(
                "200 OK", [("Content-Type", "text/plain; version=0.0.4"), ("Content-Length", str(len(data)))]
            )
            return [data]
        if path == "/slack/events" and slack_handler is not None:
            if method != "POST":
                return _json(start_response, "405 Method Not Allowed", {"error": "POST only"})
            from bot.metrics import ACK_SECONDS

            with ACK_SECONDS.time():
                return list(slack_handler(environ, start_response))
        return _json(start_response, "404 Not Found", {"error": f"no route for {path}"})

    return app


class HttpServer:
    """A waitress server that stops cleanly on SIGTERM/SIGINT and can also be stopped from a thread."""

    def __init__(self, app: WSGIApplication, host: str, port: int, *, threads: int = 8) -> None:
        self._server = create_server(app, host=host, port=port, threads=threads, ident="runctl-bot")
        self._stopped = threading.Event()

    @property
    def port(self) -> int:
        return int(self._server.effective_port)  # type: ignore[union-attr]

    @property
    def host(self) -> str:
        return str(self._server.effective_host)  # type: ignore[union-attr]

    def serve_forever(self, *, handle_signals: bool = True) -> None:
        if handle_signals:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        try:
            self._server.run()
        finally:
            self._stopped.set()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        # waitress's run() treats SystemExit as "shut the task dispatcher down and return".
        raise SystemExit(0)

    def close(self) -> None:
        """Stop serving. From another thread, the close runs on waitress's loop thread: closing its
        sockets underneath the running loop crashes it ("bad file descriptor")."""
        if self._stopped.is_set():
            return
        trigger = getattr(self._server, "trigger", None)
        if trigger is not None:
            trigger.pull_trigger(self._server.close)
            self._stopped.wait(5)
        else:
            self._server.close()
