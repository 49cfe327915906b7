"""End to end: hostile or broken requests get registry errors; the mirror never crashes,
hangs or contacts anything but its upstreams."""

import socket
import threading
import time

import httpx
import pytest

from tests.support.rawhttp import send_raw as raw

pytestmark = pytest.mark.e2e


@pytest.fixture
def mirror(mirror_factory, tmp_path, registry, token_server):
    cfg = tmp_path / "mirror.toml"
    cfg.write_text(f'[registries."docker.io"]\nurl = "{registry.url}"\n')
    return mirror_factory(registry.url, {"regmirror_config": str(cfg)})


@pytest.mark.parametrize(
    "target,status",
    [
        (b"/v2/a/../../etc/passwd/manifests/1", 400),
        (b"/v2/a/%2e%2e/b/manifests/1", 400),
        (b"/v2/\xff\xfe/manifests/1", 400),
        (b"/v2/nginx/manifests/" + b"x" * 5000, 400),
        (b"/v2/nginx/blobs/sha256:" + b"0" * 64 + b"?ns=" + b"a" * 3000, 404),
        (b"/v2/nginx/manifests/1?ns=169.254.169.254", 404),
        (b"/v2/auth?scope=" + b"%00" * 100, 400),
        (b"http://169.254.169.254/latest/meta-data", 404),
        (b"/_regmirror/redirect?u=http://127.0.0.1:22/&e=99999999999&s=AAAA", 403),
    ],
)
def test_hostile_requests(mirror, target, status):
    answer = raw(
        mirror.port,
        b"GET " + target + b" HTTP/1.1\r\nHost: " + mirror.host.encode() + b"\r\n"
        b"Connection: close\r\n\r\n",
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == str(status).encode(), answer[:300]
    if status >= 400:
        assert b'"errors"' in body


def test_broken_headers_and_hosts(mirror):
    for request in [
        b'GET /v2/ HTTP/1.1\r\nHost: evil"host\r\nConnection: close\r\n\r\n',
        b"GET /v2/ HTTP/1.0\r\n\r\n",
        b"GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic !!!\r\nConnection: close\r\n\r\n",
        b"NONSENSE\r\n\r\n",
    ]:
        answer = raw(mirror.port, request)
        assert answer.startswith(b"HTTP/1."), answer[:200]
        assert int(answer.split(b" ")[1]) >= 400 or b"/v2/" in request
    # still serving, and no addon crashed
    assert httpx.get(f"{mirror.url}/v2/", timeout=20).status_code == 401
    log = mirror.log_text()
    assert "Traceback" not in log and "Addon error" not in log


@pytest.fixture
def stalling_upstream():
    """An upstream that accepts connections and never answers (an overloaded or broken
    registry; the internet's failure modes cannot be reached from here, so this stands in)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_silent_upstream_gets_504(mirror_factory, stalling_upstream):
    mirror = mirror_factory(stalling_upstream, {"regmirror_response_timeout": 1})
    started = time.monotonic()
    r = httpx.get(f"{mirror.url}/v2/x/manifests/1", timeout=30)
    assert time.monotonic() - started < 10
    assert r.status_code == 504
    err = r.json()["errors"][0]
    assert err["code"] == "UNAVAILABLE" and "no response within 1 s" in err["message"]
    assert "timed out: no response within 1 s" in mirror.log_text()
    # the token realm probe has its own bound (regmirror_upstream_timeout); an upstream that
    # does not answer in time counts as down: the client gets an offline token
    mirror2 = mirror_factory(stalling_upstream, {"regmirror_upstream_timeout": 1})
    started = time.monotonic()
    r = httpx.get(f"{mirror2.url}/v2/auth?scope=repository:x:pull", timeout=30)
    assert time.monotonic() - started < 10
    assert r.status_code == 200 and r.json()["token"].startswith("regmirror-offline.")
    assert "cannot learn the token realm" in mirror2.log_text()
