"""A Docker-Hub-like token service for distribution's `auth: token` (ES256 JWTs).

GET  /token?service=S&scope=repository:NAME:pull,push&scope=...   (anonymous or Basic)
POST /token  (OAuth2 form: grant_type=password|refresh_token, service, scope="a b", ...)

Policy: repositories named `private/...` are pulled by authenticated users only; `push`
is granted to authenticated users only. Wrong credentials answer 401 with a JSON error.
Every request is recorded (never the password) for assertions.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .certs import certificate
from .httpserver import BackgroundServer

SECRET_FIELDS = {"password", "refresh_token"}

# Test users: alice may pull private/*; pusher pushes the test images.
ALICE = ("alice", "wonderland")
PUSHER = ("pusher", "pushpass")
USERS = dict([ALICE, PUSHER])
ALICE_CREDS = "alice:wonderland"
PUSHER_CREDS = "pusher:pushpass"


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server saw. `params` is the query (GET) or form (POST) as a list
    of (name, value) pairs, secrets replaced by "***"."""

    method: str
    path: str
    params: list[tuple[str, str]]
    had_authorization: bool
    user: str | None  # authenticated user (Basic or password/refresh grant), else None
    status: int
    scopes: list[str] = field(default_factory=list)  # requested scopes, in order
    granted: list[dict[str, Any]] = field(default_factory=list)  # the token's access claim

    def param(self, name: str) -> list[str]:
        return [v for k, v in self.params if k == name]


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """docker/libtrust key id: base32(sha256(DER SPKI)[:30]) in 12 groups of 4, joined by ':'."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i : i + 4] for i in range(0, 48, 4))


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """'repository:org/app:pull,push' -> ('repository', 'org/app', ['pull', 'push'])."""
    try:
        kind, rest = scope.split(":", 1)
        name, actions = rest.rsplit(":", 1)
    except ValueError:
        return None
    return kind, name, [a for a in actions.split(",") if a]


class TokenServer:
    """Threaded token service on 127.0.0.1:<ephemeral>. Use start()/stop() or `with`."""

    def __init__(
        self,
        cert_dir: Path,
        users: Mapping[str, str] | None = None,
        service: str = "test-registry",
        issuer: str = "test-token-issuer",
        expires_in: int = 300,
        allow_anonymous: bool = True,
        header: str = "x5c",
    ) -> None:
        if header not in ("x5c", "kid", "both"):
            raise ValueError("header must be x5c, kid or both")
        self.users = dict(users or {})
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.allow_anonymous = allow_anonymous
        self.header_mode = header
        self._lock = threading.Lock()
        self._records: list[TokenRequest] = []
        self._refresh_tokens: dict[str, str] = {}
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._cert = certificate(self._key, issuer)
        cert_dir.mkdir(parents=True, exist_ok=True)
        self.cert_path = cert_dir / "cert.pem"
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self.kid = libtrust_key_id(self._key.public_key())
        self._server: BackgroundServer | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> TokenServer:
        handler = type("Handler", (_Handler,), {"owner": self})
        self._server = BackgroundServer(handler, "token-server").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("token server not started")
        return self._server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    # -- records ---------------------------------------------------------------------------
    def records(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def mark(self) -> int:
        """Position to pass to records_since() later."""
        with self._lock:
            return len(self._records)

    def records_since(self, mark: int) -> list[TokenRequest]:
        with self._lock:
            return list(self._records[mark:])

    def _record(self, rec: TokenRequest) -> None:
        with self._lock:
            self._records.append(rec)

    # -- policy and tokens -----------------------------------------------------------------
    def check_password(self, user: str, password: str) -> bool:
        expected = self.users.get(user)
        return expected is not None and secrets.compare_digest(expected, password)

    def grant(self, user: str | None, scopes: Iterable[str]) -> list[dict[str, Any]]:
        """The access claim for these requested scopes (merged per resource)."""
        granted: dict[tuple[str, str], list[str]] = {}
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            kind, name, actions = parsed
            allowed = self._allowed(user, kind, name, actions)
            if not allowed:
                continue
            have = granted.setdefault((kind, name), [])
            have.extend(a for a in allowed if a not in have)
        return [{"type": k, "name": n, "actions": a} for (k, n), a in granted.items()]

    def _allowed(self, user: str | None, kind: str, name: str, actions: list[str]) -> list[str]:
        if kind == "registry":
            return list(actions) if user else []
        if kind != "repository":
            return []
        if name.startswith("private/") and user is None:
            return []
        out = []
        for action in actions:
            if action == "pull" or (action in ("push", "delete", "*") and user is not None):
                out.append(action)
        return out

    def issue_token(
        self,
        user: str | None = None,
        access: list[dict[str, Any]] | None = None,
        scopes: Iterable[str] = (),
        expires_in: int | None = None,
    ) -> str:
        """A signed JWT. Give `access` directly, or `scopes` to apply the policy for `user`."""
        if access is None:
            access = self.grant(user, scopes)
        now = int(dt.datetime.now(dt.UTC).timestamp())
        lifetime = self.expires_in if expires_in is None else expires_in
        claims = {
            "iss": self.issuer,
            "aud": self.service,
            "sub": user or "",
            "iat": now,
            "nbf": now - 10,
            "exp": now + lifetime,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        headers: dict[str, Any] = {"typ": "JWT"}
        if self.header_mode in ("x5c", "both"):
            der = self._cert.public_bytes(serialization.Encoding.DER)
            headers["x5c"] = [base64.b64encode(der).decode()]
        if self.header_mode in ("kid", "both"):
            headers["kid"] = self.kid
        return jwt.encode(claims, self._key, algorithm="ES256", headers=headers)

    def new_refresh_token(self, user: str) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._refresh_tokens[token] = user
        return token

    def user_for_refresh_token(self, token: str) -> str | None:
        with self._lock:
            return self._refresh_tokens.get(token)

    def public_key_pem(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def decode(self, token: str) -> dict[str, Any]:
        """Verify and decode a token this server issued (for assertions)."""
        return jwt.decode(
            token, self._key.public_key(), algorithms=["ES256"], audience=self.service
        )


class _Handler(BaseHTTPRequestHandler):
    owner: TokenServer
    protocol_version = "HTTP/1.1"
    server_version = "test-token-server/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep quiet
        pass

    def do_GET(self) -> None:
        split = urllib.parse.urlsplit(self.path)
        params = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
        self._handle("GET", split.path, params, form=False)

    def do_POST(self) -> None:
        split = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        params = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
        params += urllib.parse.parse_qsl(body, keep_blank_values=True)
        self._handle("POST", split.path, params, form=True)

    # -- core ------------------------------------------------------------------------------
    def _handle(self, method: str, path: str, params: list[tuple[str, str]], form: bool) -> None:
        owner = self.owner
        auth = self.headers.get("Authorization")
        scopes = _scopes(params, form)
        safe = [(k, "***" if k in SECRET_FIELDS else v) for k, v in params]

        def finish(
            status: int,
            body: dict[str, Any],
            user: str | None = None,
            granted: list[dict[str, Any]] | None = None,
        ) -> None:
            owner._record(
                TokenRequest(
                    method, path, safe, auth is not None, user, status, scopes, granted or []
                )
            )
            self._send_json(status, body)

        if path.rstrip("/") != "/token":
            finish(404, {"errors": [{"code": "NOT_FOUND", "message": "no such endpoint"}]})
            return
        user, ok = self._authenticate(auth, dict(params), form)
        if not ok:
            finish(
                401,
                {
                    "details": "incorrect username or password",
                    "errors": [
                        {"code": "UNAUTHORIZED", "message": "incorrect username or password"}
                    ],
                },
            )
            return
        if user is None and not owner.allow_anonymous:
            finish(
                401,
                {
                    "details": "authentication required",
                    "errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}],
                },
            )
            return
        service = dict(params).get("service")
        if service is not None and service != owner.service:
            finish(400, {"errors": [{"code": "DENIED", "message": "unknown service"}]})
            return
        granted = owner.grant(user, scopes)
        token = owner.issue_token(user, access=granted)
        body: dict[str, Any] = {
            "token": token,
            "access_token": token,
            "expires_in": owner.expires_in,
            "issued_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        wants_refresh = dict(params).get("access_type") == "offline" or (
            dict(params).get("offline_token") == "true"
        )
        if user is not None and wants_refresh:
            body["refresh_token"] = owner.new_refresh_token(user)
        if form:
            body["scope"] = " ".join(scopes)
        finish(200, body, user, granted)

    def _authenticate(
        self, auth: str | None, params: dict[str, str], form: bool
    ) -> tuple[str | None, bool]:
        """(user or None, credentials_ok)."""
        owner = self.owner
        if form:
            grant = params.get("grant_type")
            if grant == "password":
                user, password = params.get("username", ""), params.get("password", "")
                return (user, True) if owner.check_password(user, password) else (None, False)
            if grant == "refresh_token":
                user = owner.user_for_refresh_token(params.get("refresh_token", ""))
                return (user, True) if user else (None, False)
        if auth is None:
            return None, True
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "basic":
            return None, False
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8
            return None, False
        return (user, True) if owner.check_password(user, password) else (None, False)

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def _scopes(params: list[tuple[str, str]], form: bool) -> list[str]:
    out: list[str] = []
    for key, value in params:
        if key != "scope":
            continue
        # OAuth2 form posts join several scopes with spaces; GET repeats the parameter.
        out.extend(value.split(" ") if form else [value])
    return [s for s in out if s]
