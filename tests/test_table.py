import pytest
from regmirror.routing.catalog import CATALOG, Registry
from regmirror.routing.config import parse_config
from regmirror.routing.table import (
    HOST,
    NS,
    PATH,
    NoRoute,
    Table,
    client_path,
    realm_url,
    strip_prefix,
)
from regmirror.routing.upstreams import parse_upstream

LAB = {"url": "http://127.0.0.1:5001", "subdomain": "lab"}


def table(fallback: Registry | None = None, **mirror):
    config = parse_config({"mirror": mirror, "registries": {"lab.example": LAB}})
    return Table(config, fallback=fallback)


def test_path_prefix():
    t = table()
    r = t.resolve("mirror:5000", "ghcr.io/org/app")
    assert (r.registry.key, r.style, r.name, r.prefix) == ("ghcr.io", PATH, "org/app", "ghcr.io")
    r = t.resolve("mirror:5000", "docker.io/nginx")
    assert (r.registry.key, r.name) == ("docker.io", "library/nginx")
    r = t.resolve("mirror", "registry-1.docker.io/bitnami/redis")  # an alias
    assert (r.registry.key, r.name, r.prefix) == (
        "docker.io",
        "bitnami/redis",
        "registry-1.docker.io",
    )
    assert t.resolve("m", "lab.example/team/app").registry.upstream.base == "http://127.0.0.1:5001"


def test_ns():
    t = table()
    r = t.resolve("mirror", "org/app", "ghcr.io")
    assert (r.registry.key, r.style, r.name) == ("ghcr.io", NS, "org/app")
    assert t.resolve("mirror", "nginx", "docker.io").name == "library/nginx"
    assert t.resolve("mirror", "", "quay.io").registry.key == "quay.io"
    with pytest.raises(NoRoute, match="unknown registry"):
        t.resolve("mirror", "a/b", "evil.example")
    with pytest.raises(NoRoute, match="ambiguous"):
        t.resolve("mirror", "ghcr.io/a/b", "quay.io")
    assert t.resolve("mirror", "ghcr.io/a/b", "ghcr.io").style == PATH


def test_host_routes_and_precedence():
    t = table(domain="mirror.example", hosts={"k8s.internal:5000": "registry.k8s.io"})
    assert t.resolve("k8s.internal:5000", "pause").registry.key == "registry.k8s.io"
    assert t.resolve("ghcr.mirror.example", "org/app").registry.key == "ghcr.io"
    assert t.resolve("ghcr.mirror.example:443", "org/app").style == HOST
    assert t.resolve("lab.mirror.example", "x/y").registry.key == "lab.example"
    assert t.resolve("docker.mirror.example", "nginx").name == "library/nginx"
    # path prefix and ns beat the host
    assert t.resolve("ghcr.mirror.example", "quay.io/a/b").registry.key == "quay.io"
    assert t.resolve("ghcr.mirror.example", "a/b", "quay.io").registry.key == "quay.io"
    with pytest.raises(NoRoute, match="subdomain 'nope'"):
        t.resolve("nope.mirror.example", "a/b")
    # nothing routes an unknown host without a default
    with pytest.raises(NoRoute, match="no route for host"):
        t.resolve("other.example", "a/b")


def test_default_and_fallback():
    hub = Registry("registry-1.docker.io", parse_upstream("https://registry-1.docker.io"))
    t = table(fallback=hub)
    r = t.resolve("127.0.0.1:5000", "nginx")
    assert (r.registry.key, r.name) == ("docker.io", "library/nginx")  # the catalogue entry
    t = table(fallback=hub, default="quay.io")
    assert t.resolve("127.0.0.1:5000", "a/b").registry.key == "quay.io"
    # a dotted first component on Docker Hub can only be an unknown registry
    with pytest.raises(NoRoute, match="unknown registry 'evil.example'"):
        table(fallback=hub).resolve("m", "evil.example/a")


def test_listing():
    t = table(domain="mirror.example", default="docker.io")
    listing = t.listing()
    assert "ghcr.mirror.example -> ghcr.io" in listing
    assert "/v2/ghcr.io/... or ?ns=ghcr.io" in listing
    assert listing[-1] == "default -> docker.io"
    assert not any("://" in line for line in listing)  # no upstream URLs


def test_routes_option_inherits_a_configured_registry():
    """The review's finding 6: a regmirror_routes entry for a configured upstream was a
    second registry without its allow/deny lists, reachable by host and by ?ns=HOST:PORT."""
    config = parse_config({"registries": {"lab.example": {**LAB, "deny": ["private/*"]}}})
    lab_route = Registry("127.0.0.1:5001", parse_upstream(LAB["url"]))
    t = Table(config, {"hub.local": lab_route})
    routed = t.resolve("hub.local", "private/x").registry
    assert (routed.key, routed.allows("private/x")) == ("lab.example", False)
    with pytest.raises(NoRoute):
        t.resolve("m", "private/x", "127.0.0.1:5001")
    other = Registry("10.0.0.1:5000", parse_upstream("http://10.0.0.1:5000"))
    assert Table(config, {"o.local": other}).resolve("o.local", "a/b").registry is other


def test_paths_in_the_clients_style():
    p = "/v2/org/app/blobs/sha256:1"
    assert client_path(HOST, "", "ghcr.io", p) == p
    assert client_path(PATH, "ghcr.io", "ghcr.io", p) == "/v2/ghcr.io/org/app/blobs/sha256:1"
    assert client_path(NS, "", "ghcr.io", p + "?a=1") == p + "?a=1&ns=ghcr.io"
    assert client_path(NS, "", "ghcr.io", p + "?ns=ghcr.io") == p + "?ns=ghcr.io"
    assert realm_url({"mirror": "http://m", "style": HOST, "registry": "ghcr.io"}) == (
        "http://m/v2/auth"
    )
    assert realm_url({"mirror": "http://m", "style": PATH, "registry": "ghcr.io"}) == (
        "http://m/v2/auth/ghcr.io"
    )
    assert strip_prefix("ghcr.io/org/app", CATALOG["ghcr.io"]) == "org/app"
    assert strip_prefix("org/app", CATALOG["ghcr.io"]) == "org/app"
    assert strip_prefix("index.docker.io/nginx", CATALOG["docker.io"]) == "nginx"


# --- Properties (hypothesis) -------------------------------------------------------------

import urllib.parse

from hypothesis import assume, example, given
from hypothesis import strategies as st
from regmirror.routing import names

from tests.strategies import digests, props, repo_names, tags, wild_text

HUB = Registry("registry-1.docker.io", parse_upstream("https://registry-1.docker.io"))
T = table(fallback=HUB, domain="mirror.example", hosts={"k8s.internal:5000": "registry.k8s.io"})
_keys = sorted(T.names)  # registry keys and aliases
_routed_hosts = st.sampled_from(
    ["mirror:5000", "k8s.internal:5000", "ghcr.mirror.example", "docker.mirror.example:443",
     "[::1]:5000", "QUAY.IO"]
)  # fmt: skip
_client_hosts = st.one_of(_routed_hosts, st.just("nope.mirror.example"), wild_text)
# Names as the router passes them: valid, some with a registry's name in front.
_valid_names = st.one_of(
    repo_names,
    st.builds("{}/{}".format, st.sampled_from(_keys + ["evil.example"]), repo_names),
)
_client_names = st.one_of(
    _valid_names,
    st.builds("{}/{}".format, st.sampled_from(["a:1", "GHCR.IO"]), repo_names),
    wild_text,
)
_ns = st.one_of(st.just(""), st.sampled_from(_keys), st.sampled_from(["GHCR.io", "evil"]),
                wild_text)  # fmt: skip


@props(100)
@given(_client_hosts, st.one_of(st.just(""), _client_names), _ns)
def test_prop_resolve_routes_or_raises_no_route(host, name, ns):
    try:
        route = T.resolve(host, name, ns)
    except NoRoute:
        return
    assert route.registry in T.registries.values() and route.style in (HOST, PATH, NS)
    if route.registry.dockerhub and route.name:
        assert "/" in route.name


# Upstream paths that the mirror hands to clients: Location and Link of each endpoint, some
# with a query (tag pagination) whose keys contain "ns".
_upstream_paths = st.builds(
    lambda suffix, query: suffix + query,
    st.one_of(
        st.builds("/manifests/{}".format, st.one_of(tags, digests)),
        st.builds("/blobs/{}".format, digests),
        st.just("/tags/list"),
    ),
    st.sampled_from(["", "?n=10", "?n=10&last=a", "?columns=1", "?dns=x", "?a=ns=b"]),
)


@props(80)
@given(_routed_hosts, _valid_names, st.just("") | st.sampled_from(_keys), _upstream_paths)
@example("mirror:5000", "org/app", "ghcr.io", "/tags/list?columns=1")
def test_prop_client_path_resolves_to_the_same_registry(host, name, ns, suffix):
    """A path the mirror gives a client (client_path) leads back to the same registry and
    repository, in each addressing style."""
    try:
        route = T.resolve(host, name, ns)
    except NoRoute:
        assume(False)
    assume(route.name)
    path = client_path(route.style, route.prefix, route.registry.key, f"/v2/{route.name}{suffix}")
    p, _, query = path.partition("?")
    api = names.parse_api_path(p)
    assert api is not None and api.name
    ns_back = dict(urllib.parse.parse_qsl(query)).get("ns", "")
    back = T.resolve(host, api.name, ns_back)
    assert (back.registry, back.name, back.style) == (route.registry, route.name, route.style)
