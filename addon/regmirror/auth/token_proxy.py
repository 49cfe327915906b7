"""Token auth through the mirror: upstream challenges point clients at the mirror's
`/v2/auth`, which forwards token requests to the upstream's realm.

Docker Hub answers `Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`;
clients must reach that realm through the mirror, with scopes naming the repository as the
upstream knows it (`library/nginx`), asking for pull only (token_request.py). Anonymous
pings and tokens are answered from what the mirror learned a moment ago (challenges.py,
token_cache.py). When the upstream or its token service cannot be reached, pings are
answered from the challenge last learned and token requests with a token the mirror signs
itself (offline_tokens.py), so that clients can still pull from the cache.
"""

import base64
import time
import urllib.parse
import weakref
from collections.abc import Callable

from mitmproxy import ctx, http

from .. import errors
from ..answers import answer, bad_upstream, refuse, replace_bad_upstream
from ..record import outcome, route
from ..routing import names
from ..routing.catalog import Registry
from ..routing.router import Router
from ..routing.table import realm_url, strip_prefix
from ..transport.outbound import RealmPins
from ..transport.side_requests import SideRequests
from ..transport.upstream import UpstreamConnections
from . import carried_tokens, offline_tokens
from .challenge import Challenge
from .challenges import CHALLENGE_TTL, NO_TOKEN_AUTH, mirror_challenge, offline_ping, ping_answer
from .client_auth import bearer_token
from .provenance import ANONYMOUS, CLIENT, ROUTE, Provenances
from .realm_probe import ProbeFailed, RealmProbe
from .token_answers import mirror_token, parse_token_answer, rewrite_tokens, strip_refresh_token
from .token_cache import TokenCache
from .token_request import (
    InvalidTokenRequest,
    Scopes,
    parse_form,
    requested_scopes,
    token_form,
    token_url,
)

API_VERSION = "Docker-Distribution-Api-Version"
BY = "token proxy"


def renamer(registry: Registry) -> Callable[[str], str]:
    """Client names in scopes -> the upstream's (`docker.io/nginx` -> `library/nginx`)."""
    if registry.dockerhub:
        return lambda name: names.with_library(strip_prefix(name, registry))
    return lambda name: strip_prefix(name, registry)


def basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class TokenAuth:
    def __init__(
        self, router: Router, connections: UpstreamConnections, side: SideRequests
    ) -> None:
        self.router, self.connections, self.side = router, connections, side
        # upstream base URL -> its Bearer challenge (realm, service), or NO_TOKEN_AUTH
        self.challenges: dict[str, Challenge] = {}
        # upstream base URL -> time.monotonic() when the upstream last sent its challenge
        self.challenged: dict[str, float] = {}
        self.tokens = TokenCache()
        self.realms = RealmPins()
        self.probe = RealmProbe(side)
        # how the tokens handed out were obtained, for the cache (auth/provenance.py)
        self.provenances = Provenances()
        self._obtained: weakref.WeakKeyDictionary[http.HTTPFlow, str] = weakref.WeakKeyDictionary()

    async def done(self) -> None:
        await self.side.close()

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        r = route(flow)
        if flow.response or flow.error or not r:
            return
        self._take_offline_token(flow)
        self._take_carried_token(flow)
        if r["op"] == names.PING:
            return await self._answer_ping(flow, r)
        if r["op"] != names.TOKEN:
            return
        registry = self.router.registry(flow)
        challenge = await self._challenge(flow, registry)
        if challenge is None:
            return
        if challenge is NO_TOKEN_AUTH:
            if outcome(flow).get("client"):  # authenticated by the mirror: its own token
                self._obtained[flow] = ANONYMOUS  # the upstream itself asks for none
                return answer(flow, mirror_token(time.time()), BY)
            message = f"{registry.upstream.base} does not use token auth"
            return refuse(flow, BY, 404, errors.UNSUPPORTED, message)
        realm, service = challenge.params["realm"], challenge.params.get("service", "")
        if await self.realms.refused(flow, registry, realm):
            return
        req = flow.request
        if req.method == "GET":
            params = list(req.query.items(multi=True))
            try:
                url, scopes = token_url(realm, service, params, self._scopes(registry))
            except InvalidTokenRequest as e:
                return refuse(flow, BY, 400, errors.UNSUPPORTED, str(e))
            if requested_scopes(params) and not scopes:
                return refuse(flow, BY, 403, errors.DENIED, "no scope asked for is served here")
            req.url = url
            # The client's own credentials (docker login) win over the route's, which go
            # only with GET: the OAuth2 form carries the client's own.
            self._obtained[flow] = CLIENT if "Authorization" in req.headers else ANONYMOUS
            if registry.credentials and "Authorization" not in req.headers:
                req.headers["Authorization"] = basic_auth(*registry.credentials)
                self._obtained[flow] = ROUTE
        else:
            req.url = realm
            self._obtained[flow] = CLIENT
        req.host_header = urllib.parse.urlsplit(req.url).netloc
        outcome(flow)["realm"] = req.host_header
        anonymous = req.method == "GET" and "Authorization" not in req.headers
        if anonymous and (shared := self.tokens.answer(req.url, time.time())):
            return answer(flow, shared, "token cache")
        realm_host = urllib.parse.urlsplit(realm)
        port = realm_host.port or (443 if realm_host.scheme == "https" else 80)
        if error := await self.connections.unreachable(realm_host.hostname or "", port, False):
            self._answer_offline(flow, error)

    def _answer_offline(self, flow: http.HTTPFlow, error: str) -> None:
        """The token service cannot be reached: a token of the mirror's own, which reads as
        anonymous (offline_tokens.py)."""
        now = time.time()
        self._obtained[flow] = ANONYMOUS
        outcome(flow)["offline"] = error
        answer(flow, mirror_token(now, offline_tokens.mint(self.router.signer.key, now)), BY)

    def _take_offline_token(self, flow: http.HTTPFlow) -> None:
        """A token the mirror signed itself never goes upstream: the request goes on as
        anonymous, and the cache knows that the client could get no other."""
        token = bearer_token(flow.request.headers.get("Authorization", ""))
        if not offline_tokens.is_offline(token):
            return
        del flow.request.headers["Authorization"]
        if offline_tokens.valid(self.router.signer.key, token, time.time()):
            outcome(flow)["offline"] = "the client holds an offline token"

    def _take_carried_token(self, flow: http.HTTPFlow) -> None:
        """A wrapped token (carried_tokens.py): the upstream's own goes on, and its
        provenance is known here too. One this replica cannot open goes nowhere: the request
        reads as anonymous, and the upstream's 401 sends the client for a new token."""
        headers = flow.request.headers
        token = bearer_token(headers.get("Authorization", ""))
        if not carried_tokens.is_carried(token):
            return
        now = time.time()
        carried = carried_tokens.open_token(self.router.signer.key, token, now)
        if carried is None:
            del headers["Authorization"]
            return
        headers["Authorization"] = f"Bearer {carried.upstream}"
        self.provenances.add(carried.upstream, carried.provenance, carried.expires - now, now)

    async def _challenge(self, flow: http.HTTPFlow, registry: Registry) -> Challenge | None:
        """The upstream's challenge, learned from a 401 or by probing (once per upstream);
        None when the flow has been answered instead."""
        base = registry.upstream.base
        if base in self.challenges:
            return self.challenges[base]
        try:
            challenge = await self.probe.learn(registry.upstream)
        except ProbeFailed as e:
            if e.unreachable:
                return self._answer_offline(flow, str(e))
            return refuse(flow, BY, e.status, errors.UNAVAILABLE, str(e))
        realm = challenge.params.get("realm", "")
        if challenge is not NO_TOKEN_AUTH and (refused := self.realms.learn(registry, realm)):
            return refuse(flow, BY, 502, errors.UNAVAILABLE, refused)
        self.challenges[base] = challenge
        return challenge

    async def _answer_ping(self, flow: http.HTTPFlow, r: dict) -> None:
        """An anonymous client's `/v2/` ping gets the upstream's challenge, as last learned,
        without asking the upstream again. When the upstream cannot be reached, it gets
        that challenge however old, or none (offline pulls)."""
        req = flow.request
        if req.method not in ("GET", "HEAD") or "Authorization" in req.headers:
            return
        head, challenge = req.method == "HEAD", self.challenges.get(r["upstream"])
        learned = self.challenged.get(r["upstream"], float("-inf"))
        resp = ping_answer(challenge, realm_url(r), head)
        if resp and time.monotonic() - learned <= CHALLENGE_TTL:
            return answer(flow, resp, "challenge cache")
        upstream = self.router.registry(flow).upstream
        if error := await self.connections.unreachable(upstream.host, upstream.port, False):
            outcome(flow)["offline"] = error
            answer(flow, *((resp, "challenge cache") if resp else (offline_ping(head), BY)))

    def request(self, flow: http.HTTPFlow) -> None:
        r = route(flow)
        if flow.response or flow.error or not r or r["op"] != names.TOKEN:
            return
        if flow.request.method != "POST":
            return
        challenge = self.challenges.get(r["upstream"])
        service = challenge.params.get("service", "") if challenge else ""
        registry = self.router.registry(flow)
        try:
            form = parse_form(flow.request.get_content(strict=False) or b"")
            text, scopes = token_form(form, service, self._scopes(registry))
        except InvalidTokenRequest as e:
            return refuse(flow, BY, 400, errors.UNSUPPORTED, str(e))
        if requested_scopes(form) and not scopes:
            return refuse(flow, BY, 403, errors.DENIED, "no scope asked for is served here")
        flow.request.content = text.encode()

    @staticmethod
    def _scopes(registry: Registry) -> Scopes:
        return Scopes(renamer(registry), registry.allows, ctx.options.regmirror_catalog)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        r = route(flow)
        resp = flow.response
        if not resp or not r or r["op"] not in names.API_KINDS or r.get("via"):
            return
        if r["op"] == names.PING and API_VERSION not in resp.headers:
            resp.headers[API_VERSION] = "registry/2.0"
        if resp.status_code != 401 or "answered_by" in outcome(flow):
            return
        try:
            rewritten = mirror_challenge(resp.headers.get("WWW-Authenticate", ""), realm_url(r))
        except ValueError as e:
            return bad_upstream(flow, f"upstream {r['upstream']} sent a broken auth challenge: {e}")
        if rewritten:
            registry = self.router.registry(flow)
            if refused := self.realms.learn(registry, rewritten[0].params["realm"]):
                return bad_upstream(flow, refused)
            self.challenges[r["upstream"]], resp.headers["WWW-Authenticate"] = rewritten
            self.challenged[r["upstream"]] = time.monotonic()

    def response(self, flow: http.HTTPFlow) -> None:
        r = route(flow)
        resp = flow.response
        if not r or not resp or resp.stream:
            return
        if r["op"] == names.TOKEN and "answered_by" not in outcome(flow):
            self._remember_token(flow)
            strip_refresh_token(resp)
        if r["op"] == names.TOKEN and resp.status_code == 200:
            self._carry(flow, self._remember_provenance(flow))
        replace_bad_upstream(flow)

    def _remember_provenance(self, flow: http.HTTPFlow) -> str:
        """Record how the answer's tokens were obtained; returns it."""
        assert flow.response is not None
        kind = self._obtained.get(flow)
        if kind is None:  # shared from the token cache: an anonymous token
            kind = ANONYMOUS if outcome(flow).get("answered_by") == "token cache" else CLIENT
        if answer_ := parse_token_answer(flow.response.content or b""):
            for token in answer_.tokens:
                self.provenances.add(token, kind, answer_.lifetime, time.time())
        return kind

    def _carry(self, flow: http.HTTPFlow, kind: str) -> None:
        """With a secret the replicas share, an anonymous or route token goes out wrapped
        with its provenance (carried_tokens.py); not the mirror's own tokens (offline ones,
        and under client auth those of client_tokens.py)."""
        assert flow.response is not None
        if not self.router.signer.configured or kind == CLIENT or outcome(flow).get("client"):
            return
        if outcome(flow).get("answered_by") == BY:
            return
        key, now = self.router.signer.key, time.time()

        def wrap(token: str, lifetime: float) -> str:
            return carried_tokens.mint(key, kind, token, lifetime, now)

        rewrite_tokens(flow.response, wrap)

    def _remember_token(self, flow: http.HTTPFlow) -> None:
        """Keep an anonymous token answer from the upstream's realm for other clients."""
        req, resp = flow.request, flow.response
        assert resp is not None
        if req.method != "GET" or "Authorization" in req.headers or resp.status_code != 200:
            return
        self.tokens.remember(req.url, resp.content or b"", time.time())
