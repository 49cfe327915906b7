"""A Docker-Hub-plus-S3-like upstream: a relaying front that redirects blob GET/HEAD.

Front (`.url`): forwards every request unchanged (method, path, query, headers incl.
Authorization and Host, body) to a token-auth distribution registry and relays the answer
streamed. Exception: GET/HEAD /v2/<name>/blobs/<digest> carrying a Bearer Authorization
that the registry accepts (checked with a HEAD) is answered `307 Location:
http://127.0.0.1:<blobport>/blobs/<digest>?sig=...`.

Blob server (`.blob_url`): serves the blob file straight from the registry's storage
(streamed, Content-Length, application/octet-stream, HEAD and single Range supported),
and answers 400 with an S3-like XML error to any request carrying an Authorization header.
"""

from __future__ import annotations

import http.client
import re
import secrets
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from .httpserver import BackgroundServer
from .registry import Registry

CHUNK = 256 * 1024
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailers", "transfer-encoding", "upgrade",
}  # fmt: skip
BLOB_PATH = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
S3_AUTH_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidArgument</Code>'
    "<Message>Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
    "Signature query string parameter or the Authorization header should be specified"
    "</Message><ArgumentName>Authorization</ArgumentName><RequestId>TESTREQ</RequestId>"
    "</Error>"
)


@dataclass(frozen=True)
class Seen:
    method: str
    path: str  # without query
    query: str
    had_authorization: bool
    status: int


class _Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Seen] = []

    def add(self, item: Seen) -> None:
        with self._lock:
            self._items.append(item)

    def all(self) -> list[Seen]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class Redirector:
    """Front + blob server around `registry` (a token-auth Registry). start()/stop() or `with`."""

    def __init__(self, registry: Registry, check_token: bool = True) -> None:
        self.registry = registry
        self.check_token = check_token
        self.front_requests = _Recorder()
        self.blob_requests = _Recorder()
        self._sigs: set[str] = set()
        self._sig_lock = threading.Lock()
        self._servers: list[BackgroundServer] = []

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Redirector:
        self._front = self._serve(type("Front", (_FrontHandler,), {"owner": self}), "front")
        self._blobs = self._serve(type("Blobs", (_BlobHandler,), {"owner": self}), "blobs")
        return self

    def _serve(self, handler: type[BaseHTTPRequestHandler], name: str) -> BackgroundServer:
        server = BackgroundServer(handler, f"redirector-{name}").start()
        self._servers.append(server)
        return server

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
        self._servers.clear()

    def __enter__(self) -> Redirector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._front.port

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def blob_port(self) -> int:
        return self._blobs.port

    @property
    def blob_url(self) -> str:
        return f"http://127.0.0.1:{self.blob_port}"

    def clear(self) -> None:
        self.front_requests.clear()
        self.blob_requests.clear()

    def new_sig(self) -> str:
        sig = secrets.token_hex(16)
        with self._sig_lock:
            self._sigs.add(sig)
        return sig

    def valid_sig(self, sig: str) -> bool:
        with self._sig_lock:
            return sig in self._sigs


class _Base(BaseHTTPRequestHandler):
    owner: Redirector
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _split(self) -> urllib.parse.SplitResult:
        return urllib.parse.urlsplit(self.path)

    def _request_body(self) -> Iterator[bytes]:
        """The request body as chunks (Content-Length or chunked)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                yield self.rfile.read(size)
                self.rfile.readline()
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            data = self.rfile.read(min(CHUNK, remaining))
            if not data:
                return
            remaining -= len(data)
            yield data


class _FrontHandler(_Base):
    server_version = "test-redirector/1"

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        split = self._split()
        auth = self.headers.get("Authorization")
        match = BLOB_PATH.match(split.path)
        try:
            if (
                match
                and self.command in ("GET", "HEAD")
                and auth is not None
                and auth.lower().startswith("bearer ")
                and (not self.owner.check_token or self._registry_has_blob())
            ):
                status = self._redirect(match.group("digest"))
            else:
                status = self._forward()
        except ConnectionRefusedError:
            status = self._bad_gateway()
        self.owner.front_requests.add(
            Seen(self.command, split.path, split.query, auth is not None, status)
        )

    def _bad_gateway(self) -> int:
        """The registry is down (a test stopped it)."""
        body = b"registry unreachable\n"
        self.send_response(502)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return 502

    def _registry_has_blob(self) -> bool:
        conn = self._connect()
        try:
            conn.putrequest("HEAD", self.path, skip_host=True, skip_accept_encoding=True)
            for key, value in self._forward_headers():
                conn.putheader(key, value)
            conn.endheaders()
            resp = conn.getresponse()
            resp.read()
            return resp.status == 200
        finally:
            conn.close()

    def _redirect(self, digest: str) -> int:
        location = f"{self.owner.blob_url}/blobs/{digest}?sig={self.owner.new_sig()}"
        self.send_response(307)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        self.end_headers()
        return 307

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.owner.registry.port, timeout=60)

    def _forward_headers(self) -> list[tuple[str, str]]:
        """Client headers in order, repeated ones (several Accept) kept."""
        return [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]

    def _forward(self) -> int:
        conn = self._connect()
        try:
            headers = self._forward_headers()
            has_body = "Content-Length" in self.headers or "Transfer-Encoding" in self.headers
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
            for key, value in headers:
                conn.putheader(key, value)
            if chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            if has_body:
                for data in self._request_body():
                    conn.send(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                if chunked:
                    conn.send(b"0\r\n\r\n")
            resp = conn.getresponse()
            self._relay(resp)
            return resp.status
        finally:
            conn.close()

    def _relay(self, resp: http.client.HTTPResponse) -> None:
        self.send_response_only(resp.status, resp.reason)
        length = resp.getheader("Content-Length")
        no_body = self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
        for key, value in resp.getheaders():
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        chunked = length is None and not no_body
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if no_body:
            return
        while True:
            data = resp.read(CHUNK) if not chunked else resp.read1(CHUNK)
            if not data:
                break
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")


class _BlobHandler(_Base):
    server_version = "test-blobstore/1"

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def _handle(self) -> None:
        split = self._split()
        auth = self.headers.get("Authorization") is not None
        status = self._serve(split, auth)
        self.owner.blob_requests.add(Seen(self.command, split.path, split.query, auth, status))

    def _xml(self, status: int, code: str, message: str | None = None) -> int:
        body = (
            S3_AUTH_ERROR
            if message is None
            else '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return status

    def _serve(self, split: urllib.parse.SplitResult, auth: bool) -> int:
        if auth:
            return self._xml(400, "InvalidArgument")
        sig = urllib.parse.parse_qs(split.query).get("sig", [""])[0]
        if not self.owner.valid_sig(sig):
            return self._xml(403, "AccessDenied", "Access Denied")
        digest = split.path.removeprefix("/blobs/")
        try:
            path = self.owner.registry.blob_path(digest)
        except ValueError:
            return self._xml(404, "NoSuchKey", "The specified key does not exist.")
        if not path.is_file():
            return self._xml(404, "NoSuchKey", "The specified key does not exist.")
        return self._send_file(path, digest)

    def _send_file(self, path: Path, digest: str) -> int:
        size = path.stat().st_size
        start, end = 0, size - 1
        status = 200
        rng = self.headers.get("Range")
        if rng:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not m or (not m.group(1) and not m.group(2)):
                return self._xml(416, "InvalidRange", "The requested range is not satisfiable")
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:
                start = max(size - int(m.group(2)), 0)
            if start > end or start >= size:
                return self._xml(416, "InvalidRange", "The requested range is not satisfiable")
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{digest.split(":", 1)[1][:32]}"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return status
        with open(path, "rb") as fh:
            fh.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                data = fh.read(min(CHUNK, remaining))
                if not data:
                    break
                self.wfile.write(data)
                remaining -= len(data)
        return status
