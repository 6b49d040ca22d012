"""The start/stop/port lifecycle shared by the local HTTP services (the Slack stand-in, the sandbox page).

Each serves on a loopback address from one background thread; `port=0` picks a free port. Stopping is
final, so a test can't reuse a half-closed server by accident.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from socketserver import BaseServer
from types import TracebackType
from typing import Self

log = logging.getLogger(__name__)


class LocalServer(ABC):
    """Subclasses build the server (`_make_server`) and release their waiters first (`_before_stop`)."""

    #: How the service is named in logs and errors.
    label = "local server"
    #: How often the serving loop checks for shutdown: short, so stopping takes no noticeable time.
    poll_interval = 0.05

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self._requested_port = port
        self._server: BaseServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    @abstractmethod
    def _make_server(self) -> BaseServer:
        """The bound, not yet serving, server for this service's host and requested port."""

    @abstractmethod
    def _before_stop(self) -> None:
        """Release whatever keeps requests open (long polls, websockets) so shutdown doesn't wait."""

    def start(self) -> Self:
        if self._stopped:
            raise RuntimeError(f"a stopped {type(self).__name__} cannot be restarted; create a new one")
        if self._server is not None:
            return self
        server = self._make_server()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": self.poll_interval},
            name=self.label.replace(" ", "-"),
            daemon=True,
        )
        self._thread.start()
        log.info("%s listening on %s", self.label, self.url)
        return self

    def stop(self) -> None:
        if self._server is None or self._stopped:
            return
        self._stopped = True
        self._before_stop()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"the {self.label} is not started")
        address = self._server.server_address
        if not isinstance(address, tuple):
            raise RuntimeError(f"the {self.label} is not on a TCP address: {address!r}")
        return int(address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
