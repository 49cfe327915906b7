"""Optional client authentication, so the mirror need not be an open proxy.

With `[auth]` in the config, the mirror answers every registry request that does not carry
a token it handed out with its own Bearer challenge. Clients then fetch a token at the
mirror's `/v2/auth` with Basic credentials (`docker login mirror`, `--creds`), which are
checked against the htpasswd file (bcrypt) or the static token list (any user name, the
token as password). Only then does the mirror fetch an upstream token, with the route's
own credentials, and hand it to the client wrapped in a token of its own (client_tokens.py),
which every replica sharing the secret accepts, and unwraps on each request. The client's
credentials never go upstream.
"""

import asyncio
import base64
import functools
import hashlib
import hmac
import time
import weakref

import bcrypt
from mitmproxy import http

from .. import errors
from ..answers import refuse
from ..record import Route, outcome, route
from ..routing import names
from ..routing.config import ClientAuth as AuthConfig
from ..routing.router import Router
from ..routing.table import realm_url
from . import client_tokens
from .client_tokens import MAX_TTL, MIN_TTL, Claims, Principal
from .ledger import Ledger
from .provenance import Provenances
from .token_answers import rewrite_tokens

BY = "client auth"
# Token-request parameters about the client's mirror account (docker login sends them).
MIRROR_ONLY_PARAMS = ("account",)


def parse_basic(header: str) -> tuple[str, str] | None:
    """(user, password) of `Basic base64(user:password)`, both UTF-8; None otherwise."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except ValueError:  # not base64 (or not ASCII at all), not UTF-8
        return None
    return (user, password) if sep else None


def bearer_token(header: str) -> str:
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


@functools.lru_cache(maxsize=8)
def _dummy_hash(rounds: int) -> bytes:
    return bcrypt.hashpw(b"regmirror: no such user", bcrypt.gensalt(rounds=rounds))


def _bcrypt_rounds(auth: AuthConfig) -> int:
    """The highest cost among the htpasswd hashes (`$2y$05$...`), for the dummy check."""
    costs = [int(h[4:6]) for h in auth.htpasswd.values() if h[4:6].isdigit()]
    return min(max(costs, default=5), 31) if costs else 5


def check_credentials(auth: AuthConfig, user: str, password: str) -> Principal | None:
    """The principal that `user:password` proves, or None. bcrypt is slow by design: call it
    off the event loop. An unknown user costs as much as a known one."""
    secret = password.encode("utf-8", "surrogateescape")
    for token in auth.tokens:
        if hmac.compare_digest(secret, token.encode()):
            return Principal("token", user, _fingerprint(token))
    if not auth.htpasswd:
        return None
    hashed = auth.htpasswd.get(user)
    ok = bcrypt.checkpw(secret, hashed or _dummy_hash(_bcrypt_rounds(auth)))
    return Principal("htpasswd", user, hashed.decode()) if hashed and ok else None


def still_valid(principal: Principal, auth: AuthConfig) -> bool:
    """Whether a principal survives a reload of the configuration."""
    if principal.kind == "token":
        return any(_fingerprint(t) == principal.proof for t in auth.tokens)
    return auth.htpasswd.get(principal.user, b"").decode() == principal.proof


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def holder(key: bytes, token: str, auth: AuthConfig, now: float) -> Claims | None:
    """The claims of a client token that `key` signed, unexpired, for a credential that the
    configuration still accepts (the same htpasswd hash, or a static token still listed)."""
    claims = client_tokens.open_token(key, token, now)
    if claims is None:
        return None
    if claims.kind == "htpasswd":
        hashed = auth.htpasswd.get(claims.user)
        principals = [Principal("htpasswd", claims.user, hashed.decode())] if hashed else []
    else:
        principals = [Principal("token", claims.user, _fingerprint(t)) for t in auth.tokens]
    return claims if any(client_tokens.issued_to(key, claims, p) for p in principals) else None


class ClientAuth:
    def __init__(self, router: Router, provenances: Provenances) -> None:
        self.router, self.provenances = router, provenances
        self.auth = AuthConfig()  # the configuration the ledger was filled under
        self.verified = Ledger[Principal](MIN_TTL, MAX_TTL)  # "user:password" bcrypt accepted
        self.principals: weakref.WeakKeyDictionary[http.HTTPFlow, Principal] = (
            weakref.WeakKeyDictionary()
        )

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        r = route(flow)
        auth = self.router.config.auth
        if flow.response or flow.error or not r or not auth.enabled or "registry" not in r:
            return
        if auth is not self.auth:
            self._reloaded(auth)
        if r["op"] == names.TOKEN:
            return await self._token_request(flow, auth)
        token = bearer_token(flow.request.headers.get("Authorization", ""))
        now = time.time()
        claims = holder(self.router.signer.key, token, auth, now)
        if claims is None:
            return self._challenge(flow, r)
        flow.request.headers["Authorization"] = f"Bearer {claims.upstream}"
        # How the upstream token was obtained, as signed, for the cache: a replica that did
        # not issue the token knows it too.
        self.provenances.add(claims.upstream, claims.provenance, claims.expires - now, now)

    async def admits(self, req: http.Request) -> bool:
        """Whether a request to one of the mirror's own endpoints (metrics) may be answered:
        always without [auth]; else with a token the mirror issued, a static token as
        Bearer (as Prometheus sends it), or valid Basic credentials."""
        auth = self.router.config.auth
        if not auth.enabled:
            return True
        if auth is not self.auth:
            self._reloaded(auth)
        header = req.headers.get("Authorization", "")
        if token := bearer_token(header):
            secret = token.encode("utf-8", "surrogateescape")
            static = any(hmac.compare_digest(secret, t.encode()) for t in auth.tokens)
            return static or holder(self.router.signer.key, token, auth, time.time()) is not None
        creds = parse_basic(header)
        return creds is not None and await self._check(auth, *creds) is not None

    def _reloaded(self, auth: AuthConfig) -> None:
        """Forget checked credentials the new configuration no longer accepts: removed users
        and tokens, changed passwords. Issued tokens need no list: each is checked against
        the configuration on every request (holder)."""
        self.auth = auth
        self.verified.revoke(lambda p: still_valid(p, auth))

    async def _token_request(self, flow: http.HTTPFlow, auth: AuthConfig) -> None:
        req = flow.request
        if req.method != "GET":
            # OAuth2 clients fall back to GET with Basic credentials on 404.
            return refuse(flow, BY, 404, errors.UNSUPPORTED, "use GET with Basic credentials")
        creds = parse_basic(req.headers.get("Authorization", ""))
        principal = await self._check(auth, *creds) if creds else None
        if principal is None:
            basic = {"WWW-Authenticate": 'Basic realm="regmirror"'}
            return refuse(flow, BY, 401, errors.UNAUTHORIZED, "authentication required",
                          headers=basic)  # fmt: skip
        outcome(flow)["client"] = principal.user
        self.principals[flow] = principal
        # The mirror's credentials and identity stay here: the upstream sees the route's.
        del req.headers["Authorization"]
        for param in MIRROR_ONLY_PARAMS:
            req.query.pop(param, None)

    async def _check(self, auth: AuthConfig, user: str, password: str) -> Principal | None:
        key = f"{user}:{password}"
        now = time.time()
        if principal := self.verified.get(key, now):
            return principal
        principal = await asyncio.to_thread(check_credentials, auth, user, password)
        if principal:
            self.verified.add(key, principal, MAX_TTL, now)
        return principal

    @staticmethod
    def _challenge(flow: http.HTTPFlow, r: Route) -> None:
        challenge = f'Bearer realm="{realm_url(r)}",service="regmirror"'
        if r.get("name"):
            challenge += f',scope="repository:{r["name"]}:pull"'
        refuse(flow, BY, 401, errors.UNAUTHORIZED, "authentication required",
               headers={"WWW-Authenticate": challenge})  # fmt: skip


class ClientTokens:
    """Wraps the upstream's token answer to an authenticated client in the mirror's own
    tokens (client_tokens.py). Runs after the token proxy, which strips refresh tokens and
    records how the upstream token was obtained (provenance.py), which the token carries."""

    def __init__(self, client_auth: ClientAuth) -> None:
        self.client_auth = client_auth

    def response(self, flow: http.HTTPFlow) -> None:
        resp = flow.response
        principal = self.client_auth.principals.get(flow)
        if not resp or principal is None:
            return
        key, now = self.client_auth.router.signer.key, time.time()

        def wrap(upstream: str, lifetime: float) -> str:
            provenance = self.client_auth.provenances.of(f"Bearer {upstream}", now)
            return client_tokens.mint(key, principal, provenance, upstream, lifetime, now)

        rewrite_tokens(resp, wrap)
