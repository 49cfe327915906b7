"""Token auth through the mirror: upstream challenges point clients at the mirror's
`/v2/auth`, which forwards token requests to the upstream's realm.

Docker Hub answers `Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`;
clients must reach that realm through the mirror, with scopes naming the repository as the
upstream knows it (`library/nginx`).
"""

import base64
import datetime
import json
import logging
import secrets
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, NamedTuple

import httpx
from mitmproxy import ctx, http

from .. import errors
from ..answers import answer, refusal
from ..flowinfo import FlowInfo, info
from ..routing import names
from ..routing.catalog import Registry
from ..routing.router import Router, reject
from ..routing.table import realm_path, strip_prefix
from ..transport.outbound import RealmPins
from .challenge import Challenge, bearer_challenge, format_challenge, parse_challenges, with_realm
from .token_request import (
    InvalidTokenRequest,
    Scopes,
    parse_form,
    requested_scopes,
    token_form,
    token_url,
)

logger = logging.getLogger(__name__)

API_VERSION = "Docker-Distribution-Api-Version"
# What the challenge cache holds for an upstream that answers without token auth.
NO_TOKEN_AUTH = Challenge("none", {})
# Anonymous `GET /v2/` pings are answered from an upstream's learned challenge for this long
# after the upstream last sent it; then the next ping goes upstream again and refreshes it.
CHALLENGE_TTL = 300.0
# Anonymous tokens are shared between clients while at least this share of their lifetime
# is left; clients get the remaining lifetime as expires_in.
TOKEN_REUSE = 0.5
DEFAULT_TOKEN_LIFETIME = 60  # seconds, when a token answer has no expires_in (the spec's)
MAX_CACHED_TOKENS = 1024
MAX_TOKEN_LIFETIME = 366 * 86400  # seconds; an answer claiming more is no token answer


class CachedToken(NamedTuple):
    body: dict[str, object]
    issued: float  # time.time() when the upstream issued it
    lifetime: float  # seconds


def mirror_challenge(upstream_header: str, realm: str) -> tuple[Challenge, str] | None:
    """(learned upstream challenge, header for the client with `realm`) for an upstream 401.

    None when the upstream uses another scheme (Basic), which passes through unchanged.
    Raises ValueError when the challenge is missing or malformed.
    """
    challenges = parse_challenges(upstream_header)
    if not any(c.is_bearer for c in challenges):
        return None
    learned = bearer_challenge(upstream_header)
    given = learned.params["realm"]
    u = urllib.parse.urlsplit(given)  # raises ValueError for `https://[x`
    if u.scheme not in ("https", "http") or not u.hostname:
        raise ValueError(f"realm is not an http(s) URL: {given[:100]!r}")
    return learned, format_challenge(with_realm(learned, realm))


def renamer(registry: Registry) -> Callable[[str], str]:
    """Client names in scopes -> the upstream's (`docker.io/nginx` -> `library/nginx`)."""
    if registry.dockerhub:
        return lambda name: names.with_library(strip_prefix(name, registry))
    return lambda name: strip_prefix(name, registry)


def mirror_token() -> http.Response:
    """A token of the mirror's own, for an upstream without token auth (client auth)."""
    token = secrets.token_urlsafe(32)
    issued = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"token": token, "access_token": token, "expires_in": 300, "issued_at": issued}
    return http.Response.make(200, json.dumps(body), {"Content-Type": "application/json"})


class TokenAnswer(NamedTuple):
    body: dict[str, Any]
    tokens: list[str]  # `token` and `access_token`, as given
    lifetime: float  # seconds; the spec's 60 when `expires_in` is missing


def parse_token_answer(body: bytes) -> TokenAnswer | None:
    """A token service's answer `{"token", "access_token", "expires_in", ...}`; None if the
    body is not one."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # `[[[[...`: deeper than the parser recurses
        return None
    if not isinstance(data, dict):
        return None
    tokens = [t for t in (data.get("token"), data.get("access_token")) if isinstance(t, str) and t]
    lifetime = data.get("expires_in", DEFAULT_TOKEN_LIFETIME)
    if not tokens or isinstance(lifetime, bool) or not isinstance(lifetime, int | float):
        return None
    if not 0 <= lifetime <= MAX_TOKEN_LIFETIME:  # also NaN, infinity and 10**400
        return None
    return TokenAnswer(data, tokens, float(lifetime))


def cacheable_token(body: bytes, now: float) -> CachedToken | None:
    """An upstream's token answer that may be shared between anonymous clients: no refresh
    token (bound to an account), and a lifetime worth sharing."""
    answer = parse_token_answer(body)
    if answer is None or "refresh_token" in answer.body:
        return None
    if answer.lifetime < 2 * DEFAULT_TOKEN_LIFETIME:
        return None  # too short-lived to be worth sharing
    return CachedToken(answer.body, now, answer.lifetime)


def reusable(cached: CachedToken, now: float) -> bool:
    """At least TOKEN_REUSE of the token's lifetime is left."""
    return cached.issued + cached.lifetime - now >= cached.lifetime * TOKEN_REUSE


def reused_token(cached: CachedToken, now: float) -> http.Response | None:
    """The cached token for another anonymous client, with the lifetime it has left; None
    once it is no longer reusable."""
    if not reusable(cached, now):
        return None
    left = cached.issued + cached.lifetime - now
    issued = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {**cached.body, "expires_in": int(left), "issued_at": issued}
    return http.Response.make(200, json.dumps(body), {"Content-Type": "application/json"})


def strip_refresh_token(resp: http.Response) -> None:
    """A refresh token outlives every check the mirror makes: no client gets one."""
    answer = parse_token_answer(resp.content or b"") if resp.status_code == 200 else None
    if answer is not None and "refresh_token" in answer.body:
        body = {k: v for k, v in answer.body.items() if k != "refresh_token"}
        resp.content = json.dumps(body).encode()


def basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class TokenAuth:
    def __init__(self, router: Router) -> None:
        self.router = router
        # upstream base URL -> its Bearer challenge (realm, service)
        self.challenges: dict[str, Challenge] = {}
        # upstream base URL -> time.monotonic() when the upstream last sent its challenge
        self.challenged: dict[str, float] = {}
        # upstream token URL (realm, service, scopes) -> an anonymous token answer
        self.tokens: dict[str, CachedToken] = {}
        self.realms = RealmPins()
        self.client: httpx.AsyncClient | None = None

    async def done(self) -> None:
        if self.client:
            await self.client.aclose()

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        i = info(flow)
        if flow.response or not i:
            return
        if i.get("op") == names.PING:
            return self._answer_ping(flow, i)
        if i.get("op") != names.TOKEN:
            return
        registry = self.router.registry(flow, i["registry"])
        upstream = registry.upstream
        challenge = self.challenges.get(upstream.base) or await self._probe(flow, registry)
        if challenge is None:
            return
        if challenge is NO_TOKEN_AUTH:
            if i.get("client"):  # authenticated by the mirror: its own token will do
                answer(flow, mirror_token())
            else:
                message = f"{upstream.base} does not use token auth"
                answer(flow, refusal(flow, 404, errors.UNSUPPORTED, message))
            return
        realm, service = challenge.params["realm"], challenge.params.get("service", "")
        if await self.realms.refused(flow, registry, realm):
            return
        req = flow.request
        if req.method == "GET":
            params = list(req.query.items(multi=True))
            try:
                url, scopes = token_url(realm, service, params, self._scopes(registry))
            except InvalidTokenRequest as e:
                return reject(flow, 400, errors.UNSUPPORTED, str(e))
            if requested_scopes(params) and not scopes:
                return reject(flow, 403, errors.DENIED, "no scope asked for is served here")
            req.url = url
            # The client's own credentials (docker login) win over the route's, which go
            # only with GET: the OAuth2 form carries the client's own.
            if registry.credentials and "Authorization" not in req.headers:
                req.headers["Authorization"] = basic_auth(*registry.credentials)
        else:
            req.url = realm
        req.host_header = urllib.parse.urlsplit(req.url).netloc
        i["target"] = req.host_header
        if req.method == "GET" and "Authorization" not in req.headers:
            cached = self.tokens.get(req.url)
            if cached and (reused := reused_token(cached, time.time())):
                answer(flow, reused)
                i["cached"] = "token"

    def _answer_ping(self, flow: http.HTTPFlow, i: FlowInfo) -> None:
        """An anonymous client's `/v2/` ping gets the upstream's challenge, as last learned,
        without asking the upstream again: the first round trip of every pull."""
        req = flow.request
        if req.method not in ("GET", "HEAD") or "Authorization" in req.headers:
            return
        challenge = self.challenges.get(i["upstream"])
        learned = self.challenged.get(i["upstream"], float("-inf"))
        if not challenge or not challenge.is_bearer or time.monotonic() - learned > CHALLENGE_TTL:
            return
        params = {k: v for k, v in challenge.params.items() if k in ("realm", "service")}
        realm = i["mirror"] + realm_path(i["style"], i["registry"])
        resp = errors.error_response(
            401, errors.UNAUTHORIZED, "authentication required", head=req.method == "HEAD"
        )
        resp.headers["WWW-Authenticate"] = format_challenge(
            with_realm(Challenge("Bearer", params), realm)
        )
        answer(flow, resp)
        i["cached"] = "challenge"

    def request(self, flow: http.HTTPFlow) -> None:
        i = info(flow)
        if flow.response or not i or i.get("op") != names.TOKEN or flow.request.method != "POST":
            return
        challenge = self.challenges.get(i["upstream"])
        service = challenge.params.get("service", "") if challenge else ""
        registry = self.router.registry(flow, i["registry"])
        try:
            form = parse_form(flow.request.get_content(strict=False) or b"")
            text, scopes = token_form(form, service, self._scopes(registry))
        except InvalidTokenRequest as e:
            return reject(flow, 400, errors.UNSUPPORTED, str(e))
        if requested_scopes(form) and not scopes:
            return reject(flow, 403, errors.DENIED, "no scope asked for is served here")
        flow.request.content = text.encode()

    @staticmethod
    def _scopes(registry: Registry) -> Scopes:
        return Scopes(renamer(registry), registry.allows, ctx.options.regmirror_catalog)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        i = info(flow)
        if not flow.response or not i or i.get("op") not in names.API_KINDS:
            return
        resp = flow.response
        if i["op"] == names.PING and API_VERSION not in resp.headers:
            resp.headers[API_VERSION] = "registry/2.0"
        if resp.status_code != 401 or i.get("cached"):
            return
        realm = i["mirror"] + realm_path(i["style"], i["registry"])
        try:
            rewritten = mirror_challenge(resp.headers.get("WWW-Authenticate", ""), realm)
        except ValueError as e:
            i["error"] = f"upstream {i['upstream']} sent a broken auth challenge: {e}"
            return
        if rewritten:
            registry = self.router.registry(flow, i["registry"])
            if refused := self.realms.learn(registry, rewritten[0].params["realm"]):
                i["error"] = refused
                return
            self.challenges[i["upstream"]], resp.headers["WWW-Authenticate"] = rewritten
            self.challenged[i["upstream"]] = time.monotonic()

    def response(self, flow: http.HTTPFlow) -> None:
        i = info(flow)
        if not i or not flow.response or flow.response.stream:
            return
        if i.get("op") == names.TOKEN and "target" in i and not i.get("cached"):
            self._remember_token(flow)
            strip_refresh_token(flow.response)
        if "error" not in i:
            return
        flow.response = errors.error_response(
            502, errors.UNAVAILABLE, i["error"], head=flow.request.method == "HEAD"
        )

    def _remember_token(self, flow: http.HTTPFlow) -> None:
        """Keep an anonymous token answer from the upstream's realm for other clients."""
        req, resp = flow.request, flow.response
        assert resp is not None
        now = time.time()
        if req.method != "GET" or "Authorization" in req.headers or resp.status_code != 200:
            return
        cached = cacheable_token(resp.content or b"", now)
        if cached is None:
            return
        if len(self.tokens) >= MAX_CACHED_TOKENS:
            self.tokens = {k: t for k, t in self.tokens.items() if t.issued + t.lifetime > now}
            if len(self.tokens) >= MAX_CACHED_TOKENS:
                self.tokens.pop(next(iter(self.tokens)))
        self.tokens[req.url] = cached

    async def _probe(self, flow: http.HTTPFlow, registry: Registry) -> Challenge | None:
        """Learn the upstream's realm from its `/v2/` challenge (once per upstream)."""
        upstream = registry.upstream
        if self.client is None:
            self.client = httpx.AsyncClient(
                verify=not ctx.options.ssl_insecure,
                timeout=ctx.options.regmirror_upstream_timeout,
            )
        try:
            r = await self.client.get(upstream.base + "/v2/")
            rewritten = None
            if r.status_code == 401:
                rewritten = mirror_challenge(r.headers.get("WWW-Authenticate", ""), "")
        except (httpx.HTTPError, ValueError) as e:
            status = 504 if isinstance(e, httpx.TimeoutException) else 502
            message = f"cannot learn the token realm of {upstream.base}: {e or type(e).__name__}"
            logger.warning(message)
            answer(flow, refusal(flow, status, errors.UNAVAILABLE, message))
            return None
        challenge = rewritten[0] if rewritten else NO_TOKEN_AUTH
        if rewritten and (refused := self.realms.learn(registry, challenge.params["realm"])):
            answer(flow, refusal(flow, 502, errors.UNAVAILABLE, refused))
            return None
        self.challenges[upstream.base] = challenge
        return challenge
