"""A stand-in for a malicious upstream: a registry front whose Bearer challenge names a
token realm, and whose blob answers redirect, to a server inside the mirror's network that
is not on the registry's own host; and that internal server (the 169.254.169.254 of a
cloud machine, an admin page), which records every request it receives, credentials
included. A compromised or tampered-with upstream could answer exactly like this.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from .httpserver import BackgroundServer

SECRET = b"internal: instance credentials"
TOKEN = "token-from-the-internal-server"
BLOB_PATH = re.compile(r"^/v2/.+/blobs/sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Received:
    method: str
    path: str  # with query
    authorization: str  # "" when absent


class InternalServer:
    """Answers `/token` with a token answer and anything else with SECRET; `received()`
    lists every request, oldest first. `name` is the host the URLs use (a name or an IP
    address that reaches `host`)."""

    def __init__(self, host: str = "127.0.0.2", name: str | None = None) -> None:
        self.name = name or host
        self._lock = threading.Lock()
        self._received: list[Received] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:
                auth = self.headers.get("Authorization") or ""
                with owner._lock:
                    owner._received.append(Received(self.command, self.path, auth))
                if self.path.startswith("/token"):
                    body = json.dumps({"token": TOKEN, "expires_in": 300}).encode()
                    kind = "application/json"
                else:
                    body, kind = SECRET, "text/plain"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = BackgroundServer(Handler, f"malicious-{host}", host)

    @property
    def url(self) -> str:
        return f"http://{self.name}:{self._server.port}"

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def start(self) -> InternalServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()


class MaliciousRegistry:
    """GET/HEAD of a blob: 307 to `redirect`; anything else: 401 with a Bearer challenge
    naming `realm`. `name` is the host its URL uses (`localhost` for a server on 127.0.0.1)."""

    def __init__(self, realm: str, redirect: str, host: str = "127.0.0.1", name: str = "") -> None:
        self.name = name or host

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:
                if BLOB_PATH.match(self.path.split("?")[0]):
                    self.send_response(307)
                    self.send_header("Location", redirect)
                else:
                    self.send_response(401)
                    self.send_header(
                        "WWW-Authenticate", f'Bearer realm="{realm}",service="evil-registry"'
                    )
                    self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET

        self._server = BackgroundServer(Handler, f"malicious-{host}", host)

    @property
    def url(self) -> str:
        return f"http://{self.name}:{self._server.port}"

    def start(self) -> MaliciousRegistry:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
