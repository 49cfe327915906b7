"""Routes: which upstream registry serves a client-facing host, and the mirror's own URL."""

import ipaddress
import re
import urllib.parse
from collections.abc import Iterable
from typing import NamedTuple

DOCKER_HUB_HOSTS = ("registry-1.docker.io", "index.docker.io", "docker.io")

_HOST_RE = re.compile(r"(?:[A-Za-z0-9.\-]+|\[(?P<ipv6>[0-9A-Fa-f:.]+)\])(?::(?P<port>[0-9]{1,5}))?")


class Upstream(NamedTuple):
    scheme: str
    host: str
    port: int
    dockerhub: bool = False

    @property
    def hostport(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.hostport}"


def parse_upstream(url: str, dockerhub_hosts: Iterable[str] = DOCKER_HUB_HOSTS) -> Upstream:
    """`https://registry-1.docker.io` -> Upstream. Raises ValueError."""
    u = urllib.parse.urlsplit(url.strip())
    # urlsplit keeps spaces and control characters in the host: `http://a b` is no URL
    bad_host = not u.hostname or " " in u.netloc or not u.netloc.isprintable()
    if u.scheme not in ("http", "https") or bad_host:
        raise ValueError(f"upstream must be an http(s) URL, not {url!r}")
    if u.path not in ("", "/") or u.query or u.fragment or "@" in u.netloc:
        raise ValueError(f"upstream must be scheme://host[:port] only, not {url!r}")
    port = u.port or (443 if u.scheme == "https" else 80)
    hub = {h.lower() for h in dockerhub_hosts}
    hostport = u.netloc.lower()
    return Upstream(u.scheme, u.hostname, port, u.hostname in hub or hostport in hub)


def parse_route(
    spec: str, dockerhub_hosts: Iterable[str] = DOCKER_HUB_HOSTS
) -> tuple[str, Upstream]:
    """`mirror.example.com=https://registry-1.docker.io` -> (host, Upstream). Raises ValueError."""
    host, sep, url = spec.partition("=")
    host = host.strip().lower()
    if not sep or not host or not valid_host(host):
        raise ValueError(f"route must be HOST=URL, not {spec!r}")
    return host, parse_upstream(url, dockerhub_hosts)


def valid_host(host: str) -> bool:
    """`name[:port]` or `[IPv6 address][:port]`, ASCII only, as URLs take them."""
    m = _HOST_RE.fullmatch(host)
    if m is None or (m["port"] and int(m["port"]) > 65535):
        return False
    if m["ipv6"]:
        try:
            ipaddress.IPv6Address(m["ipv6"])
        except ValueError:
            return False
    return True


def mirror_base(
    tls: bool, host: str, forwarded_proto: str | None = None, forwarded_host: str | None = None
) -> str:
    """The mirror's URL as the client sees it, e.g. `https://mirror.example.com`.

    `forwarded_*` are the first values of X-Forwarded-Proto/-Host, passed only when the
    operator trusts a proxy in front. Raises ValueError for a malformed host.
    """
    scheme = "https" if tls else "http"
    if forwarded_proto:
        proto = forwarded_proto.split(",")[0].strip().lower()
        if proto not in ("http", "https"):
            raise ValueError(f"invalid X-Forwarded-Proto {proto[:50]!r}")
        scheme = proto
    if forwarded_host:
        host = forwarded_host.split(",")[0].strip()
    if not valid_host(host):
        raise ValueError(f"invalid host {host[:100]!r}")
    return f"{scheme}://{host}"
