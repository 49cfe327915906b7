"""Requests sent as raw bytes: no client library normalises what a hostile client sends."""

from __future__ import annotations

import json
import socket
from typing import Any


def raw(port: int, request: bytes, timeout: float = 20) -> bytes:
    """Send bytes as they are and read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def send(
    port: int, target: bytes, *headers: bytes, method: bytes = b"GET", body: bytes = b""
) -> tuple[int, bytes, bytes]:
    """(status, head, body) of one request on its own connection, `headers` as raw lines."""
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1:%d" % port,
             b"Connection: close", *headers]  # fmt: skip
    if body:
        lines.append(b"Content-Length: %d" % len(body))
    answer = raw(port, b"\r\n".join(lines) + b"\r\n\r\n" + body)
    head, _, content = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, content


def error_code(body: bytes) -> Any:
    """The first registry error code of a JSON error body."""
    return json.loads(body)["errors"][0]["code"]
