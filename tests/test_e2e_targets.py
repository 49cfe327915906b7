"""End to end: the mirror (`mitmdump -s addon/mirror.py`) in front of a stand-in for a
malicious upstream (tests/support/malicious.py) whose challenge names a token realm, and
whose blobs redirect, to an internal server that is not on the registry's host. The mirror
answers 502, the internal server gets no request and never sees the route's credentials;
a config that lists that host for the registry (`realm_hosts`, `redirect_hosts`) makes the
same requests reach it.

"Same host" is the host as written in the registry's URL: the cases cover an internal IP
address (127.0.0.2 beside a registry on 127.0.0.1), a name that resolves inside
(`localhost` beside 127.0.0.1), and the reverse (a registry at `localhost`, a realm on
127.0.0.1, which is the same machine but not the same host)."""

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from regmirror.transport.targets import is_ip

from tests.support.malicious import SECRET, TOKEN, InternalServer, MaliciousRegistry

pytestmark = pytest.mark.e2e

# the internal server's body is the blob: the mirror verifies what it fetches by digest
BLOB = "/v2/org/app/blobs/sha256:" + hashlib.sha256(SECRET).hexdigest()
ROUTE_CREDENTIALS = "Basic " + base64.b64encode(b"mirror-bot:route-password").decode()

# (where the registry listens and the host its URL names, where the internal server listens
# and the host the realm and redirect name)
CASES = {
    "internal-ip": (("127.0.0.1", "127.0.0.1"), ("127.0.0.2", "127.0.0.2")),
    "name-resolving-inside": (("127.0.0.1", "127.0.0.1"), ("127.0.0.1", "localhost")),
    "same-machine-other-host": (("127.0.0.1", "localhost"), ("127.0.0.1", "127.0.0.1")),
}


@pytest.fixture(params=list(CASES))
def upstream(request) -> Iterator[tuple[MaliciousRegistry, InternalServer]]:
    (reg_host, reg_name), (int_host, int_name) = CASES[request.param]
    internal = InternalServer(int_host, int_name).start()
    registry = MaliciousRegistry(
        f"{internal.url}/token?from=challenge", f"{internal.url}/bucket/blob", reg_host, reg_name
    ).start()
    try:
        yield registry, internal
    finally:
        registry.stop()
        internal.stop()


def start_mirror(mirror_factory, tmp_path: Path, registry, internal, extra: str = ""):
    cfg = tmp_path / "mirror.toml"
    cfg.write_text(
        f'[mirror]\ndefault = "evil.test"\n[registries."evil.test"]\nurl = "{registry.url}"\n'
        f'username = "mirror-bot"\npassword = "route-password"\n{extra}'
    )
    return mirror_factory(registry.url, {"regmirror_config": str(cfg)})


def assert_refused(r: httpx.Response, what: str) -> None:
    assert r.status_code == 502, r.text
    err = r.json()["errors"][0]
    assert err["code"] == "UNAVAILABLE"
    assert err["message"].startswith(what) and " refused: " in err["message"]


def test_internal_realm_and_redirect_are_refused(mirror_factory, tmp_path, upstream):
    registry, internal = upstream
    mirror = start_mirror(mirror_factory, tmp_path, registry, internal)
    with httpx.Client(base_url=mirror.url, timeout=30) as c:
        for path in ("/v2/", "/v2/org/app/manifests/1"):
            challenged = c.get(path)
            if is_ip(internal.name):  # an address is refused as soon as a challenge names it
                assert_refused(challenged, "token realm")
            else:  # a name is judged by its addresses, before any request goes there
                assert challenged.status_code == 401
        assert_refused(
            c.get("/v2/auth", params={"scope": "repository:org/app:pull"}), "token realm"
        )
        r = c.get(BLOB)
        assert r.status_code == 307
        assert r.headers["Location"].startswith(f"{mirror.url}/_regmirror/redirect?")
        assert_refused(c.get(r.headers["Location"]), "redirect of evil.test to")
        assert c.head(r.headers["Location"]).status_code == 502
    assert internal.received() == []  # nothing reached it, so neither did the credentials
    log = mirror.log_text()
    assert f"token realm {internal.url}/token of evil.test refused: {internal.name} " in log
    assert f"redirect of evil.test to {internal.url}/bucket/blob refused: {internal.name} " in log
    assert "route-password" not in log


def test_listed_hosts_reach_the_internal_server(mirror_factory, tmp_path, upstream):
    registry, internal = upstream
    extra = f'realm_hosts = ["{internal.name}"]\nredirect_hosts = ["{internal.name}"]\n'
    mirror = start_mirror(mirror_factory, tmp_path, registry, internal, extra)
    with httpx.Client(base_url=mirror.url, timeout=30) as c:
        ping = c.get("/v2/")
        assert ping.status_code == 401
        assert ping.headers["WWW-Authenticate"].startswith(f'Bearer realm="{mirror.url}/v2/auth"')
        token = c.get("/v2/auth", params={"scope": "repository:org/app:pull"})
        assert token.status_code == 200, token.text
        assert token.json()["token"] == TOKEN
        r = c.get(BLOB, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 307
        blob = c.get(r.headers["Location"], headers={"Authorization": f"Bearer {TOKEN}"})
        assert (blob.status_code, blob.content) == (200, SECRET)
    realm, followed = internal.received()
    assert realm.path.startswith("/token?from=challenge&service=evil-registry&scope=")
    assert realm.authorization == ROUTE_CREDENTIALS  # what the refusal keeps from it
    assert (followed.path, followed.authorization) == ("/bucket/blob", "")
