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

from . import errors
from .flowinfo import REDIRECT, FlowInfo, info
from .resolve import HOST, client_path
from .router import REDIRECT_PATH

TTL = 600  # seconds a signed redirect stays valid; clients follow redirects at once
_LINK_RE = re.compile(r"<([^>]*)>")
_URL_CHARS = "!#$%&'()*+,/:;=?@[]"  # kept as they are by quote(), besides letters, digits, _.-~


def _mac(key: bytes, target: str, expires: str) -> bytes:
    message = f"{expires}\n{target}".encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(hmac.new(key, message, hashlib.sha256).digest()).rstrip(b"=")


def sign(target: str, key: bytes, now: float) -> str:
    """Mirror-local path and query that lead to `target`. Bytes of a Location that is not
    UTF-8 (surrogate-escaped, as mitmproxy decodes headers) travel as they came."""
    expires = str(int(now) + TTL)
    params = {"u": target, "e": expires, "s": _mac(key, target, expires)}
    return f"{REDIRECT_PATH}?{urllib.parse.urlencode(params, errors='surrogateescape')}"


def verify(query: str, key: bytes, now: float) -> str:
    """The target of a signed redirect query. Raises ValueError if forged or expired."""
    q = dict(urllib.parse.parse_qsl(query, errors="surrogateescape"))
    target, expires, mac = q.get("u", ""), q.get("e", ""), q.get("s", "")
    if not (target and expires.isdigit() and mac):
        raise ValueError("incomplete redirect")
    # The MAC covers `e` as written: `e=01600` or `e=١٦٠٠` is not the `e=1600` that was signed.
    if not hmac.compare_digest(mac.encode("utf-8", "surrogatepass"), _mac(key, target, expires)):
        raise ValueError("bad redirect signature")
    if int(expires) < now:
        raise ValueError("redirect expired")
    return target


def rewrite_location(
    location: str,
    request_url: str,
    upstream: str,
    to_client: Callable[[str], str],
    mirror: str,
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
    return mirror + sign(urllib.parse.quote(target, _URL_CHARS, errors="surrogateescape"), key, now)


def rewrite_link(link: str, upstream: str, to_client: Callable[[str], str]) -> str:
    """Point URLs of a `Link` header (tag pagination) that name the upstream at the mirror.
    Relative ones (`</v2/...>`) are left alone."""

    def repl(m: re.Match[str]) -> str:
        url = m[1]
        if url.startswith(upstream + "/v2/"):
            url = to_client(url[len(upstream) :])
        return f"<{url}>"

    return _LINK_RE.sub(repl, link)


def client_url(i: FlowInfo) -> Callable[[str], str]:
    """Upstream `/v2/...` path -> the mirror URL in the style the client used."""

    def to_client(path: str) -> str:
        style, key = i.get("style", HOST), i.get("registry", "")
        return i["mirror"] + client_path(style, i.get("prefix", ""), key, path)

    return to_client


class Redirects:
    def __init__(self) -> None:
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

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        i = info(flow)
        if flow.response or not i or i.get("op") != REDIRECT:
            return
        req = flow.request
        head = req.method == "HEAD"
        if req.method not in ("GET", "HEAD"):
            flow.response = errors.error_response(405, errors.UNSUPPORTED, "GET or HEAD only")
            return
        try:
            target = verify(req.path.partition("?")[2], self.key, time.time())
        except ValueError as e:
            flow.response = errors.error_response(403, errors.DENIED, str(e), head=head)
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
                key,
                time.time(),
            )
        if "Link" in resp.headers:
            resp.headers["Link"] = rewrite_link(resp.headers["Link"], i["upstream"], to_client)
