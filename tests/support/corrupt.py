"""A stand-in upstream front that causes real faults: it flips one byte of a blob (a real
digest mismatch), or answers manifest requests with an error status (a throttling or failing
upstream).

`CorruptingFront(registry)` relays every request to a distribution registry unchanged (the
redirector's relaying front, without its redirects). While `corrupt` holds a digest, the
body of every 200 answer to a GET of that blob (`/v2/<name>/blobs/<digest>`, any name) is
relayed with its middle byte inverted: same length, same headers, wrong content, as a bad
disk or a broken CDN node would serve it. `corrupted` counts the bodies it spoiled. While
`fail_manifests` holds a status (429, 503, 404), every manifest request gets that status with
a registry error body instead, as Docker Hub's rate limit or an outage answers; `failed`
counts them.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import urllib.parse

from .httpserver import BackgroundServer
from .redirector import BLOB_PATH, _FrontHandler
from .registry import Registry

MANIFEST_PATH = re.compile(r"/v2/.+/manifests/[^/]+")


class CorruptingFront:
    """start()/stop() or `with`; `url`/`host` are the front's, `corrupt` the digest to spoil
    (None: relay faithfully)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.corrupt: str | None = None
        self.fail_manifests: int | None = None
        self._lock = threading.Lock()
        self._corrupted = 0
        self._failed = 0
        self._server: BackgroundServer | None = None

    def start(self) -> CorruptingFront:
        handler = type("Front", (_Handler,), {"owner": self})
        self._server = BackgroundServer(handler, "corrupting-front").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> CorruptingFront:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        assert self._server is not None, "not started"
        return f"127.0.0.1:{self._server.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def corrupted(self) -> int:
        with self._lock:
            return self._corrupted

    @property
    def failed(self) -> int:
        with self._lock:
            return self._failed

    def _spoiled(self) -> None:
        with self._lock:
            self._corrupted += 1

    def _refused(self) -> None:
        with self._lock:
            self._failed += 1


class _FlippedBody:
    """An upstream answer whose body byte at `offset` is inverted; the rest is delegated."""

    def __init__(self, resp: http.client.HTTPResponse, offset: int) -> None:
        self._resp = resp
        self._offset = offset
        self._pos = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._resp, name)

    def read(self, n: int = -1) -> bytes:
        return self._flip(self._resp.read(n))

    def read1(self, n: int = -1) -> bytes:
        return self._flip(self._resp.read1(n))

    def _flip(self, data: bytes) -> bytes:
        start, self._pos = self._pos, self._pos + len(data)
        if start <= self._offset < self._pos:
            i = self._offset - start
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
        return data


class _Handler(_FrontHandler):
    owner: CorruptingFront  # type: ignore[assignment]
    server_version = "test-corrupting-front/1"

    def _handle(self) -> None:
        status = self.owner.fail_manifests
        if status is None or not MANIFEST_PATH.match(urllib.parse.urlsplit(self.path).path):
            self._forward()
            return
        self.owner._refused()
        code = {404: "MANIFEST_UNKNOWN", 429: "TOOMANYREQUESTS"}.get(status, "UNAVAILABLE")
        body = json.dumps({"errors": [{"code": code, "message": "the front says so"}]}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _relay(self, resp: http.client.HTTPResponse) -> None:
        match = BLOB_PATH.match(urllib.parse.urlsplit(self.path).path)
        length = int(resp.getheader("Content-Length") or 0)
        if (
            match
            and self.command == "GET"
            and resp.status == 200
            and length > 0
            and match["digest"] == self.owner.corrupt
        ):
            self.owner._spoiled()
            resp = _FlippedBody(resp, length // 2)  # type: ignore[assignment]
        super()._relay(resp)
