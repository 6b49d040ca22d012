"""The stand-in's RFC 6455 server side, byte by byte, with a raw socket as the client."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import closing
from urllib.parse import urlsplit

import pytest
from slack_sdk import WebClient

from bot.slack.standin import SlackStandIn
from bot.slack.standin.socket_mode import accept_key
from tests.support.slack import running_standin

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with running_standin() as s:
        yield s


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length <= 125:
        header = bytes([first, mask_bit | length])
    elif length <= 0xFFFF:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not masked:
        return header + payload
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def recv_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    first, second = recv_exact(sock, 2)
    assert not second & 0x80, "server frames must not be masked"
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", recv_exact(sock, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", recv_exact(sock, 8))
    return first & 0x0F, recv_exact(sock, length)


def handshake(
    standin: SlackStandIn, url: str | None = None, key: str | None = None
) -> tuple[socket.socket, bytes]:
    if url is None:
        url = WebClient(token=standin.app_token, base_url=standin.api_url).apps_connections_open(
            app_token=standin.app_token
        )["url"]
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "", parts.port or 80), timeout=5)
    lines = [
        f"GET {parts.path}?{parts.query} HTTP/1.1",
        f"Host: {parts.hostname}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
    ]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    response = b""
    while not response.endswith(b"\r\n\r\n"):
        response += recv_exact(sock, 1)
    return sock, response


KEY = base64.b64encode(b"0123456789abcdef").decode()


def test_accept_key_matches_rfc_6455_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_handshake_then_hello(standin: SlackStandIn) -> None:
    sock, response = handshake(standin, key=KEY)
    with closing(sock):
        expected = base64.b64encode(
            hashlib.sha1((KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        )
        assert response.startswith(b"HTTP/1.1 101 ")
        assert b"Sec-WebSocket-Accept: " + expected in response
        opcode, payload = read_frame(sock)
        assert opcode == TEXT and json.loads(payload)["type"] == "hello"
        assert standin.socket_connected()


def test_tickets_are_single_use_and_handshakes_are_checked(standin: SlackStandIn) -> None:
    url = WebClient(token=standin.app_token, base_url=standin.api_url).apps_connections_open(
        app_token=standin.app_token
    )["url"]
    missing_key, response = handshake(standin, url=url)
    with closing(missing_key):
        assert response.startswith(b"HTTP/1.1 400 ")
    first, response = handshake(standin, url=url, key=KEY)
    with closing(first):
        assert response.startswith(b"HTTP/1.1 101 ")
    again, response = handshake(standin, url=url, key=KEY)
    with closing(again):
        assert response.startswith(b"HTTP/1.1 401 ")


def test_ping_pong_fragments_and_large_messages(standin: SlackStandIn) -> None:
    sock, _ = handshake(standin, key=KEY)
    with closing(sock):
        read_frame(sock)  # hello
        sock.sendall(frame(PING, b"are you there"))
        assert read_frame(sock) == (PONG, b"are you there")

        ack = json.dumps({"envelope_id": "not-issued", "payload": {"text": "x"}}).encode()
        sock.sendall(frame(TEXT, ack[:10], fin=False))
        sock.sendall(frame(PING, b"between fragments"))
        sock.sendall(frame(CONTINUATION, ack[10:]))
        assert read_frame(sock) == (PONG, b"between fragments")
        [recorded] = standin.wait_for(lambda: standin.acks("not-issued"))
        assert recorded.known is False and recorded.payload == {"text": "x"}

        big = json.dumps({"note": "n" * 70_000}).encode()
        sock.sendall(frame(TEXT, big))
        sock.sendall(frame(BINARY, b"\x00\x01"))
        sock.sendall(frame(TEXT, b"not json"))
        standin.wait_for(lambda: len(standin.acks()) == 3)
        assert standin.acks()[1].raw == {"note": "n" * 70_000}
        assert standin.acks()[2].raw == {"_text": "not json"}

        envelope_id = standin.push_envelope(
            "events_api", {"event": {"type": "app_mention", "text": "e" * 70_000}}
        )
        opcode, payload = read_frame(sock)
        assert opcode == TEXT and json.loads(payload)["envelope_id"] == envelope_id


def test_close_handshake_is_echoed(standin: SlackStandIn) -> None:
    sock, _ = handshake(standin, key=KEY)
    with closing(sock):
        read_frame(sock)
        sock.sendall(frame(CLOSE, struct.pack("!H", 1000) + b"bye"))
        opcode, payload = read_frame(sock)
        assert opcode == CLOSE and struct.unpack("!H", payload[:2])[0] == 1000
        assert sock.recv(1) == b""
    standin.wait_for(lambda: not standin.socket_connected(), timeout=2)


def test_unmasked_client_frames_are_a_protocol_error(standin: SlackStandIn) -> None:
    sock, _ = handshake(standin, key=KEY)
    with closing(sock):
        read_frame(sock)
        sock.sendall(frame(TEXT, b"{}", masked=False))
        opcode, payload = read_frame(sock)
        assert opcode == CLOSE and struct.unpack("!H", payload[:2])[0] == 1002
        assert sock.recv(1) == b""
