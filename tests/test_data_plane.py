"""The data plane: which hits get a 307 to it, its options, its listener (in process, plain
HTTP), its log words and its TLS contexts. Real clients: test_e2e_data_plane.py."""

import asyncio
import contextlib
import hashlib
import socket
import ssl
import time
import urllib.parse

import httpx
import pytest
from mitmproxy import certs, exceptions
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy.layers.http import HttpRequestHeadersHook
from mitmproxy.test import taddons
from regmirror.addons import mirror_addons
from regmirror.auth.provenance import ANONYMOUS, CLIENT
from regmirror.auth.token_proxy import TokenAuth
from regmirror.cache import blob_urls
from regmirror.cache.addon import Cache
from regmirror.cache.blob_server import (
    TLS_CHUNK,
    BlobServer,
    TlsFile,
    tls_chunk,
    transfer_ending,
    transfer_words,
)
from regmirror.cache.blob_tls import Certificates
from regmirror.cache.blob_urls import Blob
from regmirror.cache.data_plane import DataPlane, bind
from regmirror.observe.metrics import Metrics
from regmirror.observe.views import Views
from regmirror.record import outcome
from regmirror.routing.router import Router
from regmirror.transport.side_requests import SideRequests
from regmirror.transport.upstream import UpstreamConnections

from tests.flowutil import reverse_flow

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
BIG, SMALL = b"B" * 2000, b"s" * 20


def cached(cache: Cache, body: bytes, provenance: str = ANONYMOUS, name: str = "library/x") -> str:
    """Put `body` in the cache as a verified blob of docker.io/`name`; its digest."""
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    path = cache.store.path(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    cache.verified.mark(digest, path)
    cache.index.add(digest, len(body), LAYER, "blob", 0)
    cache.index.link("docker.io", name, digest, provenance)
    return digest


@pytest.fixture
async def chain(tmp_path):
    router = Router()
    tokens = TokenAuth(router, UpstreamConnections(), SideRequests())
    metrics = Metrics()
    cache = Cache(tokens, SideRequests(), metrics.registry)
    data_plane = DataPlane(cache, router.signer, metrics)
    with taddons.context(router, tokens, cache, data_plane) as tctx:
        tctx.configure(cache, regmirror_cache=str(tmp_path / "cache"))
        tctx.configure(data_plane, regmirror_blob_listen="127.0.0.1:0",
                       regmirror_blob_redirect_min="1k")  # fmt: skip
        await cache.running()
        await data_plane.running()
        try:
            yield router, cache, data_plane, tctx
        finally:
            await data_plane.done()
            await cache.done()


async def asked(router, cache, data_plane, method: str, path: str, **headers):
    f = reverse_flow(method, path, headers=headers or None)
    router.requestheaders(f)
    await cache.requestheaders(f)
    await data_plane.requestheaders(f)
    return f


async def test_a_large_blob_hit_gets_a_signed_307_that_the_data_plane_serves(chain):
    router, cache, data_plane, _ = chain
    digest = cached(cache, BIG)
    f = await asked(router, cache, data_plane, "GET", f"/v2/library/x/blobs/{digest}")
    assert f.response.status_code == 307
    assert outcome(f)["answered_by"] == "data plane" and outcome(f)["cache"] == "hit"
    location = f.response.headers["Location"]
    u = urllib.parse.urlsplit(location)
    port = data_plane.server.port
    assert (u.scheme, u.netloc, u.path) == ("http", f"mirror.test:{port}", f"/blobs/{digest}")
    assert blob_urls.verify(digest, u.query, router.signer.key, 0) == Blob(
        digest, "docker.io", "library/x", "https://registry-1.docker.io", LAYER, len(BIG)
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        got = await client.get(f"{u.path}?{u.query}")
        head = await client.head(f"{u.path}?{u.query}")
        forged = await client.get(u.path, params={"r": "docker.io"})
    assert got.status_code == 200 and got.content == BIG
    assert got.headers["Content-Type"] == LAYER and got.headers["Docker-Content-Digest"] == digest
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["Content-Length"]) == len(BIG)
    assert forged.status_code == 403 and forged.json()["errors"][0]["code"] == "DENIED"
    route = ("https://registry-1.docker.io", "blob", "cache")
    assert data_plane.metrics.served.labels(*route)._value.get() == len(BIG)


async def test_what_stays_on_the_mirrors_port(chain):
    router, cache, data_plane, _ = chain
    big, small = cached(cache, BIG), cached(cache, SMALL)
    private = cached(cache, b"P" * 2000, CLIENT)
    answered = [
        await asked(router, cache, data_plane, "HEAD", f"/v2/library/x/blobs/{big}"),
        await asked(router, cache, data_plane, "GET", f"/v2/library/x/blobs/{small}"),
        # the same digest through another repository: the upstream decides
        await asked(router, cache, data_plane, "GET", f"/v2/library/y/blobs/{big}"),
        # fetched with a client's own credentials, asked for anonymously: a miss
        await asked(router, cache, data_plane, "GET", f"/v2/library/x/blobs/{private}"),
    ]
    assert [f.response for f in answered] == [None] * 4
    assert [outcome(f)["cache"] for f in answered] == ["hit", "hit", "miss", "miss"]

    being_filled = "sha256:" + hashlib.sha256(b"F" * 2000).hexdigest()
    fill = cache.store.fill(being_filled, 2000)
    cache._filling[being_filled] = ("docker.io", "library/x", ANONYMOUS, LAYER)
    try:
        f = await asked(router, cache, data_plane, "GET", f"/v2/library/x/blobs/{being_filled}")
    finally:
        fill.abort()
    assert f.response is None and "/follow/" in f.request.path  # single flight, as before


async def test_regmirror_blob_url_is_the_base_and_an_empty_listen_turns_it_off(chain):
    router, cache, data_plane, tctx = chain
    digest = cached(cache, BIG)
    path = f"/v2/library/x/blobs/{digest}"
    tctx.configure(data_plane, regmirror_blob_url="https://blobs.example/")
    f = await asked(router, cache, data_plane, "GET", path)
    assert f.response.headers["Location"].startswith(f"https://blobs.example/blobs/{digest}?")
    tctx.configure(data_plane, regmirror_blob_listen="")
    await data_plane._switch
    assert data_plane.server is None
    f = await asked(router, cache, data_plane, "GET", path)
    assert f.response is None and outcome(f)["cache"] == "hit"


async def test_no_307_before_client_authentication(tmp_path):
    """In the mirror's chain, under client auth, a client without the mirror's token gets
    the challenge for a cached large blob, never its data-plane URL."""
    config = tmp_path / "mirror.toml"
    config.write_text(f'[auth]\ntokens = ["{"s" * 20}"]\n')
    addons = mirror_addons()
    cache = next(a for a in addons if isinstance(a, Cache))
    data_plane = next(a for a in addons if isinstance(a, DataPlane))
    try:
        with taddons.context(Proxyserver(), *addons) as tctx:
            tctx.options.update(regmirror_config=str(config), regmirror_cache=str(tmp_path / "c"),
                                regmirror_blob_redirect_min="1")  # fmt: skip
            digest = cached(cache, BIG)
            cache.files = type("Files", (), {"url": lambda self, d, t: "http://127.0.0.1:9/x"})()
            data_plane.server = type("Server", (), {"port": 5001})()
            f = reverse_flow("GET", f"/v2/library/x/blobs/{digest}")
            await tctx.master.addons.trigger_event(HttpRequestHeadersHook(f))
    finally:
        next(a for a in addons if isinstance(a, Views)).done()  # the content views are global
    assert f.response.status_code == 401 and "Location" not in f.response.headers
    assert "cache" not in outcome(f)


def test_bad_options_are_refused_naming_them():
    metrics = Metrics()
    router = Router()
    cache = Cache(TokenAuth(router, UpstreamConnections(), SideRequests()), SideRequests(),
                  metrics.registry)  # fmt: skip
    data_plane = DataPlane(cache, router.signer, metrics)
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        with taddons.context(data_plane) as tctx:
            for option, value in (
                ("regmirror_blob_listen", "nope"),
                ("regmirror_blob_listen", f"127.0.0.1:{port}"),  # in use
                ("regmirror_blob_url", "blobs.example"),
                ("regmirror_blob_redirect_min", "lots"),
                ("regmirror_blob_max_connections_per_client", -1),
            ):
                with pytest.raises(exceptions.OptionsError, match=option):
                    tctx.configure(data_plane, **{option: value})
    finally:
        taken.close()


def test_log_words():
    digest = "sha256:" + "ab" * 32
    blob = Blob(digest, "docker.io", "library/x", "https://registry-1.docker.io", LAYER, 1)
    short = f"docker.io/library/x@{digest[:19]}…"
    assert transfer_words("GET", blob, "/blobs/x", False) == f"pull blob {short} via data plane"
    assert transfer_words("HEAD", blob, "/", True) == f"check blob {short} via data plane (TLS)"
    assert transfer_words("GET", None, "/blobs/\x1b[2J", False) == (
        "request GET /blobs/\\x1b[2J via data plane"
    )
    assert transfer_ending("GET", 200, "", "", 27_100_000) == "-> 200 cache hit 27.1 MB"
    assert transfer_ending("GET", 206, "", "", 1 << 20) == "-> 206 cache hit 1.0 MB"
    assert transfer_ending("HEAD", 200, "", "", 0) == "-> 200 cache hit"
    assert transfer_ending("GET", 403, "DENIED", "blob URL expired", 0) == (
        "-> 403 DENIED (blob URL expired)"
    )


# ------------------------------------------------------------------------------------------
# TLS: the certificates of mitmproxy's store, by address and by SNI
# ------------------------------------------------------------------------------------------


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, name: str) -> dict:
    """A TLS handshake in memory; the certificate the client verified."""
    bios = [ssl.MemoryBIO() for _ in range(4)]
    c = client.wrap_bio(bios[0], bios[1], server_hostname=name)
    s = server.wrap_bio(bios[2], bios[3], server_side=True)
    done: set[int] = set()
    for _ in range(20):
        for i, end in enumerate((c, s)):
            try:
                end.do_handshake()
                done.add(i)
            except ssl.SSLWantReadError:
                pass
        bios[2].write(bios[1].read())
        bios[0].write(bios[3].read())
        if done == {0, 1}:
            return c.getpeercert()
    raise AssertionError("no handshake")


async def test_over_tls_the_file_is_sent_in_large_chunks(chain, tmp_path, monkeypatch):
    """The data plane's TLS path (TlsFile), checked byte for byte, a Range included."""
    router, cache, _, _ = chain
    body = bytes(range(256)) * (3 << 12)  # 3 MiB: several chunks
    digest = cached(cache, body)
    store = certs.CertStore.from_store(tmp_path / "ca", "mitmproxy", 2048)
    certificates = Certificates(lambda: store)
    chunks: list[int] = []
    sendfile_fallback = TlsFile._sendfile_fallback

    async def counted(self, writer, fobj, offset, count):
        chunks.append(self._chunk_size)
        return await sendfile_fallback(self, writer, fobj, offset, count)

    monkeypatch.setattr(TlsFile, "_sendfile_fallback", counted)
    server = BlobServer(bind("127.0.0.1", 0), lambda: router.signer.key, cache.lookup,
                        Metrics(), certificates.context)  # fmt: skip
    await server.start()
    blob = Blob(digest, "docker.io", "library/x", "https://registry-1.docker.io", LAYER, len(body))
    signed = blob_urls.sign(blob, router.signer.key, time.time())
    target = f"https://127.0.0.1:{server.port}{signed}"
    trusted = ssl.create_default_context(cafile=tmp_path / "ca" / "mitmproxy-ca-cert.pem")
    try:
        async with httpx.AsyncClient(verify=trusted) as client:
            got = await client.get(target)
            part = await client.get(target, headers={"Range": "bytes=1048570-2097160"})
    finally:
        await server.stop()
    assert got.status_code == 200 and got.content == body
    assert part.status_code == 206 and part.content == body[1048570:2097161]
    assert chunks == [TLS_CHUNK, TLS_CHUNK]  # no regmirror_read_size option here: malloc's own


@pytest.mark.parametrize(
    "read_size,chunk",
    [(0, TLS_CHUNK), (65535, TLS_CHUNK), (512 << 10, 960 << 10), (256 << 10, 448 << 10),
     (16 << 20, TLS_CHUNK)],
)  # fmt: skip
def test_tls_chunks_stay_under_the_mmap_threshold_that_large_reads_set(read_size, chunk):
    assert tls_chunk(read_size) == chunk
    if read_size > 65535:
        assert tls_chunk(read_size) + 33 < 2 * read_size  # bytes' header: 33 bytes


def test_tls_contexts_present_the_mirrors_certificates(tmp_path):
    store = certs.CertStore.from_store(tmp_path, "mitmproxy", 2048)
    certificates = Certificates(lambda: store)
    client = ssl.create_default_context(cafile=tmp_path / "mitmproxy-ca-cert.pem")
    by_address = handshake(certificates.context("127.0.0.1"), client, "127.0.0.1")
    assert ("IP Address", "127.0.0.1") in by_address["subjectAltName"]
    # a client's SNI picks the certificate for its name, on a connection to any address
    by_name = handshake(certificates.context("127.0.0.1"), client, "blobs.example")
    assert ("DNS", "blobs.example") in by_name["subjectAltName"]
    assert certificates.context("127.0.0.1") is certificates.context("127.0.0.1")  # kept


async def test_one_address_gets_at_most_its_limit_of_connections(chain):
    router, cache, data_plane, tctx = chain
    tctx.configure(data_plane, regmirror_blob_max_connections_per_client=2)
    digest = cached(cache, BIG)
    f = await asked(router, cache, data_plane, "GET", f"/v2/library/x/blobs/{digest}")
    u = urllib.parse.urlsplit(f.response.headers["Location"])
    port, clients = data_plane.server.port, data_plane.server.clients
    loop = asyncio.get_running_loop()

    async def connect() -> socket.socket:
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        return s

    async def closed_by_server(s: socket.socket) -> bool:
        try:
            return await asyncio.wait_for(loop.sock_recv(s, 1), 2) == b""
        except ConnectionResetError:  # closed with what it sent unread
            return True
        except TimeoutError:
            return False

    async def until(done) -> None:
        for _ in range(200):
            if done():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"still {dict(clients.open)}")

    idle = [await connect(), await connect()]  # they send nothing
    await until(lambda: clients.open["127.0.0.1"] == 2)
    third = await connect()
    assert await closed_by_server(third)
    bad_tls = await connect()  # over the limit too: closed before its handshake
    await loop.sock_sendall(bad_tls, b"\x16\x03\x01 not a handshake")
    assert await closed_by_server(bad_tls)
    idle.pop().close()
    await until(lambda: clients.open["127.0.0.1"] == 1)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        got = await client.get(f"{u.path}?{u.query}")  # a place is free again
        assert got.status_code == 200 and got.content == BIG
        assert clients.open["127.0.0.1"] == 2
    await until(lambda: clients.open["127.0.0.1"] == 1)  # the client's connection ended
    for s in (*idle, third, bad_tls):
        s.close()
    await until(lambda: not clients.open)


async def test_a_failed_tls_handshake_gives_its_place_back(chain, tmp_path):
    router, cache, _, _ = chain
    digest = cached(cache, BIG)
    store = certs.CertStore.from_store(tmp_path / "ca", "mitmproxy", 2048)
    server = BlobServer(bind("127.0.0.1", 0), lambda: router.signer.key, cache.lookup,
                        Metrics(), Certificates(lambda: store).context, lambda: 1)  # fmt: skip
    await server.start()
    blob = Blob(digest, "docker.io", "library/x", "https://registry-1.docker.io", LAYER, len(BIG))
    signed = blob_urls.sign(blob, router.signer.key, time.time())
    target = f"https://127.0.0.1:{server.port}{signed}"
    trusted = ssl.create_default_context(cafile=tmp_path / "ca" / "mitmproxy-ca-cert.pem")
    loop = asyncio.get_running_loop()
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as broken:
            broken.setblocking(False)
            await loop.sock_sendall(broken, b"\x16\x03\x01\x00\x04\x01\x00\x00\x00")  # no hello
            with contextlib.suppress(ConnectionResetError):
                assert await asyncio.wait_for(loop.sock_recv(broken, 1 << 16), 5) is not None
        for _ in range(200):
            if not server.clients.open:
                break
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(verify=trusted) as client:
            got = await client.get(target)  # the only place, free again
    finally:
        await server.stop()
    assert got.status_code == 200 and got.content == BIG
