"""End to end under load: pulls complete while a thousand idle and slow connections are open,
the per-client connection limit answers 429 without asking the upstream, and 64 concurrent
pulls get every byte right."""

import asyncio
import hashlib
import json
import re
import resource
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.images import OCI_INDEX, OCI_MANIFEST, BuiltImage
from tests.support.load import hold_connections, max_open_files, open_fds, raise_open_files
from tests.support.mirror import Mirror
from tests.support.procs import wait_until

pytestmark = pytest.mark.e2e

HOLDER = "127.0.0.2"  # another loopback address: a second client of the mirror
HELD = 1000
FD_MARGIN = 200  # descriptors beyond the held connections (logs, pulls, upstream sockets)
PARTIAL = b"GET /_regmirror/healthz HTTP/1.1\r\nHost: mirror\r\nX-Slow: "
TRICKLE_INTERVAL = 0.1  # seconds between two bytes on each slow connection
RELEASE_BATCH = 50  # connections closed at once (see release)


@pytest.fixture
def enough_fds() -> Iterator[int]:
    """Open files for HELD connections on both ends: the mirror inherits this limit."""
    need = HELD + FD_MARGIN
    previous = raise_open_files(need)
    try:
        yield need
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, previous)


class Trickle:
    """Slowloris: a partial request line and headers, one byte per connection at a time."""

    def __init__(self, socks: list[socket.socket]) -> None:
        self.socks = socks
        self.stop = threading.Event()
        self.rounds = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(TRICKLE_INTERVAL):
            i = self.rounds
            byte = PARTIAL[i : i + 1] or b"a"
            for s in self.socks:
                s.send(byte)
            self.rounds += 1

    def __enter__(self) -> "Trickle":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def rest(self) -> bytes:
        """What completes the request on a slow connection, once stopped."""
        return PARTIAL[self.rounds :] + b"\r\n\r\n"


def read_until_closed(sock: socket.socket, timeout: float = 20) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def parse_answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def exchange(sock: socket.socket, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request on a kept-alive connection; the answer is read to its Content-Length."""
    sock.settimeout(20)
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    status, headers, body = parse_answer(data)
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return status, headers, body


def local_addresses(socks: list[socket.socket]) -> set[str]:
    return {"{}:{}".format(*s.getsockname()[:2]) for s in socks}


def logged(mirror: Mirror, event: str) -> set[str]:
    """Client addresses of mitmproxy's `[ADDRESS:PORT] client connect|disconnect` log lines.
    It runs the client_connected / client_disconnected hooks right after, in the same step of
    its event loop."""
    pattern = rf"\[([0-9.]+:[0-9]+)\] client {event}$"
    return set(re.findall(pattern, mirror.log_text(), re.MULTILINE))


def forgotten(mirror: Mirror, addresses: set[str]) -> bool:
    return addresses <= logged(mirror, "disconnect")


def release(mirror: Mirror, socks: list[socket.socket]) -> None:
    """Close the connections RELEASE_BATCH at a time, each batch once the mirror has forgotten
    the one before. mitmproxy hands every log record (debug ones too, several per closed
    connection) to its event loop with call_soon_threadsafe, one byte each into asyncio's
    self-pipe, which holds 278: a SIGTERM arriving while it is full is lost, and stopping the
    mirror would take the 10 s until SIGKILL."""
    try:
        for i in range(0, len(socks), RELEASE_BATCH):
            batch = socks[i : i + RELEASE_BATCH]
            addresses = local_addresses(batch)
            for s in batch:
                s.close()
            wait_until(lambda a=addresses: forgotten(mirror, a), 20, "the mirror forgetting them")
    finally:
        for s in socks:
            s.close()


def assert_too_many(raw: bytes) -> None:
    status, headers, body = parse_answer(raw)
    assert status == 429, raw[:300]
    assert headers["retry-after"] == "5"
    assert headers["connection"] == "close"
    assert json.loads(body)["errors"][0]["code"] == "TOOMANYREQUESTS"


def verify_oci_layout(dest: Path, image: BuiltImage) -> None:
    index = json.loads((dest / "index.json").read_text())
    assert index["manifests"][0]["digest"] == image.digest
    blobs = dest / "blobs" / "sha256"
    for path in blobs.iterdir():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
    assert {f"sha256:{p.name}" for p in blobs.iterdir()} == image.blob_digests()


@pytest.fixture
def mirror(mirror_factory, tmp_path, registry):
    cfg = tmp_path / "mirror.toml"
    cfg.write_text(f'[registries."docker.io"]\nurl = "{registry.url}"\n')
    # the connection lines tell when the mirror has forgotten a connection
    return mirror_factory(
        registry.url, {"regmirror_config": str(cfg), "regmirror_log_flows": "true"}
    )


def test_pull_while_another_client_holds_a_thousand_connections(
    enough_fds, mirror, skopeo, images, tmp_path
):
    assert max_open_files(mirror.pid) >= enough_fds, "the mirror cannot hold the connections"
    started = time.monotonic()
    socks = hold_connections(mirror.port, HELD, HOLDER)
    opened = time.monotonic() - started
    assert open_fds(mirror.pid) > HELD  # held by the mirror itself, not queued in the kernel
    slow = socks[1::2]  # every other one; the rest stay idle. The oldest slow one is served.
    try:
        with Trickle(slow) as trickle:
            wait_until(lambda: trickle.rounds >= 5, 10, "slow clients started")
            started = time.monotonic()
            dest = tmp_path / "big-oci"
            skopeo.copy(f"{mirror.host}/library/big:1", f"oci:{dest}:1")
            pulled = time.monotonic() - started
        verify_oci_layout(dest, images["library/big"])
        print(
            f"{HELD} connections held in {opened:.2f} s; pull under them {pulled:.2f} s "
            f"({trickle.rounds} bytes trickled per slow connection)"
        )
        assert pulled < 30
        # the holder's connections beyond the limit (default 256) are refused, oldest served
        with socket.create_connection(
            ("127.0.0.1", mirror.port), source_address=(HOLDER, 0)
        ) as extra:
            extra.sendall(b"GET /_regmirror/healthz HTTP/1.1\r\nHost: mirror\r\n\r\n")
            assert_too_many(read_until_closed(extra))
        slow[-1].sendall(trickle.rest())
        assert_too_many(read_until_closed(slow[-1]))
        status, _, body = exchange(slow[0], trickle.rest())
        assert (status, body) == (200, b"ok\n")
    finally:
        release(mirror, socks)
    log = mirror.log_text()
    assert "Traceback" not in log and "Addon error" not in log


def test_connection_over_the_limit_gets_429_and_never_reaches_upstream(
    mirror_factory, plain_registry, images
):
    limit = 4
    # the connection lines tell when the mirror has forgotten a connection
    options = {"regmirror_max_connections_per_client": limit, "regmirror_log_flows": "true"}
    mirror = mirror_factory(plain_registry.url, options)
    manifest = images["library/testimg"].digest
    # the start-up probe's connection would count
    wait_until(lambda: forgotten(mirror, logged(mirror, "connect")), 10, "an idle mirror")

    def request(probe: str) -> bytes:
        return (
            f"GET /v2/library/testimg/manifests/1?probe={probe} HTTP/1.1\r\n"
            f"Host: {mirror.host}\r\nAccept: {OCI_MANIFEST}\r\n\r\n"
        ).encode()

    held = [socket.create_connection(("127.0.0.1", mirror.port)) for _ in range(limit)]
    addresses = local_addresses(held)
    try:
        for s in held:
            status, headers, _ = exchange(s, request("held"))
            assert (status, headers["docker-content-digest"]) == (200, manifest)
        refused_probe = uuid.uuid4().hex
        with socket.create_connection(("127.0.0.1", mirror.port)) as fifth:
            fifth.sendall(request(refused_probe))
            assert_too_many(read_until_closed(fifth))  # and the mirror closed the connection
        assert exchange(held[0], request("held"))[0] == 200  # the four keep being served
    finally:
        for s in held:
            s.close()
    wait_until(lambda: forgotten(mirror, addresses), 20, "the mirror forgetting the four")
    served_probe = uuid.uuid4().hex
    with socket.create_connection(("127.0.0.1", mirror.port)) as again:
        assert exchange(again, request(served_probe))[0] == 200
    wait_until(
        lambda: any(served_probe in e.path for e in plain_registry.access_log()),
        10,
        "the upstream logging the request",
    )
    assert not any(refused_probe in e.path for e in plain_registry.access_log())
    assert f"probe={refused_probe} -> 429 TOOMANYREQUESTS by limits" in mirror.log_text()


CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
PULLED_REPOS = ("library/testimg", "library/multi", "org/app", "library/big")
CONCURRENT_PULLS = 64


async def pull(base_url: str, repo: str, image: BuiltImage) -> int:
    """A registry client's pull of tag "1" (linux/amd64): ping, token from the realm the
    mirror names, manifest (and the index before it), config and layers, each checked against
    its digest. Returns the bytes received."""
    accept = f"{OCI_INDEX}, {OCI_MANIFEST}"
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        ping = await client.get("/v2/")
        assert ping.status_code == 401
        params = dict(CHALLENGE.findall(ping.headers["WWW-Authenticate"]))
        assert params["realm"] == f"{base_url}/v2/auth"
        token = await client.get(
            params["realm"],
            params={"service": params["service"], "scope": f"repository:{repo}:pull"},
        )
        assert token.status_code == 200
        client.headers["Authorization"] = f"Bearer {token.json()['token']}"
        reference, received = "1", 0
        while True:
            m = await client.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept})
            assert m.status_code == 200
            digest = "sha256:" + hashlib.sha256(m.content).hexdigest()
            assert digest == (image.digest if reference == "1" else reference)
            received += len(m.content)
            doc = m.json()
            if doc["mediaType"] != OCI_INDEX:
                break
            reference = next(
                d["digest"] for d in doc["manifests"] if d["platform"]["architecture"] == "amd64"
            )
        assert digest == image.manifest_digest
        for blob in [doc["config"], *doc["layers"]]:
            h = hashlib.sha256()
            async with client.stream("GET", f"/v2/{repo}/blobs/{blob['digest']}") as r:
                assert r.status_code == 200
                async for chunk in r.aiter_bytes():
                    h.update(chunk)
            assert f"sha256:{h.hexdigest()}" == blob["digest"]
            received += blob["size"]
        return received


async def test_sixty_four_concurrent_pulls(mirror, images):
    """64 clients pull at once through the mirror from the token-auth registry, each with
    its own connection. They are httpx clients speaking the registry protocol, not skopeo:
    64 skopeo processes would swamp the 2 cores this runs on and measure skopeo."""
    repos = [PULLED_REPOS[i % len(PULLED_REPOS)] for i in range(CONCURRENT_PULLS)]
    started = time.monotonic()
    received = await asyncio.gather(*(pull(mirror.url, r, images[r]) for r in repos))
    seconds = time.monotonic() - started
    print(f"{CONCURRENT_PULLS} pulls, {sum(received) / 1e6:.0f} MB, in {seconds:.1f} s")
    assert seconds < 30
    assert received == [pulled_size(images[r]) for r in repos]


def pulled_size(image: BuiltImage) -> int:
    amd64 = image.platforms["linux/amd64"]
    blobs = [amd64.manifest, amd64.config, *amd64.layers, *([image.index] if image.index else [])]
    return sum(b.size for b in blobs)
