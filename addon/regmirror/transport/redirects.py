"""Upstream redirects (Docker Hub's blob 307 to a CDN) handled inside the mirror.

By default a `Location` leaving the upstream is rewritten to a mirror-local URL that carries
the target, signed with an HMAC and an expiry, so the mirror is no open relay. The mirror
then fetches the target itself, without the client's `Authorization` (S3-style storage
answers 400 to a request carrying the registry's token).
"""

import base64
import hashlib
import hmac
import os
import re
import time
import urllib.parse
from collections.abc import Callable

from mitmproxy import ctx, exceptions, http

from .. import errors
from ..answers import answer, refusal
from ..flowinfo import REDIRECT, FlowInfo, info
from ..routing.router import REDIRECT_PATH, Router
from ..routing.table import HOST, client_path
from .outbound import redirect_refused

TTL = 600  # seconds a signed redirect stays valid; clients follow redirects at once
_LINK_RE = re.compile(r"<([^>]*)>")
_URL_CHARS = "!#$%&'()*+,/:;=?@[]"  # kept as they are by quote(), besides letters, digits, _.-~


def _mac(key: bytes, registry: str, target: str, expires: str) -> bytes:
    message = f"{expires}\n{registry}\n{target}".encode("utf-8", "surrogateescape")
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=")


def sign(target: str, registry: str, key: bytes, now: float) -> str:
    """Mirror-local path and query that lead to `target`, redirected to by `registry` (its
    key: the target is judged by that registry's policy when followed)."""
    expires = str(int(now) + TTL)
    mac = _mac(key, registry, target, expires).decode()
    query = urllib.parse.urlencode(
        {"u": target, "r": registry, "e": expires, "s": mac}, errors="surrogateescape"
    )
    return f"{REDIRECT_PATH}?{query}"


def verify(query: str, key: bytes, now: float) -> tuple[str, str]:
    """(target, registry) of a signed redirect query. Raises ValueError if forged or expired."""
    q = dict(urllib.parse.parse_qsl(query, errors="surrogateescape"))
    target, registry, expires = q.get("u", ""), q.get("r", ""), q.get("e", "")
    mac = q.get("s", "")
    if not (target and registry and expires.isascii() and expires.isdigit() and mac):
        raise ValueError("incomplete redirect")
    # The MAC covers `e` as written: `e=01600` is not the `e=1600` that was signed.
    given = mac.encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, _mac(key, registry, target, expires)):
        raise ValueError("bad redirect signature")
    if int(expires) < now:
        raise ValueError("redirect expired")
    return target, registry


def rewrite_location(
    location: str,
    request_url: str,
    upstream: str,
    to_client: Callable[[str], str],
    mirror: str,
    registry: str,
    key: bytes | None,
    now: float,
) -> str:
    """What the client should follow instead of an upstream's `Location`.

    Relative locations are resolved against the request. API paths on the upstream itself
    become the mirror's (`to_client` maps an upstream `/v2/...` path to the client's URL);
    others become signed mirror URLs, or stay (absolute) when `key` is None (redirects
    passed through to the client). A Location that is no URL (`http://[x`) leads nowhere
    and stays as it is.
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
    return mirror + sign(quoted, registry, key, now)


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


def client_url(i: FlowInfo) -> Callable[[str], str]:
    """Upstream `/v2/...` path -> the mirror URL in the style the client used."""

    def to_client(path: str) -> str:
        style, key = i.get("style", HOST), i.get("registry", "")
        return i["mirror"] + client_path(style, i.get("prefix", ""), key, path)

    return to_client


class Redirects:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.key = os.urandom(32)

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
            Secret that signs redirect URLs (at least 16 characters). Set the same value on
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
            self.key = secret.encode() if secret else os.urandom(32)

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        i = info(flow)
        if flow.response or not i or i.get("op") != REDIRECT:
            return
        req = flow.request
        if req.method not in ("GET", "HEAD"):
            return answer(flow, refusal(flow, 405, errors.UNSUPPORTED, "GET or HEAD only"))
        try:
            target, name = verify(req.path.partition("?")[2], self.key, time.time())
            registry = self.router.registry(flow, name)
        except (ValueError, KeyError) as e:
            message = f"no registry {e}" if isinstance(e, KeyError) else str(e)
            return answer(flow, refusal(flow, 403, errors.DENIED, message))
        if await redirect_refused(flow, target, registry):
            return
        for h in ("Authorization", "Cookie", "Proxy-Authorization"):
            req.headers.pop(h, None)
        req.url = target
        req.host_header = urllib.parse.urlsplit(target).netloc
        i["target"] = req.host_header

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        i = info(flow)
        resp = flow.response
        if not resp or not i or "upstream" not in i:
            return
        to_client = client_url(i)
        if 300 <= resp.status_code < 400 and "Location" in resp.headers:
            key = self.key if ctx.options.regmirror_redirects == "proxy" else None
            resp.headers["Location"] = rewrite_location(
                resp.headers["Location"],
                flow.request.url,
                i["upstream"],
                to_client,
                i["mirror"],
                i["registry"],
                key,
                time.time(),
            )
        if "Link" in resp.headers:
            link = resp.headers["Link"]
            resp.headers["Link"] = rewrite_link(link, flow.request.url, i["upstream"], to_client)
