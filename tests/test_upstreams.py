import pytest
from regmirror.routing.upstreams import Upstream, mirror_base, parse_route, parse_upstream


def test_parse_upstream():
    assert parse_upstream("https://registry-1.docker.io") == Upstream(
        "https", "registry-1.docker.io", 443, True
    )
    u = parse_upstream("http://127.0.0.1:5001/")
    assert u == Upstream("http", "127.0.0.1", 5001, False)
    assert u.base == "http://127.0.0.1:5001"
    assert parse_upstream("https://ghcr.io:443").base == "https://ghcr.io"
    assert parse_upstream("http://127.0.0.1:5001", ["127.0.0.1:5001"]).dockerhub


@pytest.mark.parametrize(
    "url", ["ftp://x", "registry-1.docker.io", "https://x/v2", "https://u:p@x", "https://x?a=b"]
)
def test_parse_upstream_rejects(url):
    with pytest.raises(ValueError):
        parse_upstream(url)


def test_parse_route():
    host, upstream = parse_route("Hub.Example=https://registry-1.docker.io")
    assert (host, upstream.host, upstream.dockerhub) == (
        "hub.example",
        "registry-1.docker.io",
        True,
    )
    assert parse_route("ghcr.example:5000=https://ghcr.io")[0] == "ghcr.example:5000"
    for bad in ("nohost", "=https://x", "a b=https://x", "h=notaurl"):
        with pytest.raises(ValueError):
            parse_route(bad)


def test_mirror_base():
    assert mirror_base(False, "mirror:5000") == "http://mirror:5000"
    assert mirror_base(True, "mirror") == "https://mirror"
    assert mirror_base(False, "m:5000", "https", "pub.example") == "https://pub.example"
    assert mirror_base(False, "m", "HTTPS, http", None) == "https://m"
    assert mirror_base(False, "[::1]:5000") == "http://[::1]:5000"
    for host in ("", 'evil"', "a/b", "a b", "x\r\ny"):
        with pytest.raises(ValueError):
            mirror_base(False, host)
    with pytest.raises(ValueError):
        mirror_base(False, "m", "gopher")


# --- Properties (hypothesis) -------------------------------------------------------------

import urllib.parse

from hypothesis import example, given
from hypothesis import strategies as st

from tests.strategies import header_text, props, wild_text

_hosts = st.one_of(
    st.sampled_from(["registry-1.docker.io", "DOCKER.IO", "127.0.0.1", "[::1]", "[:::]", "[.]",
                     "a..b", "-", "x" * 300, "[fe80::1%25eth0]", "ü.example", ""]),
    st.from_regex(r"[A-Za-z0-9.\-]{1,20}", fullmatch=True),
    wild_text,
)  # fmt: skip
_ports = st.one_of(
    st.just(""),
    st.integers(0, 99999).map(lambda p: f":{p}"),
    st.sampled_from([":", ":٥٠٠٠", ":²", ":+1", ":-1", ": 1"]),
)
urls = st.one_of(
    wild_text,
    st.builds(
        lambda scheme, user, host, port, rest: f"{scheme}://{user}{host}{port}{rest}",
        st.sampled_from(["http", "https", "HTTPS", "ftp", ""]),
        st.sampled_from(["", "@", "u@", ":p@", "u:p@"]),
        _hosts,
        _ports,
        st.sampled_from(["", "/", "/v2", "?a=b", "#f", " ", "\t"]),
    ),
)


@props(200)
@given(urls)
@example("http://:p@registry.example")  # a password without a user name
@example("HTTP://0 /")  # a space in the host
def test_prop_parse_upstream_round_trips_or_raises_value_error(url):
    try:
        u = parse_upstream(url)
    except ValueError:
        return
    assert u.scheme in ("http", "https") and 0 < u.port < 65536
    assert "@" not in urllib.parse.urlsplit(url.strip()).netloc  # no credentials, none lost
    assert parse_upstream(u.base) == u


@props(200)
@given(st.one_of(wild_text, st.builds("{}={}".format, _hosts, urls)))
def test_prop_parse_route_raises_only_value_error(spec):
    try:
        host, upstream = parse_route(spec)
    except ValueError:
        return
    assert host == host.lower() and parse_upstream(upstream.base) == upstream


_host_headers = st.one_of(
    st.builds("{}{}".format, _hosts, _ports), header_text, st.sampled_from(["a,b", " m , n"])
)


@props(200)
@given(st.booleans(), _host_headers, st.none() | header_text | st.sampled_from(["https", "HTTP,x"]),
       st.none() | _host_headers)  # fmt: skip
@example(False, "mirror:٥٠٠٠", None, None)  # Unicode digits in the port
@example(False, "mirror:99999", None, None)
@example(False, "[:::]", None, None)
def test_prop_mirror_base_is_a_valid_url_or_raises_value_error(tls, host, proto, fwd_host):
    try:
        base = mirror_base(tls, host, proto, fwd_host)
    except ValueError:
        return
    u = urllib.parse.urlsplit(base)
    scheme = proto.split(",")[0].strip().lower() if proto else "https" if tls else "http"
    assert u.scheme == scheme and base == f"{scheme}://{u.netloc}"
    assert u.hostname and 0 <= (u.port or 0) < 65536  # .port raises for a port that is none
    assert u.netloc.isascii() and u.netloc.isprintable() and " " not in u.netloc
