"""Optional client authentication, so the mirror need not be an open proxy.

With `[auth]` in the config, the mirror answers every registry request that does not carry
a token it handed out with its own Bearer challenge. Clients then fetch a token at the
mirror's `/v2/auth` with Basic credentials (`docker login mirror`, `--creds`), which are
checked against the htpasswd file (bcrypt) or the static token list (any user name, the
token as password). Only then does the mirror fetch an upstream token, with the route's
own credentials, and remember it as issued. The client's credentials never go upstream.
"""

import asyncio
import base64
import binascii
import hashlib
import hmac
import time

import bcrypt
from mitmproxy import http

from . import errors, names
from .config import ClientAuth as AuthConfig
from .flowinfo import FlowInfo, info
from .resolve import realm_path
from .router import Router, reject
from .token_auth import parse_token_answer

MIN_TTL, MAX_TTL = 60, 3600  # seconds an issued token stays valid here, at least and at most
# Token-request parameters about the client's mirror account (docker login sends them).
MIRROR_ONLY_PARAMS = ("account",)


def parse_basic(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def bearer_token(header: str) -> str:
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def check_credentials(auth: AuthConfig, user: str, password: str) -> bool:
    """bcrypt for htpasswd users (slow by design: call it off the event loop)."""
    if any(hmac.compare_digest(password, t) for t in auth.tokens):
        return True
    hashed = auth.htpasswd.get(user)
    return hashed is not None and bcrypt.checkpw(password.encode(), hashed)


class TokenLedger:
    """Tokens the mirror handed to authenticated clients, by hash, until they expire."""

    def __init__(self) -> None:
        self.expiry: dict[bytes, float] = {}

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def add(self, token: str, ttl: float, now: float) -> None:
        if len(self.expiry) > 10_000:
            self.expiry = {k: t for k, t in self.expiry.items() if t > now}
        self.expiry[self._key(token)] = now + min(max(ttl, MIN_TTL), MAX_TTL)

    def valid(self, token: str, now: float) -> bool:
        return bool(token) and self.expiry.get(self._key(token), 0) > now


class ClientAuth:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.ledger = TokenLedger()
        # sha256(user:password) of credentials bcrypt already accepted, until they expire
        self.verified = TokenLedger()

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        i = info(flow)
        auth = self.router.config.auth
        if flow.response or not i or not auth.enabled or "registry" not in i:
            return
        if i["op"] == names.TOKEN:
            await self._token_request(flow, i, auth)
        elif not self.ledger.valid(
            bearer_token(flow.request.headers.get("Authorization", "")), time.time()
        ):
            self._challenge(flow, i)

    def response(self, flow: http.HTTPFlow) -> None:
        i = info(flow)
        resp = flow.response
        if not resp or not i or i.get("op") != names.TOKEN or "client" not in i:
            return
        if resp.status_code != 200:
            return
        answer = parse_token_answer(resp.content or b"")
        if answer is None:
            return
        for token in answer.tokens:
            self.ledger.add(token, answer.lifetime, time.time())

    async def _token_request(self, flow: http.HTTPFlow, i: FlowInfo, auth: AuthConfig) -> None:
        req = flow.request
        if req.method != "GET":
            # OAuth2 clients fall back to GET with Basic credentials on 404.
            return reject(flow, 404, errors.UNSUPPORTED, "use GET with Basic credentials")
        creds = parse_basic(req.headers.get("Authorization", ""))
        if creds is None or not await self._check(auth, *creds):
            reject(flow, 401, errors.UNAUTHORIZED, "authentication required")
            flow.response.headers["WWW-Authenticate"] = 'Basic realm="regmirror"'
            return
        i["client"] = creds[0]
        # The mirror's credentials and identity stay here: the upstream sees the route's.
        del req.headers["Authorization"]
        for param in MIRROR_ONLY_PARAMS:
            req.query.pop(param, None)

    async def _check(self, auth: AuthConfig, user: str, password: str) -> bool:
        key = f"{user}:{password}"
        now = time.time()
        if self.verified.valid(key, now):
            return True
        ok = await asyncio.to_thread(check_credentials, auth, user, password)
        if ok:
            self.verified.add(key, MAX_TTL, now)
        return ok

    @staticmethod
    def _challenge(flow: http.HTTPFlow, i: FlowInfo) -> None:
        realm = i["mirror"] + realm_path(i["style"], i["registry"])
        challenge = f'Bearer realm="{realm}",service="regmirror"'
        if i.get("name"):
            challenge += f',scope="repository:{i["name"]}:pull"'
        reject(flow, 401, errors.UNAUTHORIZED, "authentication required")
        flow.response.headers["WWW-Authenticate"] = challenge
