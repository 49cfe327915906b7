"""Which upstream registry a request is for. Pure: no mitmproxy.

Three addressing styles work together, most specific first:
1. path prefix: `/v2/ghcr.io/org/app/...` (registries.conf mirror locations, containerd
   `override_path`, DaoCloud-style mirrors);
2. containerd's `?ns=ghcr.io`;
3. the Host the client used: an explicit host map, then `<subdomain>.<domain>`
   (`ghcr.mirror.example`), then the default registry.
A path prefix and an `ns` that name different registries are ambiguous and refused.
"""

import urllib.parse
from collections.abc import Mapping
from typing import NamedTuple

from .catalog import Registry
from .config import Config
from .names import with_library

HOST = "host"
PATH = "path"
NS = "ns"


class NoRoute(LookupError):
    """No registry, or more than one, fits the request."""


class Resolved(NamedTuple):
    registry: Registry
    style: str  # HOST, PATH or NS: how the client addressed the registry
    name: str  # repository as the upstream knows it ("" for /v2/ and the like)
    prefix: str = ""  # the path prefix the client used (PATH style)


class Table:
    def __init__(
        self,
        config: Config,
        extra_hosts: dict[str, Registry] | None = None,
        fallback: Registry | None = None,
    ):
        """`extra_hosts`: host -> registry from the regmirror_routes option. `fallback`: the
        registry when nothing else routes (the --mode reverse target), unless the config
        names a default.

        An upstream that the configuration already knows is that registry, with its name,
        allow/deny lists and credentials: `--mode reverse:https://registry-1.docker.io` and
        `hub.local=https://registry-1.docker.io` are the catalogue's docker.io."""
        known = {}
        for r in reversed(config.registries.values()):
            known[r.upstream.base] = r  # the first entry wins for a shared upstream
        extra = {h: known.get(r.upstream.base, r) for h, r in (extra_hosts or {}).items()}
        self.registries = {**config.registries, **{r.key: r for r in extra.values()}}
        if fallback:
            fallback = known.get(fallback.upstream.base, fallback)
            self.registries.setdefault(fallback.key, fallback)
        self.names = {n: r for r in self.registries.values() for n in (r.key, *r.aliases)}
        self.hosts = {h: self.names[k] for h, k in config.hosts.items()} | extra
        self.subdomains = {r.subdomain: r for r in config.registries.values() if r.subdomain}
        self.domain = config.domain
        self.default = self.names[config.default] if config.default else fallback

    def by_host(self, host: str) -> Registry | None:
        host = host.lower()
        name = host if host.endswith("]") else host.rsplit(":", 1)[0]
        if found := self.hosts.get(host) or self.hosts.get(name):
            return found
        if self.domain and name.endswith("." + self.domain):
            label = name[: -len(self.domain) - 1]
            if label not in self.subdomains:
                raise NoRoute(f"no registry for subdomain {label!r} of {self.domain}")
            return self.subdomains[label]
        return self.names.get(name) or self.default

    def resolve(self, host: str, name: str = "", ns: str = "") -> "Resolved":
        """Route a request for repository `name` (as the client wrote it). Raises NoRoute."""
        first, _, rest = name.partition("/")
        by_path = self.names.get(first) if rest else None
        by_ns = None
        if ns:
            by_ns = self.names.get(ns.lower())
            if by_ns is None:
                raise NoRoute(f"unknown registry {ns[:100]!r} in ns")
        if by_path and by_ns and by_path is not by_ns:
            raise NoRoute(f"ambiguous: the path names {first}, ns names {ns}")
        registry = by_path or by_ns or self.by_host(host)
        if registry is None:
            raise NoRoute(f"no route for host {host[:100]}")
        if by_path:
            name = rest
        elif registry.dockerhub and rest and ("." in first or ":" in first):
            raise NoRoute(f"unknown registry {first!r}")  # Docker Hub names have no dots there
        if registry.dockerhub and name:
            name = with_library(name)
        style = PATH if by_path else NS if by_ns else HOST
        return Resolved(registry, style, name, first if by_path else "")

    def listing(self) -> list[str]:
        """The routes by registry name, for 404 answers: never the upstreams' URLs."""
        out = [f"{h} -> {r.key}" for h, r in sorted(self.hosts.items())]
        if self.domain:
            out += [f"{s}.{self.domain} -> {r.key}" for s, r in sorted(self.subdomains.items())]
        out += [f"/v2/{k}/... or ?ns={k}" for k in sorted(self.registries)]
        if self.default:
            out.append(f"default -> {self.default.key}")
        return out


def strip_prefix(name: str, registry: Registry) -> str:
    """`ghcr.io/org/app` -> `org/app` when the client's name carries the registry's prefix."""
    first, _, rest = name.partition("/")
    return rest if rest and first in (registry.key, *registry.aliases) else name


def client_path(route_style: str, prefix: str, key: str, upstream_path: str) -> str:
    """An upstream `/v2/...` path (with query) as the client must ask the mirror for it, in
    the style the client used: `/v2/org/app/...`, `/v2/ghcr.io/org/app/...`, or with
    `ns=ghcr.io` added."""
    if route_style == PATH and upstream_path.startswith("/v2/"):
        return f"/v2/{prefix}/{upstream_path[4:]}"
    query = urllib.parse.parse_qsl(upstream_path.partition("?")[2], keep_blank_values=True)
    if route_style == NS and all(k != "ns" for k, _ in query):
        return upstream_path + ("&" if "?" in upstream_path else "?") + f"ns={key}"
    return upstream_path


def realm_url(route: Mapping[str, str]) -> str:
    """The mirror's token endpoint for a routed request (its `mirror`, `style` and
    `registry`): host routes use `/v2/auth`; path and ns routes name the registry, since
    the token request carries neither."""
    style, key = route.get("style", HOST), route.get("registry", "")
    return route["mirror"] + ("/v2/auth" if style == HOST else f"/v2/auth/{key}")
