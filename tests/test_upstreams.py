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
