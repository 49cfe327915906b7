"""Signed redirect URLs: `/_regmirror/redirect?u=TARGET&...` that lead a client to where an
upstream redirected it, with the request it came from (registry, operation, repository,
reference), under an HMAC and an expiry, so the mirror is no open relay and a followed
redirect keeps its route. `mac()` is the HMAC of every URL the mirror signs (the cache's
data plane signs its blob URLs with it too, cache/blob_urls.py). Pure."""

import base64
import hashlib
import hmac
import json
import os
import urllib.parse
from collections.abc import Iterable
from typing import NamedTuple

REDIRECT_PATH = "/_regmirror/redirect"
TTL = 600  # seconds a signed redirect stays valid; clients follow redirects at once
_FIELDS = ("u", "r", "k", "n", "d", "p")  # target, registry, op, name, reference, provenance


class Origin(NamedTuple):
    """Where a redirect leads, and the request it answered."""

    target: str
    registry: str  # its key: the registry whose redirect policy judges the target
    op: str  # blob or manifest
    name: str
    reference: str
    provenance: str = ""  # how the redirected request was authorized (auth/provenance.py)


def mac(key: bytes, parts: Iterable[str]) -> bytes:
    """The URL-safe HMAC-SHA256 of `parts`, one per line. Each kind of signed URL starts its
    parts differently (a redirect with its expiry, digits only; a data-plane blob URL with a
    word), so no signature of one kind is valid as the other."""
    message = "\n".join(parts).encode("utf-8", "surrogateescape")
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=")


def seal(key: bytes, kind: str, fields: list[object]) -> str:
    """`<base64url JSON of fields>.<MAC>`: the payload of the mirror's own tokens; `kind`
    is signed first, so a sealed value of one kind is never valid as another."""
    payload = base64.urlsafe_b64encode(json.dumps(fields).encode()).rstrip(b"=").decode()
    return f"{payload}.{mac(key, (kind, payload)).decode()}"


def unseal(key: bytes, kind: str, sealed: str) -> list[object] | None:
    """The fields of a value `seal` made with `key` and `kind`; None for anything else,
    however malformed (undecodable bytes arrive as surrogates)."""
    payload, _, signature = sealed.partition(".")
    if not (payload.isascii() and signature.isascii()):
        return None
    if not hmac.compare_digest(signature.encode(), mac(key, (kind, payload))):
        return None
    try:
        fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:  # not written by this version of the mirror
        return None
    return fields if isinstance(fields, list) else None


def _mac(key: bytes, origin: Origin, expires: str) -> bytes:
    return mac(key, (expires, *origin))


def sign(origin: Origin, key: bytes, now: float) -> str:
    """Mirror-local path and query that lead to `origin.target`."""
    expires = str(int(now) + TTL)
    params = dict(zip(_FIELDS, origin, strict=True))
    params |= {"e": expires, "s": _mac(key, origin, expires).decode()}
    return f"{REDIRECT_PATH}?{urllib.parse.urlencode(params, errors='surrogateescape')}"


def verify(query: str, key: bytes, now: float) -> Origin:
    """The origin of a signed redirect query. Raises ValueError if forged or expired."""
    q = dict(urllib.parse.parse_qsl(query, errors="surrogateescape"))
    origin = Origin(*(q.get(f, "") for f in _FIELDS))
    expires, mac = q.get("e", ""), q.get("s", "")
    if not (origin.target and origin.registry and expires.isascii() and expires.isdigit()):
        raise ValueError("incomplete redirect")
    # The MAC covers `e` as written: `e=01600` is not the `e=1600` that was signed.
    if not hmac.compare_digest(mac.encode("utf-8", "surrogateescape"), _mac(key, origin, expires)):
        raise ValueError("bad redirect signature")
    if int(expires) < now:
        raise ValueError("redirect expired")
    return origin


class Signer:
    """The secret that signs redirect URLs, shared by the router (which verifies them) and
    the redirects addon (which hands them out and sets the secret from its option)."""

    def __init__(self) -> None:
        self.key = os.urandom(32)
        self.configured = False  # set by an option, so shared with other replicas

    def sign(self, origin: Origin, now: float) -> str:
        return sign(origin, self.key, now)

    def verify(self, query: str, now: float) -> Origin:
        return verify(query, self.key, now)
