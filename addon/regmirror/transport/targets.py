"""Where the mirror may send a request because an upstream said so: the realm of a Bearer
challenge and the target of a redirect. Pure: the caller resolves host names.

Without this, an upstream (malicious, compromised, or tampered with on the way) could name
`realm="http://169.254.169.254/latest/meta-data/"` and have the mirror fetch it, with the
route's credentials, and hand the answer to the client. So a target inside the mirror's
network (loopback, private, link-local, unique-local, CGNAT ...) is refused, unless it is on
the registry's own host (a lab registry with its token service beside it) or the config
lists it for that registry (`realm_hosts`, `redirect_hosts`). Host names count by every
address they resolve to.

"Same host" means the same host name or IP address as written in the registry's URL, any
port: `localhost` and `127.0.0.1` are different hosts, and a private registry URL opens no
other private host. Realms are also pinned: a registry's realm must stay on its
`realm_hosts` (built in or configured) or, without them, on the host of the first realm
learned, so the route's credentials never follow a realm elsewhere.
"""

import ipaddress
import re
import urllib.parse
from collections.abc import Collection, Sequence

from ..routing.catalog import Registry

_HOSTNAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
# NAT64 (RFC 6052): the last 32 bits are the IPv4 address a DNS64 resolver translated.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def normal_host(host: str) -> str:
    """A host as the policy compares it: lower case, without brackets or a trailing dot, an
    IP address in one spelling (`0:0::1` -> `::1`, `::ffff:127.0.0.1` -> `127.0.0.1`)."""
    host = host.strip("[]").rstrip(".").lower()
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return str(mapped or ip)


def valid_host(host: str) -> bool:
    """A host name or an IP address, without port (config: `realm_hosts`, `redirect_hosts`)."""
    return is_ip(host.strip("[]")) or _HOSTNAME_RE.fullmatch(host.rstrip(".").lower()) is not None


def host_of(url: str) -> str:
    """The normalized host of an http(s) URL; "" for anything else."""
    try:
        u = urllib.parse.urlsplit(url)
        u.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:  # also for "Invalid IPv6 URL"
        return ""
    if u.scheme not in ("http", "https") or not u.hostname:
        return ""
    return normal_host(u.hostname)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def internal(address: str) -> bool:
    """Whether an IP address (as getaddrinfo gives it, IPv6 zone included) is anything but a
    public unicast address: loopback, private, link-local, unique-local, CGNAT 100.64/10,
    unspecified (0.0.0.0 reaches the local host), multicast, reserved. IPv6 forms that carry
    an IPv4 address (mapped, 6to4, NAT64) are judged by that address."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return internal(str(embedded))
    # is_global is False for the private, CGNAT and special-purpose ranges; multicast and
    # the reserved IPv6 space (IPv4-compatible ::a.b.c.d) count as global to ipaddress.
    return not ip.is_global or ip.is_multicast or ip.is_reserved


def exempt(host: str, registry_host: str, listed: Collection[str]) -> bool:
    """The registry's own host, or one the config lists for it."""
    return host == normal_host(registry_host) or host in {normal_host(h) for h in listed}


def needs_addresses(url: str, registry_host: str, listed: Collection[str]) -> bool:
    """Whether `refusal` must know what the URL's host resolves to."""
    host = host_of(url)
    return bool(host) and not is_ip(host) and not exempt(host, registry_host, listed)


def refusal(
    url: str, registry_host: str, listed: Collection[str], addresses: Sequence[str] | None
) -> str | None:
    """Why the mirror must not send a request to `url` for a registry whose upstream host is
    `registry_host`, or None.

    `listed`: the hosts the config allows for this kind of target; `addresses`: what the
    URL's host resolves to ([] when it does not resolve), or None when not resolved yet: then
    only a host written as an IP address is judged.
    """
    host = host_of(url)
    if not host:
        return f"not an http(s) URL: {url[:100]!r}"
    if exempt(host, registry_host, listed):
        return None
    if is_ip(host):
        addresses = [host]
    elif addresses is None:
        return None
    if not addresses:
        return f"{host} does not resolve"
    inside = sorted({a for a in addresses if internal(a)})
    if not inside:
        return None
    if inside == [host]:
        return f"{host} is an internal address"
    return f"{host} resolves to an internal address ({', '.join(inside)})"


def realm_refusal(
    realm: str, registry: Registry, pinned: str, addresses: Sequence[str] | None
) -> str | None:
    """Why a token realm is refused for `registry`, or None. `pinned`: the host of the
    first realm learned for it ("" if none), which binds only without `realm_hosts`."""
    host = host_of(realm)
    allowed = registry.realm_hosts or ((pinned,) if pinned else ())
    if host and allowed and host not in allowed:
        return f"the realm host {host} is not the one pinned for it ({', '.join(allowed)})"
    return refusal(realm, registry.upstream.host, registry.realm_hosts, addresses)


def redirect_refusal(
    target: str, registry: Registry, addresses: Sequence[str] | None
) -> str | None:
    """Why a redirect target of `registry` is refused, or None."""
    return refusal(target, registry.upstream.host, registry.redirect_hosts, addresses)
