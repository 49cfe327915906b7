import ipaddress
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from regmirror.routing.catalog import CATALOG, Registry
from regmirror.routing.upstreams import parse_upstream
from regmirror.transport.targets import (
    host_of,
    internal,
    needs_addresses,
    normal_host,
    realm_refusal,
    redirect_refusal,
    refusal,
    valid_host,
)

INTERNAL = [
    "127.0.0.1", "127.255.255.254", "0.0.0.0", "10.1.2.3", "172.16.0.1", "172.31.255.255",
    "192.168.1.1", "169.254.169.254", "100.64.0.1", "100.127.255.255", "192.0.0.1",
    "198.18.0.1", "224.0.0.1", "240.0.0.1", "255.255.255.255",
    "::1", "::", "fe80::1", "fe80::1%eth0", "fc00::1", "fd12:3456::1", "ff02::1",
    "2001:db8::1", "2001::1",  # documentation; Teredo
    "::ffff:127.0.0.1", "::ffff:7f00:1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
    "::ffff:100.64.0.1", "::ffff:0.0.0.0",
    "::7f00:1",  # IPv4-compatible ::127.0.0.1 (deprecated, reserved)
    "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1",  # NAT64 of 169.254.169.254, 127.0.0.1
    "64:ff9b:1::a00:1",  # local-use NAT64 (RFC 8215)
    "2002:a9fe:a9fe::1", "2002:7f00:1::",  # 6to4 around internal IPv4 addresses
]  # fmt: skip
PUBLIC = [
    "8.8.8.8", "1.1.1.1", "52.1.2.3", "172.32.0.1", "100.63.255.255", "100.128.0.1",
    "192.169.0.1", "2606:4700:4700::1111", "2a00:1450:4001:80e::200e",
    "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
]  # fmt: skip


@pytest.mark.parametrize("address", INTERNAL)
def test_internal_addresses(address):
    assert internal(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses(address):
    assert not internal(address)


@given(st.ip_addresses(v=4))
def test_ipv6_forms_of_an_ipv4_address_are_judged_as_it(v4):
    forms = [
        f"::ffff:{v4}",
        str(ipaddress.IPv6Address((0x64FF9B << 96) | int(v4))),  # NAT64
        str(ipaddress.IPv6Address((0x2002 << 112) | (int(v4) << 80))),  # 6to4
    ]
    assert [internal(f) for f in forms] == [internal(str(v4))] * 3


@given(st.ip_addresses())
def test_an_internal_address_is_refused_unless_it_is_the_registrys_own(ip):
    url = f"http://[{ip}]:81/x" if ip.version == 6 else f"http://{ip}:81/x"
    reason = refusal(url, "registry.example", (), None)
    assert (reason is not None) == internal(str(ip))
    assert refusal(url, str(ip), (), None) is None
    assert refusal(url, "registry.example", (str(ip),), None) is None


@pytest.mark.parametrize(
    "host,normal",
    [("Auth.Docker.IO.", "auth.docker.io"), ("[::1]", "::1"), ("0:0::1", "::1"),
     ("::FFFF:127.0.0.1", "127.0.0.1"), ("::ffff:7f00:1", "127.0.0.1"), ("10.0.0.5", "10.0.0.5")],
)  # fmt: skip
def test_normal_host(host, normal):
    assert normal_host(host) == normal


def test_host_of():
    assert host_of("https://User:pw@AUTH.docker.io:8443/token?x=1") == "auth.docker.io"
    assert host_of("http://[::ffff:10.0.0.1]:80/") == "10.0.0.1"
    for bad in (
        "ftp://h/",
        "/relative",
        "http://",
        "http://h:99999/",
        "http://[evil/",
        "file:///x",
    ):
        assert host_of(bad) == ""


@pytest.mark.parametrize(
    "host,ok",
    [("auth.docker.io", True), ("10.0.0.6", True), ("::1", True), ("[fd00::6]", True),
     ("lab-token.internal.", True), ("10.0.0.6:5001", False), ("http://x", False),
     ("*.example.com", False), ("", False), ("a b", False)],
)  # fmt: skip
def test_valid_host(host, ok):
    assert valid_host(host) is ok


# (url, the registry's upstream host, hosts listed for it, resolved addresses, refusal)
# addresses None: not resolved yet; a refusal of None means allowed.
REFUSALS = [
    # public targets, by name and by address
    ("https://auth.docker.io/token", "registry-1.docker.io", (), ["3.3.3.3"], None),
    ("https://8.8.8.8/x", "registry.example", (), None, None),
    ("http://[2606:4700::1111]/x", "registry.example", (), None, None),
    # internal addresses written in the URL need no resolution
    ("http://169.254.169.254/latest/meta-data/", "registry.example", (), None,
     "169.254.169.254 is an internal address"),
    ("http://127.0.0.2:9/token", "127.0.0.1", (), None, "127.0.0.2 is an internal"),
    ("http://0.0.0.0:5000/", "127.0.0.1", (), None, "0.0.0.0 is an internal"),
    ("http://100.64.1.1/", "registry.example", (), None, "100.64.1.1 is an internal"),
    ("http://[::1]:9/", "registry.example", (), None, "::1 is an internal"),
    ("http://[fd00::6]/", "registry.example", (), None, "fd00::6 is an internal"),
    ("http://[fe80::1]/", "registry.example", (), None, "fe80::1 is an internal"),
    ("http://[::ffff:169.254.169.254]/", "registry.example", (), None,
     "169.254.169.254 is an internal"),
    ("http://user:pw@10.0.0.1/", "registry.example", (), None, "10.0.0.1 is an internal"),
    # same host as the registry's URL, any port: a lab's token service or storage
    ("http://127.0.0.1:5001/token", "127.0.0.1", (), None, None),
    ("http://LOCALHOST.:9/", "localhost", (), None, None),
    ("http://[0:0::1]:9/", "::1", (), None, None),
    ("http://[::ffff:127.0.0.1]:9/", "127.0.0.1", (), None, None),
    ("http://10.0.0.5:8080/blob", "10.0.0.5", (), None, None),
    # "same host" is the host as written: another name of the same machine is not it
    ("http://127.0.0.1:9/", "localhost", (), None, "127.0.0.1 is an internal"),
    ("http://localhost:9/", "127.0.0.1", (), ["127.0.0.1"],
     "localhost resolves to an internal address (127.0.0.1)"),
    # a private registry URL opens no other private host; listed hosts open only themselves
    ("http://10.0.0.6/token", "10.0.0.5", (), None, "10.0.0.6 is an internal"),
    ("http://10.0.0.7/blob", "10.0.0.5", ("10.0.0.7",), None, None),
    ("http://lab-s3.internal/b", "10.0.0.5", ("lab-s3.internal",), None, None),
    ("http://10.0.0.8/", "10.0.0.5", ("10.0.0.7",), None, "10.0.0.8 is an internal"),
    ("http://[fd00::7]/", "10.0.0.5", ("fd00::7",), None, None),
    # names: every address counts; no address is a refusal; unresolved is judged later
    ("http://cdn.example/b", "registry.example", (), ["8.8.8.8", "10.0.0.1"],
     "cdn.example resolves to an internal address (10.0.0.1)"),
    ("http://cdn.example/b", "registry.example", (), ["2606:4700::1", "::ffff:127.0.0.1"],
     "(::ffff:127.0.0.1)"),
    ("http://rebind.example/b", "registry.example", (), ["fe80::1%eth0"], "(fe80::1%eth0)"),
    ("http://127.1/", "registry.example", (), ["127.0.0.1"], "127.1 resolves to an internal"),
    ("http://gone.example/b", "registry.example", (), [], "gone.example does not resolve"),
    ("http://cdn.example/b", "registry.example", (), None, None),
    # not http(s)
    ("ftp://10.0.0.1/", "registry.example", (), None, "not an http(s) URL"),
    ("http://h:99999/", "registry.example", (), None, "not an http(s) URL"),
    ("http://[::1/token", "registry.example", (), None, "not an http(s) URL"),
]  # fmt: skip


@pytest.mark.parametrize("url,registry_host,listed,addresses,expected", REFUSALS)
def test_refusal(url, registry_host, listed, addresses, expected):
    reason = refusal(url, registry_host, listed, addresses)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason


def test_needs_addresses():
    assert needs_addresses("https://cdn.example/b", "registry.example", ())
    assert not needs_addresses("https://REGISTRY.example:8443/b", "registry.example", ())
    assert not needs_addresses("https://s3.lab/b", "registry.example", ("s3.lab",))
    assert not needs_addresses("http://10.0.0.1/", "registry.example", ())  # judged as written
    assert not needs_addresses("ftp://x/", "registry.example", ())


def lab(url: str = "http://127.0.0.1:5000", **kw) -> Registry:
    return Registry("lab.test", parse_upstream(url, []), **kw)


HUB = CATALOG["docker.io"]

# (realm, registry, pinned realm host, addresses, refusal)
REALMS = [
    # built-in registries know their realm hosts
    ("https://auth.docker.io/token", HUB, "", None, None),
    ("https://evil.example/token", HUB, "", ["8.8.8.8"], "not the one pinned for it"),
    ("https://registry-1.docker.io/token", HUB, "", None, "pinned"),
    ("https://ghcr.io/token", CATALOG["ghcr.io"], "", None, None),
    ("https://quay.io/v2/auth", CATALOG["quay.io"], "", None, None),
    ("https://authn.nvidia.com/token", CATALOG["nvcr.io"], "", None, None),
    # without realm_hosts: the first realm learned pins the host, any port
    ("https://auth.lab.example/t", lab("https://r.example"), "", ["8.8.8.8"], None),
    ("https://auth.lab.example:8443/t", lab("https://r.example"), "auth.lab.example",
     ["8.8.8.8"], None),
    ("https://other.example/t", lab("https://r.example"), "auth.lab.example", ["8.8.8.8"],
     "realm host other.example is not the one pinned for it (auth.lab.example)"),
    # a lab registry with its token service on the same machine
    ("http://127.0.0.1:5001/token", lab(), "", None, None),
    ("http://127.0.0.2:5001/token", lab(), "", None, "127.0.0.2 is an internal"),
    ("http://127.0.0.1:5001/token", lab("http://localhost:5000"), "", None, "internal"),
    # configured realm_hosts: allowed even inside, and the realm may not leave them
    ("http://127.0.0.2:5001/token", lab(realm_hosts=("127.0.0.2",)), "", None, None),
    ("http://127.0.0.3:5001/token", lab(realm_hosts=("127.0.0.2",)), "", None, "pinned"),
    ("http://10.0.0.9/token", lab(realm_hosts=("10.0.0.9",)), "127.0.0.1", None, None),
    # redirect_hosts do not open realms
    ("http://127.0.0.2:5001/token", lab(redirect_hosts=("127.0.0.2",)), "", None, "internal"),
    # the pin is checked before addresses: a pinned host that turns internal is refused
    ("http://auth.lab.example/t", lab("https://r.example"), "auth.lab.example", ["10.0.0.1"],
     "resolves to an internal address"),
]  # fmt: skip


@pytest.mark.parametrize("realm,registry,pinned,addresses,expected", REALMS)
def test_realm_refusal(realm, registry, pinned, addresses, expected):
    reason = realm_refusal(realm, registry, pinned, addresses)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason


def test_redirect_refusal():
    cdn = "https://production.cloudflare.docker.com/registry-v2/x?X-Amz-Signature=s"
    assert redirect_refusal(cdn, HUB, ["104.16.0.1"]) is None
    assert "internal" in redirect_refusal(cdn, HUB, ["10.1.1.1"])
    storage = "http://127.0.0.2:9000/bucket/blob"
    assert "127.0.0.2 is an internal" in redirect_refusal(storage, lab(), None)
    assert redirect_refusal("http://127.0.0.1:9000/bucket/blob", lab(), None) is None
    assert redirect_refusal(storage, lab(redirect_hosts=("127.0.0.2",)), None) is None
    # realm_hosts do not open redirects; the built-in realm host is no redirect host
    assert "internal" in redirect_refusal(storage, lab(realm_hosts=("127.0.0.2",)), None)
    moved = replace(HUB, upstream=parse_upstream("http://127.0.0.1:5000", []))
    assert "internal" in redirect_refusal("http://auth.docker.io/x", moved, ["127.0.0.1"])
