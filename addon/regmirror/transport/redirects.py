"""Upstream redirects (Docker Hub's blob 307 to a CDN) handled inside the mirror.

By default a `Location` leaving the upstream is rewritten to a mirror-local URL that carries
the target, signed with an HMAC and an expiry, so the mirror is no open relay. The mirror
then fetches the target itself, without the client's `Authorization` (S3-style storage
answers 400 to a request carrying the registry's token).
"""

import os
import re
import time
import urllib.parse
from collections.abc import Callable

from mitmproxy import ctx, exceptions, http

from ..record import REDIRECT, Route, outcome, route
from ..routing.router import Router
from ..routing.table import HOST, client_path
from .outbound import redirect_refused
from .signing import Origin, sign

_LINK_RE = re.compile(r"<([^>]*)>")
_URL_CHARS = "!#$%&'()*+,/:;=?@[]"  # kept as they are by quote(), besides letters, digits, _.-~


def rewrite_location(
    location: str,
    request_url: str,
    upstream: str,
    to_client: Callable[[str], str],
    mirror: str,
    origin: Origin,
    key: bytes | None,
    now: float,
) -> str:
    """What the client should follow instead of an upstream's `Location`.

    Relative locations are resolved against the request. API paths on the upstream itself
    become the mirror's (`to_client` maps an upstream `/v2/...` path to the client's URL);
    others become signed mirror URLs carrying `origin` (the request redirected), or stay
    (absolute) when `key` is None (redirects passed through to the client). A Location
    that is no URL (`http://[x`) leads nowhere and stays as it is.
    """
    try:
        target = urllib.parse.urljoin(request_url, location)
    except ValueError:
        return location
    if target.startswith(upstream + "/v2/"):
        return to_client(target[len(upstream) :])
    if key is None or not target.startswith(("https://", "http://")):
        return target
    # The mirror fetches the target, and mitmproxy sends only ASCII URLs: the rest (non-ASCII,
    # spaces, bytes that are not UTF-8) is percent-encoded, as browsers do.
    quoted = urllib.parse.quote(target, _URL_CHARS, errors="surrogateescape")
    return mirror + sign(origin._replace(target=quoted), key, now)


def rewrite_link(
    link: str, request_url: str, upstream: str, to_client: Callable[[str], str]
) -> str:
    """Point URLs of a `Link` header (tag and catalogue pagination) that name the upstream's
    API at the mirror, in the client's style. Relative ones (distribution sends
    `</v2/org/app/tags/list?last=b&n=1>`) are resolved against the request first: a
    path-prefix or `ns` client following them as they are would lose its registry.
    A URL that is no URL stays as it is."""

    def repl(m: re.Match[str]) -> str:
        url = m[1]
        if not url.startswith(upstream + "/"):
            try:
                url = urllib.parse.urljoin(request_url, url)
            except ValueError:
                return m[0]
        if url.startswith(upstream + "/v2/"):
            return f"<{to_client(url[len(upstream) :])}>"
        return m[0]

    return _LINK_RE.sub(repl, link)


def client_url(r: Route) -> Callable[[str], str]:
    """Upstream `/v2/...` path -> the mirror URL in the style the client used."""

    def to_client(path: str) -> str:
        style, key = r.get("style", HOST), r.get("registry", "")
        return r["mirror"] + client_path(style, r.get("prefix", ""), key, path)

    return to_client


class Redirects:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.signer = router.signer  # the router verifies what is signed here

    def load(self, loader) -> None:
        loader.add_option(
            "regmirror_redirects",
            str,
            "proxy",
            """
            What to do with upstream redirects that leave the registry (Docker Hub sends
            blobs to a CDN). "proxy": clients follow a signed mirror URL and the mirror
            fetches the target for them, never sending the client's credentials there.
            "pass": clients get the upstream's Location and must reach the target themselves.
            """,
            choices=("proxy", "pass"),
        )
        loader.add_option(
            "regmirror_redirect_secret",
            str,
            "",
            """
            Secret that signs redirect URLs, data-plane blob URLs, offline tokens and the
            tokens of client authentication (at least 16 characters). Set the same value on
            every instance behind one load balancer. Empty: a random secret per process.
            """,
        )

    def configure(self, updated: set[str]) -> None:
        if "regmirror_redirect_secret" in updated:
            secret = ctx.options.regmirror_redirect_secret
            if secret and len(secret) < 16:
                raise exceptions.OptionsError(
                    "regmirror_redirect_secret must be at least 16 characters"
                )
            self.signer.key = secret.encode() if secret else os.urandom(32)
            self.signer.configured = bool(secret)

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        r = route(flow)
        if flow.response or flow.error or not r or r.get("via") != REDIRECT:
            return
        target = r["target"]
        if await redirect_refused(flow, target, self.router.registry(flow)):
            return
        req = flow.request
        for h in ("Authorization", "Cookie", "Proxy-Authorization"):
            req.headers.pop(h, None)
        req.url = target
        req.host_header = urllib.parse.urlsplit(target).netloc

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        r = route(flow)
        resp = flow.response
        if not resp or not r or "upstream" not in r or r.get("via"):
            return
        if outcome(flow).get("answered_by"):  # the mirror's own answer (the data plane's 307)
            return
        to_client = client_url(r)
        if 300 <= resp.status_code < 400 and "Location" in resp.headers:
            key = self.signer.key if ctx.options.regmirror_redirects == "proxy" else None
            origin = Origin(
                "", r["registry"], r["op"], r.get("name", ""), r.get("reference", ""),
                outcome(flow).get("provenance", ""),
            )  # fmt: skip
            resp.headers["Location"] = rewrite_location(
                resp.headers["Location"],
                flow.request.url,
                r["upstream"],
                to_client,
                r["mirror"],
                origin,
                key,
                time.time(),
            )
        if "Link" in resp.headers:
            link = resp.headers["Link"]
            resp.headers["Link"] = rewrite_link(link, flow.request.url, r["upstream"], to_client)
