"""The data plane's URLs, as pure functions: where it listens (`regmirror_blob_listen`), the
base URL clients reach it by (`regmirror_blob_url`, or the one they used for the mirror with
the data plane's port), and the signed URL of one cached blob.

A blob URL is `BASE/blobs/<digest>?r=REGISTRY&n=REPOSITORY&u=UPSTREAM&t=TYPE&l=SIZE&e=&s=`:
the HMAC (transport/signing.py's, with the same secret as redirect URLs) covers every field
and the expiry, so it leads to that digest only, for the repository the mirror decided this
client may read, and only for TTL seconds. It carries what the data plane answers and counts
by (media type, size, the upstream route), so serving it needs no index lookup.
"""

import hmac
import ipaddress
import urllib.parse
from typing import NamedTuple

from ..routing.upstreams import valid_host
from ..transport.signing import mac

PATH = "/blobs/"
# Seconds a blob URL is valid: clients follow a 307 at once. A transfer that has begun runs on.
TTL = 60
_KIND = "data-plane blob"  # the first signed line: no redirect URL's signature is valid here
_FIELDS = ("r", "n", "u", "t", "l")


class Blob(NamedTuple):
    """A cached blob that a client may read, as its signed URL carries it."""

    digest: str
    registry: str  # its key, for the log line: docker.io
    name: str  # the repository as the upstream knows it: library/nginx
    upstream: str  # the route's upstream base URL, the metrics' route label
    media_type: str
    size: int


def _parts(blob: Blob, expires: str) -> tuple[str, ...]:
    return (_KIND, expires, blob.digest, blob.registry, blob.name, blob.upstream,
            blob.media_type, str(blob.size))  # fmt: skip


def sign(blob: Blob, key: bytes, now: float) -> str:
    """The data-plane path and query of `blob`, valid for TTL seconds from `now`."""
    expires = str(int(now) + TTL)
    values = (blob.registry, blob.name, blob.upstream, blob.media_type, str(blob.size))
    params = dict(zip(_FIELDS, values, strict=True))
    params |= {"e": expires, "s": mac(key, _parts(blob, expires)).decode()}
    query = urllib.parse.urlencode(params, errors="surrogateescape")
    return f"{PATH}{blob.digest}?{query}"


def verify(digest: str, query: str, key: bytes, now: float) -> Blob:
    """The blob a signed data-plane URL leads to (`digest` from its path, `query` as sent).
    Raises ValueError when it is incomplete, forged, for another digest, or expired."""
    q = dict(urllib.parse.parse_qsl(query, errors="surrogateescape"))
    registry, name, upstream, media_type, size = (q.get(f, "") for f in _FIELDS)
    expires, signature = q.get("e", ""), q.get("s", "")
    numbers = f"{size}{expires}"
    if not (registry and name and numbers.isascii() and size.isdigit() and expires.isdigit()):
        raise ValueError("incomplete blob URL")
    blob = Blob(digest, registry, name, upstream, media_type, int(size))
    # The MAC covers the numbers as written: `l=08` is not the `l=8` that was signed.
    expected = mac(key, (_KIND, expires, digest, registry, name, upstream, media_type, size))
    if not hmac.compare_digest(signature.encode("utf-8", "surrogateescape"), expected):
        raise ValueError("bad blob URL signature")
    if int(expires) < now:
        raise ValueError("blob URL expired")
    return blob


def parse_listen(text: str) -> tuple[str, int] | None:
    """`regmirror_blob_listen`: `[host:]port` -> (host, port), host "" for every interface;
    empty -> None (no data plane). `[::1]:5001` for IPv6; port 0 lets the kernel choose.
    Raises ValueError."""
    text = text.strip()
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)  # raises ValueError
    elif host and not valid_host(host):
        raise ValueError(f"not a host: {host[:100]!r}")
    if not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise ValueError(f"give [host:]port, not {text[:100]!r}")
    return host, int(port)


def parse_base_url(text: str) -> str:
    """`regmirror_blob_url`: `scheme://host[:port]` (http or https, no path), without a
    trailing slash; empty stays empty (the default base). Raises ValueError."""
    text = text.strip().rstrip("/")
    if not text:
        return ""
    u = urllib.parse.urlsplit(text)
    if u.scheme not in ("http", "https") or not u.netloc or not valid_host(u.netloc):
        raise ValueError(f"give scheme://host[:port] (http or https), not {text[:100]!r}")
    if u.path or u.query or u.fragment:
        raise ValueError(f"give scheme://host[:port] only, no path: {text[:100]!r}")
    return f"{u.scheme}://{u.netloc}"


def default_base(mirror: str, port: int) -> str:
    """The base URL of the data plane as a client of `mirror` (its base URL, as the router
    wrote it in the route) reaches it: the same scheme and host, the data plane's port."""
    u = urllib.parse.urlsplit(mirror)
    host = u.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{u.scheme}://{host}:{port}"
