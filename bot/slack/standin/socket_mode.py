"""A minimal RFC 6455 WebSocket server side, enough to stand in for Slack's Socket Mode endpoint.

The stand-in serves the ``ws://`` URL that ``apps.connections.open`` returns on its own HTTP port:
the HTTP handler validates the upgrade, answers ``101``, and hands the socket to a
:class:`SocketSession`, which reads the client's frames (masked, possibly fragmented, with pings)
and writes unmasked text frames (``hello``, envelopes, ``disconnect``). No extension or
subprotocol is negotiated; Slack's endpoint needs neither, and slack_sdk's built-in client sends
neither. Stdlib only, so there is no extra dependency for a test double.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

logger = logging.getLogger(__name__)

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class Readable(Protocol):
    """The buffered reader of the upgraded HTTP connection (``handler.rfile``)."""

    def read(self, size: int, /) -> bytes: ...


class HandshakeError(ValueError):
    """The upgrade request is not a valid WebSocket opening handshake."""


class WebSocketProtocolError(Exception):
    """The peer broke the framing rules; ``code`` is the close code to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class ConnectionClosed(Exception):
    """The peer went away (EOF or socket error) without a close handshake."""


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    digest = hashlib.sha1((key + _GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def validate_handshake(http_method: str, headers: Mapping[str, str]) -> str:
    """Check an opening handshake and return the ``Sec-WebSocket-Accept`` value to answer with."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if http_method != "GET":
        raise HandshakeError("the opening handshake must be a GET")
    if lowered.get("upgrade", "").strip().lower() != "websocket":
        raise HandshakeError("missing 'Upgrade: websocket'")
    connection_tokens = {t.strip().lower() for t in lowered.get("connection", "").split(",")}
    if "upgrade" not in connection_tokens:
        raise HandshakeError("missing 'Connection: Upgrade'")
    if lowered.get("sec-websocket-version", "").strip() != "13":
        raise HandshakeError("only WebSocket version 13 is supported")
    key = lowered.get("sec-websocket-key", "").strip()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise HandshakeError("Sec-WebSocket-Key must encode 16 bytes")
    except binascii.Error as exc:
        raise HandshakeError("Sec-WebSocket-Key is not base64") from exc
    return accept_key(key)


def encode_frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """A server-to-client frame (servers never mask)."""
    first = (0x80 if fin else 0) | opcode
    length = len(payload)
    if length <= 125:
        header = bytes([first, length])
    elif length <= 0xFFFF:
        header = struct.pack("!BBH", first, 126, length)
    else:
        header = struct.pack("!BBQ", first, 127, length)
    return header + payload


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode("utf-8")[:123]


def _read_exact(stream: Readable, count: int) -> bytes:
    chunks: list[bytes] = []
    remaining = count
    while remaining > 0:
        try:
            chunk = stream.read(remaining)
        except OSError as exc:
            raise ConnectionClosed(str(exc)) from exc
        if not chunk:
            raise ConnectionClosed("connection closed by peer")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _unmask(data: bytes, mask: bytes) -> bytes:
    if not data:
        return data
    repeated = (mask * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(data), "big")


def read_frame(stream: Readable) -> tuple[bool, int, bytes]:
    """Read one client frame: ``(fin, opcode, unmasked payload)``."""
    first, second = _read_exact(stream, 2)
    if first & 0x70:
        raise WebSocketProtocolError(CLOSE_PROTOCOL_ERROR, "reserved bits set without an extension")
    fin = bool(first & 0x80)
    opcode = first & 0x0F
    if opcode not in (OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
        raise WebSocketProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
    if not second & 0x80:
        raise WebSocketProtocolError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", _read_exact(stream, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", _read_exact(stream, 8))
    if opcode >= OP_CLOSE and (not fin or length > 125):
        raise WebSocketProtocolError(
            CLOSE_PROTOCOL_ERROR, "control frames must be whole and at most 125 bytes"
        )
    if length > MAX_MESSAGE_BYTES:
        raise WebSocketProtocolError(CLOSE_TOO_BIG, "frame too large")
    mask = _read_exact(stream, 4)
    return fin, opcode, _unmask(_read_exact(stream, length), mask)


class SocketSession:
    """One connected Socket Mode client. Reads run on the HTTP handler's thread; sends may come
    from any thread (a test pushing an envelope) and are serialised by a lock."""

    def __init__(
        self,
        session_id: str,
        sock: socket.socket,
        rfile: Readable,
        on_text: Callable[[SocketSession, str], None],
    ) -> None:
        self.id = session_id
        self.connected_at = time.time()
        self._sock = sock
        self._rfile = rfile
        self._on_text = on_text
        self._send_lock = threading.Lock()
        self._close_sent = False
        self.closed = threading.Event()

    @property
    def active(self) -> bool:
        return not self.closed.is_set() and not self._close_sent

    def send_text(self, text: str) -> None:
        self._send(encode_frame(OP_TEXT, text.encode("utf-8")))

    def _send(self, frame: bytes) -> None:
        with self._send_lock:
            if self._close_sent or self.closed.is_set():
                raise ConnectionError(f"Socket Mode session {self.id} is closed")
            self._sock.sendall(frame)

    def close(self, code: int = CLOSE_GOING_AWAY, reason: str = "") -> None:
        """Start the closing handshake and stop reading; safe to call twice or from any thread."""
        with self._send_lock:
            if not self._close_sent and not self.closed.is_set():
                self._close_sent = True
                try:
                    self._sock.sendall(encode_frame(OP_CLOSE, close_payload(code, reason)))
                except OSError:
                    logger.debug("close frame to session %s not delivered", self.id)
        self._shutdown()

    def _shutdown(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            logger.debug("socket of session %s already shut down", self.id)

    def run(self) -> None:
        """Read frames until the peer closes; answer pings, hand complete text messages over."""
        fragments: list[bytes] = []
        fragment_opcode: int | None = None
        try:
            while True:
                fin, opcode, payload = read_frame(self._rfile)
                if opcode == OP_PING:
                    self._send(encode_frame(OP_PONG, payload))
                elif opcode == OP_PONG:
                    continue
                elif opcode == OP_CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else CLOSE_NORMAL
                    self.close(code if code != 1005 else CLOSE_NORMAL)
                    return
                elif opcode == OP_CONTINUATION:
                    if fragment_opcode is None:
                        raise WebSocketProtocolError(CLOSE_PROTOCOL_ERROR, "continuation without a start")
                    fragments.append(payload)
                    if sum(len(f) for f in fragments) > MAX_MESSAGE_BYTES:
                        raise WebSocketProtocolError(CLOSE_TOO_BIG, "message too large")
                    if fin:
                        self._deliver(fragment_opcode, b"".join(fragments))
                        fragments, fragment_opcode = [], None
                else:
                    if fragment_opcode is not None:
                        raise WebSocketProtocolError(
                            CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one"
                        )
                    if fin:
                        self._deliver(opcode, payload)
                    else:
                        fragments, fragment_opcode = [payload], opcode
        except WebSocketProtocolError as exc:
            logger.info("Socket Mode session %s: protocol error: %s", self.id, exc.reason)
            self.close(exc.code, exc.reason)
        except (ConnectionClosed, OSError):
            logger.debug("Socket Mode session %s: peer went away", self.id)
        finally:
            self._shutdown()
            self.closed.set()

    def _deliver(self, opcode: int, payload: bytes) -> None:
        if opcode != OP_TEXT:
            logger.info("Socket Mode session %s: ignoring a binary message", self.id)
            return
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WebSocketProtocolError(CLOSE_INVALID_DATA, "text message is not UTF-8") from exc
        self._on_text(self, text)


class SocketHub:
    """Tickets handed out by ``apps.connections.open`` and the sessions that redeemed them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tickets: set[str] = set()
        self._sessions: dict[str, SocketSession] = {}
        self._draining: set[str] = set()

    def issue(self, ticket: str) -> None:
        with self._lock:
            self._tickets.add(ticket)

    def redeem(self, ticket: str) -> bool:
        """Tickets are single-use, like Slack's: a reconnect must call ``apps.connections.open`` again."""
        with self._lock:
            if ticket in self._tickets:
                self._tickets.discard(ticket)
                return True
            return False

    def add(self, session: SocketSession) -> int:
        """Register a new connection; connections told to refresh are closed once it exists."""
        with self._lock:
            self._sessions[session.id] = session
            retired = [self._sessions[i] for i in self._draining if i in self._sessions]
            self._draining.clear()
            count = sum(1 for s in self._sessions.values() if s.active) - len(retired)
        for old in retired:
            old.close(CLOSE_NORMAL, "refreshed")
        return count

    def drain(self) -> list[SocketSession]:
        """Mark the open connections for closing when the next one connects (Slack's refresh)."""
        with self._lock:
            sessions = [s for s in self._sessions.values() if s.active]
            self._draining.update(s.id for s in sessions)
            return sessions

    def remove(self, session: SocketSession) -> None:
        with self._lock:
            self._sessions.pop(session.id, None)
            self._draining.discard(session.id)

    def active(self) -> list[SocketSession]:
        with self._lock:
            return [s for s in self._sessions.values() if s.active]

    def latest(self) -> SocketSession | None:
        with self._lock:
            sessions = [s for s in self._sessions.values() if s.active and s.id not in self._draining]
        return sessions[-1] if sessions else None

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "") -> None:
        for session in self.active():
            session.close(code, reason)
