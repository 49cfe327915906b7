"""Checks before the mirror sends a request where an upstream pointed it (a token realm, a
redirect target): host names are resolved without blocking the event loop, targets.py
decides, and a refusal is logged and answered with 502 in the registry's format."""

import asyncio
import logging
import socket
import urllib.parse
from collections.abc import Collection

from mitmproxy import ctx, http

from .. import answers, errors
from ..routing.catalog import Registry
from . import targets

logger = logging.getLogger(__name__)


async def resolve(host: str, timeout: float) -> list[str]:
    """Every address `host` resolves to; [] when it does not resolve within `timeout` s."""
    loop = asyncio.get_running_loop()
    try:
        found = await asyncio.wait_for(
            loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout
        )
    except (OSError, TimeoutError, UnicodeError):  # UnicodeError: not IDNA ("a..b")
        return []
    return [str(info[4][0]) for info in found]


async def _addresses(url: str, registry_host: str, listed: Collection[str]) -> list[str] | None:
    if not targets.needs_addresses(url, registry_host, listed):
        return None
    return await resolve(targets.host_of(url), ctx.options.regmirror_upstream_timeout)


def where(url: str) -> str:
    """A target for messages: scheme, host, port and path; no credentials or query."""
    try:
        u = urllib.parse.urlsplit(url)
    except ValueError:
        return repr(url[:100])
    return f"{u.scheme}://{u.netloc.rpartition('@')[2]}{u.path}"[:200]


def refuse(flow: http.HTTPFlow, message: str) -> None:
    logger.warning(message)
    answers.refuse(flow, "outbound", 502, errors.UNAVAILABLE, message)


async def redirect_refused(flow: http.HTTPFlow, target: str, registry: Registry) -> bool:
    """Answer with 502 and return True when `registry`'s redirect to `target` is refused."""
    addresses = await _addresses(target, registry.upstream.host, registry.redirect_hosts)
    reason = targets.redirect_refusal(target, registry, addresses)
    if reason:
        refuse(flow, f"redirect of {registry.key} to {where(target)} refused: {reason}")
    return reason is not None


class RealmPins:
    """The realm host each upstream's token requests, and the route's credentials, may go
    to: the registry's `realm_hosts`, else the host of the first realm it named. Per
    process: a restart learns again."""

    def __init__(self) -> None:
        self.hosts: dict[str, str] = {}  # upstream base URL -> realm host

    def learn(self, registry: Registry, realm: str) -> str | None:
        """Why the realm an upstream just named is refused (judged without DNS; it is judged
        again before use), or None. The first realm allowed is pinned."""
        base = registry.upstream.base
        reason = targets.realm_refusal(realm, registry, self.hosts.get(base, ""), None)
        if reason:
            message = f"token realm {where(realm)} of {registry.key} refused: {reason}"
            logger.warning(message)
            return message
        if not registry.realm_hosts:
            self.hosts.setdefault(base, targets.host_of(realm))
        return None

    async def refused(self, flow: http.HTTPFlow, registry: Registry, realm: str) -> bool:
        """Answer with 502 and return True when a token request may not go to `realm`."""
        addresses = await _addresses(realm, registry.upstream.host, registry.realm_hosts)
        pinned = self.hosts.get(registry.upstream.base, "")
        reason = targets.realm_refusal(realm, registry, pinned, addresses)
        if reason:
            refuse(flow, f"token realm {where(realm)} of {registry.key} refused: {reason}")
        return reason is not None
