"""Raw HTTP/1.1 and HTTP/2 exchanges for hostile-input tests: the bytes, headers and frames
go out exactly as given (no client library normalises or refuses them), and what comes
back is parsed leniently."""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})(?: |\r|$)")
# After a complete answer on a kept-alive connection: how long to wait for more (an answer
# to a second request smuggled into the first one's body).
GRACE = 0.05
SHOWN_HEADERS = ("content-type", "server", "www-authenticate", "location", "x-content-type-options")


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes


@dataclass
class Answer:
    """What a server sent on one connection, and how the connection ended."""

    data: bytes = b""
    responses: list[Response] = field(default_factory=list)  # final (non-1xx) answers
    closed: bool = False  # the server closed (or reset) the connection
    timed_out: bool = False  # neither an answer nor a close within the timeout
    reset: int | None = None  # HTTP/2: RST_STREAM error code
    goaway: int | None = None  # HTTP/2: GOAWAY error code

    def describe(self) -> str:
        if self.responses:
            r = self.responses[0]
            shown = {k: v[:100] for k, v in r.headers.items() if k in SHOWN_HEADERS}
            more = f" (+{len(self.responses) - 1} more)" if len(self.responses) > 1 else ""
            return f"{r.status} {shown} {r.body[:160]!r}{more}"
        parts = [
            f"RST_STREAM {self.reset}" if self.reset is not None else "",
            f"GOAWAY {self.goaway}" if self.goaway is not None else "",
            "closed" if self.closed else "",
            "timed out" if self.timed_out else "",
        ]
        return " ".join(p for p in parts if p) + (
            f" after {self.data[:160]!r}" if self.data else ""
        )


def send_raw(port: int, request: bytes, timeout: float = 20.0) -> bytes:
    """Send `request` to 127.0.0.1:port and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def parse_responses(data: bytes, head: bool = False) -> tuple[list[Response], bytes]:
    """The complete HTTP/1 responses at the start of `data`, and what follows them. `head`:
    answers to HEAD have no body. A response without length runs to the end of `data`."""
    out: list[Response] = []
    while True:
        end = data.find(b"\r\n\r\n")
        m = _STATUS_LINE.match(data)
        if end < 0 or not m:
            return out, data
        lines = data[:end].split(b"\r\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        status, rest = int(m[1]), data[end + 4 :]
        if head or status in (204, 304) or status < 200:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            decoded = _dechunk(rest)
            if decoded is None:
                return out, data
            body, rest = decoded
        elif headers.get("content-length", "").isdigit():
            length = int(headers["content-length"])
            if len(rest) < length:
                return out, data
            body, rest = rest[:length], rest[length:]
        else:
            body, rest = rest, b""
        if status >= 200:
            out.append(Response(status, headers, body))
        data = rest


def _dechunk(data: bytes) -> tuple[bytes, bytes] | None:
    body = b""
    while True:
        end = data.find(b"\r\n")
        if end < 0:
            return None
        try:
            size = int(data[:end].split(b";")[0], 16)
        except ValueError:
            return body, b""  # not chunked after all: keep what was read
        if size == 0:
            trailer_end = data.find(b"\r\n\r\n", end)
            return (body, data[trailer_end + 4 :]) if trailer_end >= 0 else None
        chunk = data[end + 2 : end + 2 + size]
        if len(chunk) < size:
            return None
        body += chunk
        data = data[end + 4 + size :]


def exchange(port: int, request: bytes, timeout: float = 3.0, head: bool = False) -> Answer:
    """Send `request` over a fresh connection and collect the answers until the server
    closes it, `timeout` seconds pass, or an answer is complete and nothing more follows."""
    answer = Answer()
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            answer.closed = True  # it may still have answered before closing
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                answer.closed = True
                break
            answer.data += chunk
            responses, rest = parse_responses(answer.data, head)
            if responses and not rest:
                deadline = min(deadline, time.monotonic() + GRACE)
        answer.responses = parse_responses(answer.data, head)[0]
    answer.timed_out = not answer.closed and not answer.responses
    return answer


H2_CONFIG = h2.config.H2Configuration(
    client_side=True,
    header_encoding=None,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
    validate_inbound_headers=False,
)


def tls_h2_context() -> ssl.SSLContext:
    """TLS offering only ALPN h2, without verification (the mirror signs its own cert)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    return context


def h2_exchange(
    port: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
    end_stream: bool = True,
    timeout: float = 3.0,
    context: ssl.SSLContext | None = None,
) -> Answer:
    """One HTTP/2 request over TLS (ALPN h2) on a fresh connection, headers and pseudo-headers
    sent in the given order and unvalidated. `end_stream=False` leaves the request open.
    Raises AssertionError when the server does not select h2."""
    answer = Answer()
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    with (context or tls_h2_context()).wrap_socket(raw) as s:
        assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
        conn = h2.connection.H2Connection(H2_CONFIG)
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, headers, end_stream=end_stream and not body)
        if body:
            conn.send_data(stream, body, end_stream=end_stream)
        status, resp_headers, resp_body, done = 0, {}, b"", False
        deadline = time.monotonic() + timeout
        try:
            s.sendall(conn.data_to_send())
            while not done and (left := deadline - time.monotonic()) > 0:
                s.settimeout(left)
                try:
                    chunk = s.recv(65536)
                except TimeoutError:
                    break
                if not chunk:
                    answer.closed = True
                    break
                answer.data += chunk
                for event in conn.receive_data(chunk):
                    if isinstance(event, h2.events.ResponseReceived):
                        for name, value in event.headers:
                            key = name.decode("latin-1")
                            if key == ":status":
                                status = int(value)
                            else:
                                resp_headers[key] = value.decode("latin-1")
                    elif isinstance(event, h2.events.DataReceived):
                        resp_body += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, stream)
                    elif isinstance(event, h2.events.StreamEnded):
                        done = True
                    elif isinstance(event, h2.events.StreamReset):
                        answer.reset, done = int(event.error_code), True
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        answer.goaway, done = int(event.error_code), True
                s.sendall(conn.data_to_send())
        except (ssl.SSLError, ConnectionError, h2.exceptions.ProtocolError):
            answer.closed = True
    if status:
        answer.responses.append(Response(status, resp_headers, resp_body))
    ended = answer.closed or answer.reset is not None or answer.goaway is not None
    answer.timed_out = not ended and not done
    return answer


def send(port: int, target: bytes, *headers: bytes, method: bytes = b"GET",
         body: bytes = b"") -> tuple[int, bytes, bytes]:  # fmt: skip
    """(status, head, body) of one HTTP/1.1 request on its own connection, `headers` as raw
    lines."""
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1:%d" % port,
             b"Connection: close", *headers]  # fmt: skip
    if body:
        lines.append(b"Content-Length: %d" % len(body))
    answer = send_raw(port, b"\r\n".join(lines) + b"\r\n\r\n" + body)
    head, _, content = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, content


def error_code(body: bytes) -> str:
    """The first registry error code of a JSON error body."""
    return str(json.loads(body)["errors"][0]["code"])
