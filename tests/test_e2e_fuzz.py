"""End to end: a bounded, seeded fuzz of the mirror's HTTP surface, in front of the real
token-auth registry ("docker.io") and the plain one ("lab.test"), open and with client auth.

Mutated HTTP/1.1 requests go over raw sockets; HTTP/2 requests over TLS with ALPN h2
(mitmproxy 11 kills h2c prior-knowledge connections: "not supported"). Every answer is
judged by `judge`; afterwards the mirror must be alive, its log free of tracebacks, and a
real skopeo pull through it must still give the built image's digest.

The seed is fixed (REGMIRROR_FUZZ_SEED overrides it) and printed; so is every failing input,
with the answer and the log lines it caused, then the failures grouped by cause.
"""

import base64
import json
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import pytest

from tests.support.clients import CommandError
from tests.support.rawhttp import Answer, Response, exchange, h2_exchange, tls_h2_context

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("REGMIRROR_FUZZ_SEED", "20250811"))
H1_CASES, H2_CASES = 200, 60  # per variant, after the probes: about 590 requests in all
TIMEOUT = 3.0  # seconds for a complete request's answer; the mirror answers in milliseconds
WAIT = 0.15  # seconds for a deliberately incomplete request (the mirror may rightly wait)

USER, PASSWORD = "jürgen", "pässwörd-€"  # htpasswd (bcrypt of the UTF-8 bytes)
STATIC_TOKEN = "ci-token-0123456789abcdef"
b64 = base64.b64encode
VALID_BASIC = [b64(f"{USER}:{PASSWORD}".encode()), b64(f"anyone:{STATIC_TOKEN}".encode())]
# Error codes only distribution sends: an answer carrying one came from the upstream.
UPSTREAM_CODES = ("MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "MANIFEST_INVALID")
# A redirect URL the mirror never signed, with a non-ASCII signature.
FORGED_REDIRECT = b"/_regmirror/redirect?u=http://127.0.0.1:1/x&e=99999999999&s=%C3%A9"


# ------------------------------------------------------------------------------------------
# the mirror under test
# ------------------------------------------------------------------------------------------


@pytest.fixture(params=["open", "auth"])
def fuzzed(request, mirror_factory, tmp_path, registry, plain_registry, monkeypatch):
    """(variant, mirror): docker.io is the token registry, lab.test the plain one; "auth"
    adds client authentication (an htpasswd user with a non-ASCII password, and a token)."""
    # log lines must reach the file as they happen, to tie them to the input that caused them
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    config = (
        f'[registries."docker.io"]\nurl = "{registry.url}"\n'
        f'[registries."lab.test"]\nurl = "{plain_registry.url}"\n'
    )
    if request.param == "auth":
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        (tmp_path / "htpasswd").write_text(f"{USER}:{hashed}\n", encoding="utf-8")
        config += f'[auth]\nhtpasswd = "htpasswd"\ntokens = ["{STATIC_TOKEN}"]\n'
    cfg = tmp_path / "mirror.toml"
    cfg.write_text(config, encoding="utf-8")
    return request.param, mirror_factory(registry.url, {"regmirror_config": str(cfg)})


# ------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------


@dataclass
class Request:
    """An HTTP/1 request under construction. A header whose value is None is a raw line."""

    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes | None]]
    body: bytes = b""
    version: bytes = b"HTTP/1.1"
    eol: bytes = b"\r\n"
    framed: bool = False  # a mutation set Content-Length / Transfer-Encoding itself
    complete: bool = True  # False: the server may rightly wait for more bytes
    prefix: bytes = b""
    cut: int | None = None  # send only this many bytes

    def encode(self) -> bytes:
        headers = list(self.headers)
        if not self.framed and (self.body or self.method == b"POST"):
            headers.append((b"Content-Length", str(len(self.body)).encode()))
        line = b" ".join(p for p in (self.method, self.target, self.version) if p)
        lines = [line] + [n if v is None else n + b": " + v for n, v in headers]
        data = self.prefix + self.eol.join(lines) + self.eol + self.eol + self.body
        return data if self.cut is None else data[: self.cut]

    def set_header(self, name: bytes, value: bytes | None) -> None:
        self.headers = [(n, v) for n, v in self.headers if n.lower() != name.lower()]
        if value is not None:
            self.headers.append((name, value))


@dataclass
class Case:
    n: int
    label: str
    method: bytes
    target: bytes  # the request target or :path
    data: bytes = b""  # HTTP/1: the bytes sent
    h2_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""  # HTTP/2: DATA
    complete: bool = True

    @property
    def h2(self) -> bool:
        return bool(self.h2_headers)

    def shown(self) -> str:
        if self.h2:
            return f"h2 headers={self.h2_headers!r} body={self.body[:300]!r}"
        return repr(self.data if len(self.data) <= 1200 else self.data[:1200] + b"...")


def bases(images) -> list[tuple[bytes, bytes, bytes]]:
    """(method, target, body) of well-formed requests for every endpoint."""
    testimg, app = images["library/testimg"], images["org/app"]
    layer, app_layer = testimg.layers[0].digest.encode(), app.layers[0].digest.encode()
    digest = testimg.digest.encode()
    form = (
        b"grant_type=password&username=j%C3%BCrgen&password=p%C3%A4ssw%C3%B6rd-%E2%82%AC"
        b"&service=test-registry&scope=repository:testimg:pull&client_id=fuzz"
    )
    get = b"GET"
    return [
        (get, b"/v2/", b""),
        (get, b"/v2/auth?service=test-registry&scope=repository:testimg:pull", b""),
        (get, b"/v2/auth/docker.io?scope=repository:testimg:pull&scope=repository:x:pull", b""),
        (get, b"/v2/auth/lab.test?scope=repository:org/app:pull", b""),
        (b"POST", b"/v2/auth", form),
        (b"POST", b"/v2/auth/docker.io", form),
        (get, b"/v2/testimg/manifests/1", b""),
        (b"HEAD", b"/v2/library/testimg/manifests/" + digest, b""),
        (get, b"/v2/docker.io/testimg/manifests/1", b""),
        (get, b"/v2/lab.test/org/app/manifests/1", b""),
        (get, b"/v2/org/app/manifests/1?ns=lab.test", b""),
        (get, b"/v2/testimg/blobs/" + layer, b""),
        (get, b"/v2/lab.test/org/app/blobs/" + app_layer, b""),
        (get, b"/v2/testimg/tags/list?n=1", b""),
        (get, b"/v2/lab.test/org/app/tags/list?n=1&last=0", b""),
        (get, b"/v2/_catalog", b""),
        (get, b"/v2/testimg/referrers/" + digest, b""),
        (get, FORGED_REDIRECT, b""),
        (get, b"/_regmirror/metrics", b""),
        (get, b"/_regmirror/healthz", b""),
        (get, b"/", b""),
    ]


METHODS = [
    b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"TRACE", b"CONNECT",
    b"PRI", b"get", b"G\xffT", b"GE\x00T", b"M-SEARCH", b"X" * 300, b"GET\tGET",
]  # fmt: skip
PCT = [
    b"%FF", b"%00", b"%2F", b"%2e%2e", b"%C3%A9", b"%0A", b"%0D%0A", b"%25", b"%zz", b"%", b"%F",
    b"%C3", b"%ED%A0%80", b"%u00e9", b"%EF%BF%BF", b"%7F", b"%20", b"%3F", b"%23",
]  # fmt: skip
RAW = [
    b"\xff", b"\xfe\xff", b"\x80", b"\xc3\x28", b"\xed\xa0\x80", b"\x7f", b"\t", b"\x00",
    b"\xc3\xa9", b"#", b"\\", b"\x1b[31m",
]  # fmt: skip
DOTS = [b"/..", b"/../..", b"/.", b"//", b"/%2e%2e", b"/.%2e", b"/..;", b"/...", b"\\..\\"]
QUERIES = [
    b"ns=docker.io&ns=lab.test", b"ns=lab.test&ns=lab.test", b"ns=%FF", b"ns=\xff", b"ns=",
    b"ns", b"ns=LAB.TEST", b"ns=docker.io%00", b"ns=%C3%A9", b"ns=" + b"a" * 3000,
    b"scope=repository:testimg:pull%0Aevil", b"scope=%FF", b"scope=%0A", b"scope=\xff",
    b"scope=repository:%FF:pull", b"scope=repository:testimg:pull&scope=%FF%FE",
    b"scope=repository::pull", b"scope=::::", b"scope=repository:a:pull%20push",
    b"service=%FF", b"service=test-registry&service=x", b"account=%FF&offline_token=%FF",
    b"account=\xff", b"n=-1", b"n=99999999999999999999", b"last=%FF", b"n=%FF&last=\xff",
    b"&&==&", b"=", b"%", b"scope=%F", b"a=%C3%A9", b"scope=repository:a:pull&" * 60,
    b"u=%FF&e=1&s=%FF", b"u=&e=&s=", b"e=99999999999999999999999&s=x&u=http://x",
]  # fmt: skip
AUTH = [
    b"Basic " + b64(b"\xff\xfe:\xff"),
    b"Basic " + b64("jürgen:pässwörd".encode("latin-1")),
    b"Basic " + b64(f"{USER}:wrong-ü".encode()),
    b"Basic " + b64(f"{USER}:{PASSWORD}".encode()),
    b"Basic " + b64(f"anyone:{STATIC_TOKEN}".encode()),
    b"basic " + b64(f"{USER}:{PASSWORD}".encode()),
    b"Basic " + b64(f"{USER}:{PASSWORD}".encode())[:-2],
    b"Basic " + b64(f"{USER}:{PASSWORD}".encode()) + b"\xff",
    b"Basic " + f"{USER}:{PASSWORD}".encode(),
    b"Basic " + b64(b"nocolon"), b"Basic " + b64(b":"), b"Basic " + b64(b"\x00:\x00"),
    b"Basic \xff\xfe\xfd", b"Basic !!!", b"Basic ", b"Basic", b"Basic  " + b64(b"a:b") + b"  ",
    b"Bearer \xff", b"Bearer \xff\xfe" + b"A" * 40, b"Bearer " + "tökén".encode(), b"Bearer ",
    b"Bearer", b"Bearer " + b"A" * 20000, b"Bearer a b c", b"bearer \xc3\xa9", b"Negotiate \xff",
    b"\xff\xfe", b"",
]  # fmt: skip
HOSTS = [
    b"", None, b"127.0.0.1", b'evil"host', b"\xff", b"127.0.0.1:99999", b"127.0.0.1:abc",
    b"[::1]:{port}", b"[::1", b"a b", b"localhost:{port}", b"lab.mirror.test",
    b"127.0.0.1:{port}/v2/x", b"user@127.0.0.1:{port}", b"a" * 300, b"127.0.0.1:{port}\t",
    b"127.0.0.1.:{port}", b"lab.test", b"docker.io", b"LAB.TEST", b"%FF", b"h\xc3\xa9st",
    b"127.0.0.1:{port}, evil.example", b"169.254.169.254",
]  # fmt: skip
FORMS = [
    b"grant_type=password&username=%FF&password=%FF&service=test-registry&scope=repository:testimg:pull",
    b"grant_type=password&username=\xff&password=\xfe",
    b"scope=%0A&scope=%FF", b"=&=&&", b"%", b"%%%%", b"grant_type=refresh_token&refresh_token=%FF",
    b"grant_type=password&username=" + b"a" * 5000, b"scope=" + b"repository:a:pull+" * 400,
    b"\x00\x01\x02\xff", b'{"json": true}', b"a" * (70 << 10),
]  # fmt: skip
CONTENT_TYPES = [
    None, b"multipart/form-data; boundary=x", b"application/x-www-form-urlencoded; charset=\xff",
    b"application/json", b"application/x-www-form-urlencoded; charset=latin-1",
]  # fmt: skip
VERSIONS = [
    b"HTTP/1.0", b"http/1.1", b"HTTP/2.0", b"HTTP/9.9", b"HTTP/1.1 x", b"", b"HTTP/1.1\xff",
    b"HTTP/01.1", b"HTTP/1", b"HTTP/1.1\x00",
]  # fmt: skip

Mutation = Callable[[random.Random, Request, int], str]


def _split(target: bytes) -> tuple[bytes, bytes | None]:
    path, sep, query = target.partition(b"?")
    return path, query if sep else None


def _join(path: bytes, query: bytes | None) -> bytes:
    return path if query is None else path + b"?" + query


def _insert(rng: random.Random, path: bytes, piece: bytes) -> bytes:
    at = rng.randrange(1, len(path) + 1) if len(path) > 1 else len(path)
    return path[:at] + piece + path[at:]


def m_method(rng, req, port):
    req.method = rng.choice(METHODS)
    return f"method {req.method[:12]!r}"


def m_path_pct(rng, req, port):
    path, query = _split(req.target)
    pieces = [rng.choice(PCT) for _ in range(rng.randint(1, 3))]
    for piece in pieces:
        path = _insert(rng, path, piece)
    req.target = _join(path, query)
    return f"path %xx {b''.join(pieces)!r}"


def m_path_bytes(rng, req, port):
    path, query = _split(req.target)
    piece = rng.choice(RAW)
    req.target = _join(_insert(rng, path, piece), query)
    return f"path bytes {piece!r}"


def m_path_dots(rng, req, port):
    path, query = _split(req.target)
    piece = rng.choice(DOTS)
    req.target = _join(_insert(rng, path, piece), query)
    return f"path {piece!r}"


def m_path_long(rng, req, port):
    path, query = _split(req.target)
    size = rng.choice([300, 2000, 4100, 9000])
    piece = rng.choice([b"/" + b"a" * size, b"/a" * (size // 2), b"%FF" * (size // 3)])
    req.target = _join(path + piece, query)
    return f"long path +{len(piece)}"


def m_query(rng, req, port):
    path, query = _split(req.target)
    extra = rng.choice(QUERIES)
    query = extra if query is None or rng.random() < 0.5 else query + b"&" + extra
    req.target = _join(path, query)
    return f"query {extra[:40]!r}"


def m_auth(rng, req, port):
    value = rng.choice(AUTH)
    name = b"Proxy-Authorization" if rng.random() < 0.1 else b"Authorization"
    req.set_header(name, value)
    return f"{name.decode()} {value[:40]!r}"


def m_duplicate(rng, req, port):
    name, values = rng.choice(
        [
            (b"Host", [b"127.0.0.1:%d" % port, b"evil.example"]),
            (b"Authorization", [rng.choice(AUTH), rng.choice(AUTH)]),
            (b"Content-Length", [b"0", b"5"]),
            (b"Content-Length", [b"0", b"0"]),
            (b"Transfer-Encoding", [b"chunked", b"identity"]),
            (b"Connection", [b"close", b"keep-alive, Upgrade"]),
            (b"Accept", [b"*/*", b"\xff"]),
        ]
    )
    for value in values:
        req.headers.append((name, value))
    if name in (b"Content-Length", b"Transfer-Encoding"):
        req.framed = True
        if name == b"Transfer-Encoding":
            req.body = b"0\r\n\r\n"
    return f"duplicate {name.decode()} {values!r}"


def m_host(rng, req, port):
    host = rng.choice(HOSTS)
    req.set_header(b"Host", host.replace(b"{port}", str(port).encode()) if host else host)
    return f"Host {host[:40] if host is not None else None!r}"


def m_huge(rng, req, port):
    size = rng.choice([8000, 30000, 70000])
    kind = rng.randrange(4)
    if kind == 0:
        req.headers.append((b"X-Fuzz", b"A" * size))
    elif kind == 1:
        req.set_header(b"Authorization", b"Bearer " + b"\xff" * size)
    elif kind == 2:
        req.headers += [(b"X-F%d" % i, b"v") for i in range(size // 100)]
    else:
        req.set_header(b"Accept", b"application/json, " * (size // 18))
    return f"huge header kind {kind} {size}"


def m_crlf(rng, req, port):
    kind = rng.randrange(12)
    if kind == 0:
        req.headers.append((b"X-A", b"x\nInjected: 1"))
    elif kind == 1:
        req.headers.append((b"X-A", b"x\rInjected: 1"))
    elif kind == 2:
        req.headers.append((b"X-A", b"x\r\n continued"))
    elif kind == 3:
        req.headers.append((b"NoColonHere", None))
    elif kind == 4:
        req.headers.append((b"Host : evil.example", None))
    elif kind == 5:
        req.headers.append((rng.choice([b"X\xffY", b"X Y", b"", b":"]), b"1"))
    elif kind == 6:
        req.headers.append((b"X-A", b"a\x00b"))
    elif kind == 7:
        # RFC 9112 2.2: servers SHOULD ignore empty lines before the request line; mitmproxy 11
        # waits for more bytes instead (its own quirk, not the mirror's)
        req.prefix, req.complete = b"\r\n" * rng.randint(1, 3), False
    elif kind == 8:
        req.eol = b"\n"
    elif kind == 9:
        req.eol, req.complete = b"\r", False
    elif kind == 10:
        path, query = _split(req.target)
        req.target = _join(path + b"\r\nX-Injected: 1\r\n", query)
    else:
        req.method = req.method + b"\t"
    return f"crlf kind {kind}"


def m_misc_header(rng, req, port):
    name, value = rng.choice(
        [
            (b"X-Forwarded-Host", b"\xff"),
            (b"X-Forwarded-Proto", b"gopher"),
            (b"X-Forwarded-For", b"\xff, ::1"),
            (b"Range", b"bytes=\xff-"),
            (b"Range", b"bytes=99999999999999999999-"),
            (b"Accept", b"\xff\xfe"),
            (b"If-None-Match", b'"\xff"'),
            (b"Expect", b"100-continue"),
            (b"Upgrade", b"h2c"),
            (b"Cookie", b"a=\xff"),
            (b"Content-Type", b"\xff"),
            (b"Connection", b"Upgrade, HTTP2-Settings"),
            (b"Accept-Encoding", b"gzip;q=\xff, br"),
            (b"User-Agent", "fuzz/ü".encode()),
        ]
    )
    req.set_header(name, value)
    return f"header {name.decode()} {value!r}"


def m_body(rng, req, port):
    req.method = b"POST" if rng.random() < 0.8 else req.method
    if req.framed:  # a new body, framed by its Content-Length again
        req.set_header(b"Transfer-Encoding", None)
        req.set_header(b"Content-Length", None)
        req.framed = False
    if rng.random() < 0.3:
        req.body = rng.randbytes(rng.randint(1, 400))
        label = "random body"
    else:
        req.body = rng.choice(FORMS)
        label = f"form {req.body[:40]!r}"
    ctype = rng.choice([b"application/x-www-form-urlencoded", *CONTENT_TYPES])
    req.set_header(b"Content-Type", ctype)
    return f"{label} type {ctype!r}"


def m_length(rng, req, port):
    req.method = b"POST" if rng.random() < 0.7 else req.method
    req.body = req.body or rng.choice(FORMS[:4])
    req.framed = True
    n = len(req.body)
    value = rng.choice(
        [
            str(max(n - 3, 0)).encode(), str(n + 10).encode(), b"-1", b"abc", b"1e3",
            b" %d" % n, b"+%d" % n, b"0x10", b"99999999999999999999", b"%d, %d" % (n, n), b"",
            b"2000000",
        ]
    )  # fmt: skip
    if value in (str(n + 10).encode(), b"2000000", b"99999999999999999999"):
        req.complete = False  # the mirror may wait for the body, or refuse at once
    req.set_header(b"Content-Length", value)
    return f"Content-Length {value!r} for {n} bytes"


def m_chunked(rng, req, port):
    req.method = b"POST" if rng.random() < 0.7 else req.method
    form = req.body or FORMS[0]
    size = b"%x" % len(form)
    bodies = {
        "valid": size + b"\r\n" + form + b"\r\n0\r\n\r\n",
        "size zz": b"zz\r\n" + form + b"\r\n0\r\n\r\n",
        "size -1": b"-1\r\n" + form + b"\r\n0\r\n\r\n",
        "size huge": b"ffffffffffffffffffff\r\n" + form + b"\r\n0\r\n\r\n",
        "size 0x": b"0x" + size + b"\r\n" + form + b"\r\n0\r\n\r\n",
        "size space": b" " + size + b" \r\n" + form + b"\r\n0\r\n\r\n",
        "extension": size + b";ext=\xff\r\n" + form + b"\r\n0\r\n\r\n",
        "no crlf after data": size + b"\r\n" + form + b"0\r\n\r\n",
        "bad trailer": size + b"\r\n" + form + b"\r\n0\r\nX\xff: y\r\nNoColon\r\n\r\n",
        "lf only": size + b"\n" + form + b"\n0\n\n",
        "short chunk": b"%x" % (len(form) + 50) + b"\r\n" + form + b"\r\n0\r\n\r\n",
        "truncated": size + b"\r\n" + form[: len(form) // 2],
        "no last chunk": size + b"\r\n" + form + b"\r\n",
    }
    kind = rng.choice(sorted(bodies))
    req.body, req.framed = bodies[kind], True
    # mitmproxy waits for more bytes on LF-only chunk lines and on a size it cannot reach
    if kind in ("truncated", "no last chunk", "short chunk", "lf only", "size huge"):
        req.complete = False
    te = rng.choice([b"chunked", b"chunked", b"Chunked", b"gzip, chunked", b"chunked, identity"])
    req.set_header(b"Transfer-Encoding", te)
    if rng.random() < 0.2:
        req.set_header(b"Content-Length", b"3")
    return f"chunked {kind} TE {te!r}"


def m_version(rng, req, port):
    req.version = rng.choice(VERSIONS)
    return f"version {req.version!r}"


def m_truncate(rng, req, port):
    req.cut = rng.randrange(1, len(req.encode()))
    req.complete = False
    return f"cut at {req.cut}"


H1_MUTATIONS: list[Mutation] = [
    m_method, m_path_pct, m_path_bytes, m_path_dots, m_path_long, m_query, m_query, m_auth,
    m_auth, m_duplicate, m_host, m_huge, m_crlf, m_crlf, m_misc_header, m_body, m_length,
    m_chunked, m_chunked, m_version,
]  # fmt: skip


def new_request(method: bytes, target: bytes, body: bytes, port: int) -> Request:
    req = Request(
        method,
        target,
        [(b"Host", b"127.0.0.1:%d" % port), (b"User-Agent", b"fuzz"), (b"Connection", b"close")],
        body,
    )
    if body:
        req.headers.append((b"Content-Type", b"application/x-www-form-urlencoded"))
    return req


def h1_probes(port: int) -> list[tuple[str, Request]]:
    """Inputs named by the security review, sent first so that every seed covers them."""
    manifest, token = b"/v2/testimg/manifests/1", b"/v2/auth?scope=repository:testimg:pull"
    big = b"100000\r\n" + b"a" * 0x100000 + b"\r\n"
    probes = [
        ("token scope %FF", b"GET", b"/v2/auth?scope=%FF", None, b""),
        ("token scope raw \\xff", b"GET", b"/v2/auth/docker.io?scope=\xff", None, b""),
        (
            "token scope %0A",
            b"GET",
            b"/v2/auth/docker.io?scope=repository:testimg:pull%0Ax",
            None,
            b"",
        ),
        ("token account %FF", b"GET", token + b"&account=%FF&offline_token=%FF", None, b""),
        ("ns twice", b"GET", manifest + b"?ns=docker.io&ns=lab.test", None, b""),
        ("ns %FF", b"GET", manifest + b"?ns=%FF", None, b""),
        ("redirect s=%C3%A9", b"GET", FORGED_REDIRECT, None, b""),
        ("redirect u=%FF", b"GET", b"/_regmirror/redirect?u=%FF&e=99999999999&s=AAAA", None, b""),
        ("Bearer \\xff", b"GET", manifest, b"Bearer \xff", b""),
        ("Basic \\xff", b"GET", token, b"Basic \xff\xfe", b""),
        ("Basic latin-1", b"GET", token, b"Basic " + b64("jürgen:pässwörd".encode("latin-1")), b""),
        ("Basic UTF-8", b"GET", token, b"Basic " + VALID_BASIC[0], b""),
        ("Basic wrong UTF-8", b"GET", token, b"Basic " + b64(f"{USER}:wrong-ü".encode()), b""),
        ("Basic static token", b"GET", token, b"Basic " + VALID_BASIC[1], b""),
        ("POST form %FF", b"POST", b"/v2/auth", None, FORMS[0]),
        ("POST form raw \\xff", b"POST", b"/v2/auth/docker.io", None, FORMS[1]),
        ("POST 70 KiB form", b"POST", b"/v2/auth", None, FORMS[-1]),
        # methods are case-sensitive (RFC 9110 9.1); mitmproxy's Request.method upper-cases
        ("method get", b"get", b"/v2/lab.test/org/app/tags/list", None, b""),
    ]
    out = []
    for label, method, target, auth, body in probes:
        req = new_request(method, target, body, port)
        if auth is not None:
            req.set_header(b"Authorization", auth)
        out.append((label, req))
    # RFC 9110 5.5: a proxy must reject CR, LF and NUL in field values or replace them by SP
    for value in (b"x\rInjected: 1", b"a\x00b"):
        req = new_request(b"GET", b"/v2/lab.test/org/app/tags/list", b"", port)
        req.headers.append((b"X-A", value))
        out.append((f"header value {value!r}", req))
    req = new_request(b"GET", b"/v2/lab.test/org/app/tags/list", b"", port)
    req.version = b"HTTP/9.9"
    out.append(("HTTP/9.9", req))
    for target in (b"/v2/auth", b"/v2/testimg/manifests/1"):
        req = new_request(b"POST", target, b"\xff=\xff&password=x", port)
        req.set_header(b"Content-Type", b"application/x-www-form-urlencoded; charset=\xff")
        out.append((f"form with charset \\xff to {target.decode()}", req))
    # bodies over stream_large_bodies (1m) where the mirror answers itself (an upload, the
    # root redirect, a status endpoint), or where none belongs (a GET): announced, or chunked
    for method, target in [
        (b"PUT", b"/v2/testimg/blobs/uploads/x?digest=sha256:0"),
        (b"POST", b"/"),
        (b"POST", b"/_regmirror/healthz"),
        (b"GET", b"/v2/lab.test/org/app/tags/list"),
    ]:
        req = new_request(method, target, b"abc", port)
        req.set_header(b"Content-Length", b"2000000")
        req.framed, req.complete = True, False
        out.append((f"{method.decode()} {target.decode()} with Content-Length 2000000", req))
    req = new_request(b"PATCH", b"/v2/testimg/blobs/uploads/x", big + b"0\r\n\r\n", port)
    req.set_header(b"Transfer-Encoding", b"chunked")
    req.framed = True
    out.append(("PATCH with a 1 MiB chunk", req))
    return out


def h1_cases(rng: random.Random, images, port: int, count: int) -> list[Case]:
    """The probes, then `count` requests: each a well-formed one with one mutation (in turn,
    so every kind is covered), often a second one, rarely a truncation."""
    made = h1_probes(port)
    base_requests = bases(images)
    for n in range(count):
        req = new_request(*rng.choice(base_requests), port)
        labels = [H1_MUTATIONS[n % len(H1_MUTATIONS)](rng, req, port)]
        if rng.random() < 0.4:
            labels.append(rng.choice(H1_MUTATIONS)(rng, req, port))
        if rng.random() < 0.03:
            labels.append(m_truncate(rng, req, port))
        made.append(("; ".join(labels), req))
    # mitmproxy splits the request line at any whitespace: that is the method it sees
    return [
        Case(
            n,
            label,
            (req.method.split() or [b""])[0],
            req.target,
            req.encode(),
            complete=req.complete,
        )
        for n, (label, req) in enumerate(made)
    ]


def h2_cases(rng: random.Random, images, port: int, count: int, first: int) -> list[Case]:
    """HTTP/2 probes, then `count` requests with mutated pseudo-headers, header values and
    bodies."""
    base_requests = bases(images)
    authority = b"127.0.0.1:%d" % port
    cases = []
    for n, (label, method, path, auth) in enumerate(
        [
            ("authorization \\xff", b"GET", b"/v2/testimg/manifests/1", b"Bearer \xff\xfe"),
            ("basic \\xff", b"GET", b"/v2/auth?scope=repository:testimg:pull", b"Basic \xff"),
            ("scope %FF", b"GET", b"/v2/auth?scope=%FF", b""),
            (":path \\xff", b"GET", b"/v2/\xff/manifests/1", b""),
            (":method get", b"get", b"/v2/lab.test/org/app/tags/list", b""),
        ]
    ):
        headers = [(b":method", method), (b":scheme", b"https"), (b":authority", authority)]
        headers += [(b":path", path)] + ([(b"authorization", auth)] if auth else [])
        cases.append(Case(first + n, f"h2 probe {label}", method, path, h2_headers=headers))
    first += len(cases)
    for n in range(count):
        method, target, body = rng.choice(base_requests)
        pseudo = {b":method": method, b":scheme": b"https", b":authority": authority}
        pseudo[b":path"] = target
        regular = [(b"user-agent", b"fuzz"), (b"accept", b"*/*")]
        if body:
            regular += [(b"content-type", b"application/x-www-form-urlencoded")]
            regular += [(b"content-length", str(len(body)).encode())]
        end_stream, labels = True, []
        for _ in range(1 if rng.random() < 0.6 else 2):
            kind = rng.randrange(14)
            if kind == 0:
                drop = rng.choice(sorted(pseudo))
                del pseudo[drop]
                labels.append(f"no {drop.decode()}")
            elif kind == 1:
                pseudo[b":method"] = rng.choice(METHODS + [b"", b"get"])
                labels.append(f":method {pseudo[b':method'][:12]!r}")
            elif kind == 2:
                value = rng.choice(
                    [b"", b"*", b"v2/", b"http://evil.example/v2/", b"/v2/\xff/manifests/1",
                     b"/v2/%FF/manifests/1", b"/v2/a/../../x", b"/" + b"a" * 9000, b"/v2/ a"]
                )  # fmt: skip
                pseudo[b":path"] = value
                labels.append(f":path {value[:40]!r}")
            elif kind == 3:
                path, query = _split(pseudo.get(b":path", target))
                pseudo[b":path"] = _join(path, rng.choice(QUERIES))
                labels.append(f":path query {pseudo[b':path'][:60]!r}")
            elif kind == 4:
                r = Request(b"GET", pseudo.get(b":path", target), [])
                labels.append(rng.choice([m_path_pct, m_path_bytes, m_path_dots])(rng, r, port))
                pseudo[b":path"] = r.target
            elif kind == 5:
                pseudo[b":scheme"] = rng.choice([b"ftp", b"", b"http", b"HTTPS", b"\xff"])
                labels.append(f":scheme {pseudo[b':scheme']!r}")
            elif kind == 6:
                host = rng.choice([h for h in HOSTS if h is not None])
                pseudo[b":authority"] = host.replace(b"{port}", str(port).encode())
                labels.append(f":authority {host[:40]!r}")
            elif kind == 7:
                regular.append((b"authorization", rng.choice(AUTH)))
                labels.append(f"authorization {regular[-1][1][:40]!r}")
            elif kind == 8:
                header = rng.choice(
                    [(b"x-a", b"x\r\ny: 1"), (b"x-a", b"a\x00b"), (b"x-a", b" padded "),
                     (b"Authorization", b"Bearer x"), (b"connection", b"keep-alive"),
                     (b"te", b"gzip"), (b"transfer-encoding", b"chunked"),
                     (b"host", b"evil.example"), (b"x\xffy", b"1"), (b"x y", b"1"), (b"", b"1"),
                     (b"upgrade", b"h2c"), (b"x-forwarded-host", b"\xff")]
                )  # fmt: skip
                regular.append(header)
                labels.append(f"header {header!r}")
            elif kind == 9:
                regular.append((b"x-fuzz", b"A" * rng.choice([16000, 60000])))
                labels.append("huge header")
            elif kind == 10:
                name = rng.choice([b":path", b":method", b":authority", b":foo", b":status"])
                regular.append((name, b"/v2/" if name == b":path" else b"GET"))
                labels.append(f"{name.decode()} after regular headers")
            elif kind == 11:
                regular = [(n, v) for n, v in regular if n != b"content-length"]
                regular.append((b"content-length", rng.choice([b"3", b"100", b"-1", b"x"])))
                body = body or rng.choice(FORMS[:4])
                labels.append(f"content-length {regular[-1][1]!r} for {len(body)} bytes")
            elif kind == 12:
                body = rng.choice(FORMS[:-1]) if rng.random() < 0.7 else rng.randbytes(300)
                labels.append(f"body {body[:40]!r}")
            else:
                end_stream = False
                labels.append("stream left open")
        headers = list(pseudo.items()) + regular
        if rng.random() < 0.1:
            rng.shuffle(headers)
            labels.append("shuffled")
        cases.append(
            Case(
                first + n,
                "h2 " + "; ".join(labels),
                pseudo.get(b":method", b""),
                pseudo.get(b":path", b""),
                h2_headers=headers,
                body=body,
                complete=end_stream,
            )
        )
    return cases


# ------------------------------------------------------------------------------------------
# judging the answers
# ------------------------------------------------------------------------------------------


def endpoint(target: bytes) -> str:
    """What the mirror should take the target for: token, api, redirect, status or other."""
    path = target.split(b"?", 1)[0]
    if path == b"/v2/auth" or path.startswith(b"/v2/auth/"):
        return "token"
    if path.startswith(b"/v2/") or path == b"/v2":
        return "api"
    if path.startswith(b"/_regmirror/redirect"):
        return "redirect"
    return "status" if path.startswith(b"/_regmirror/") else "other"


def registry_error(body: bytes) -> str | None:
    """The first error code of a registry error body, None when it is not one."""
    try:
        errors = json.loads(body)["errors"]
        return str(errors[0]["code"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def from_upstream(resp: Response) -> str:
    """Which upstream answered, by the marks the mirror never adds itself: distribution's
    X-Content-Type-Options and error codes, the test token server's Server header."""
    if "test-token-server" in resp.headers.get("server", ""):
        return "token server"
    if resp.headers.get("x-content-type-options") == "nosniff":
        return "registry"
    code = registry_error(resp.body) or ""
    return "registry" if code in UPSTREAM_CODES else ""


# Go's net/http refuses requests it cannot parse before distribution sees them, in text and
# without distribution's marks: "400 Bad Request: invalid header value".
_GO_REFUSAL = re.compile(rb"\d{3} [A-Za-z ]+(?:: [ -~]*)?")


def refused_upstream(resp: Response) -> bool:
    return (
        resp.headers.get("content-type", "").startswith("text/plain")
        and "x-content-type-options" not in resp.headers
        and _GO_REFUSAL.fullmatch(resp.body.strip()) is not None
    )


def judge(case: Case, answer: Answer, variant: str) -> list[str]:
    """What is wrong with the answer to `case`:
    - a complete request gets an answer (or the connection closed, or for HTTP/2 a reset);
    - no 5xx: the upstreams are healthy, so not even 502/504 (only the mirror's own 505
      for an HTTP version it does not speak);
    - nothing the upstream refuses as malformed: the mirror refuses that itself;
    - every 4xx with a body that the mirror (or mitmproxy, see
      upstream.install_error_pages) sends is a registry error; upstream answers pass as they
      are, and the operator endpoints under /_regmirror/ answer in text;
    - only GET/HEAD (and POST to the token endpoint) reach an upstream; a forged redirect
      reaches nothing;
    - with client auth, no API request reaches an upstream (none carries a mirror token),
      and only valid credentials get a token.
    """
    problems = []
    kind = endpoint(case.target)
    if answer.timed_out and case.complete:
        problems.append(f"no answer within {TIMEOUT:g} s")
    for resp in answer.responses:
        # HEAD answers have no body: the mirror's errors still say they are JSON
        json_head = case.method == b"HEAD" and "json" in resp.headers.get("content-type", "")
        ours = (registry_error(resp.body) is not None or json_head) and not from_upstream(resp)
        if resp.status >= 500 and not (resp.status == 505 and ours):
            problems.append(f"status {resp.status}")
        if resp.status >= 400 and refused_upstream(resp):
            problems.append(f"the upstream refused what the mirror forwarded: {resp.body!r}")
        elif (
            resp.status >= 400
            and resp.body
            and registry_error(resp.body) is None
            and not from_upstream(resp)
            and kind != "status"
        ):
            problems.append(f"{resp.status} is not a registry error")
    if not answer.responses:
        return problems
    first = answer.responses[0]
    upstream = from_upstream(first)
    reads = (b"GET", b"HEAD", b"POST") if kind == "token" else (b"GET", b"HEAD")
    if upstream and case.method not in reads:
        problems.append(f"{case.method[:20]!r} reached the {upstream}")
    if kind == "token" and upstream == "registry":
        problems.append("token request sent to the registry, not to its token service")
    if kind == "redirect" and (upstream or first.status < 400):
        problems.append(f"forged redirect answered {first.status} {upstream}")
    if variant == "auth":
        if kind == "api" and (upstream or first.status < 400):
            problems.append(f"fail open: unauthenticated API request got {first.status} {upstream}")
        sent = case.data + b"".join(value for _, value in case.h2_headers)
        valid = any(creds in sent for creds in VALID_BASIC)
        if kind == "token" and (upstream or first.status < 300) and not valid:
            problems.append(f"fail open: token {first.status} {upstream} without valid credentials")
    return problems


# ------------------------------------------------------------------------------------------
# the mirror's log
# ------------------------------------------------------------------------------------------


class LogCursor:
    """The mirror's log, read on from where the last read stopped."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def new(self) -> str:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        return data.decode("utf-8", "replace")


_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')


def crashes(log: str) -> list[tuple[str, str]]:
    """(signature, excerpt) per traceback in `log` (a chain of them counts once): the last
    exception's type and its innermost frame in the mirror's code (else its innermost)."""
    out: list[list[str]] = []
    lines, i = log.splitlines(), 0
    while i < len(lines):
        if not lines[i].endswith("Traceback (most recent call last):"):
            i += 1
            continue
        start = i
        i += 1
        while i < len(lines) and (not lines[i] or lines[i].startswith(" ")):
            i += 1  # frames, up to the exception line
        chained = out and any(marker in lines[start - 2 : start] for marker in _CHAINS)
        tb = lines[start : i + 1]
        if chained:
            out[-1].extend(tb)
        else:
            out.append(tb)
        i += 1
    result = []
    for tb in out:
        last = max(j for j, line in enumerate(tb) if line.endswith("(most recent call last):"))
        frames = [m for line in tb[last:] if (m := _FRAME.search(line))]
        ours = [m for m in frames if "/regmirror/" in m["file"]] or frames
        where = f"{Path(ours[-1]['file']).name}:{ours[-1]['line']}" if ours else "?"
        func = f" in {ours[-1]['func']}" if ours else ""
        result.append((f"{tb[-1].split(':', 1)[0]} at {where}{func}", "\n".join(tb)))
    if "Addon error" in log and not result:
        result.append(("Addon error without traceback", log[-2000:]))
    return result


_CHAINS = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)


# ------------------------------------------------------------------------------------------
# the test
# ------------------------------------------------------------------------------------------


@dataclass
class Failure:
    case: Case
    answer: Answer | None
    problems: list[str]
    crashes: list[tuple[str, str]]

    def groups(self) -> list[str]:
        """The crashes, then what the client saw (cut before echoed input)."""
        crashed = sorted({sig for sig, _ in self.crashes})
        return crashed + [f"answer: {p.split(' b')[0]}" for p in self.problems]

    def report(self) -> str:
        lines = [f"#{self.case.n} [{self.case.label}]", f"  sent:     {self.case.shown()}"]
        lines.append(f"  answer:   {self.answer.describe() if self.answer else '-'}")
        lines += [f"  problem:  {p}" for p in self.problems]
        for sig, excerpt in self.crashes:
            lines.append(f"  crash:    {sig}")
            lines += ["    | " + line for line in excerpt.splitlines()[-8:]]
        return "\n".join(lines)


TLS = tls_h2_context()


def send(case: Case, port: int) -> Answer:
    timeout = TIMEOUT if case.complete else WAIT
    if case.h2:
        return h2_exchange(port, case.h2_headers, case.body, case.complete, timeout, TLS)
    return exchange(port, case.data, timeout, head=case.method == b"HEAD")


def test_fuzz(fuzzed, images, skopeo, tmp_path):
    variant, mirror = fuzzed
    rng = random.Random(f"{SEED}-{variant}")
    print(f"\nfuzz seed {SEED} (REGMIRROR_FUZZ_SEED), variant {variant}, mirror {mirror.host}")
    cases = h1_cases(rng, images, mirror.port, H1_CASES)
    cases += h2_cases(rng, images, mirror.port, H2_CASES, len(cases))
    log = LogCursor(mirror.proc.log_path)
    log.new()  # start-up lines
    failures: list[Failure] = []
    started = time.monotonic()
    statuses: Counter[int] = Counter()
    for case in cases:
        answer = send(case, mirror.port)
        if not answer.closed:
            time.sleep(0.03)  # we hang up: give the mirror a moment to log what that causes
        statuses.update(resp.status for resp in answer.responses[:1])
        problems = judge(case, answer, variant)
        found = crashes(log.new())
        if problems or found:
            failures.append(Failure(case, answer, problems, found))
            print(failures[-1].report())
    elapsed = time.monotonic() - started
    print(f"{len(cases)} requests in {elapsed:.1f} s; first statuses {sorted(statuses.items())}")

    time.sleep(0.5)  # hooks of the last flows (error, done) may log after the answer
    late = crashes(log.new())
    if late:
        failures.append(Failure(cases[-1], None, ["logged after the last answer"], late))
    alive = mirror.proc.running()

    # a real pull afterwards (with client auth: the non-ASCII password)
    creds = f"{USER}:{PASSWORD}" if variant == "auth" else None
    pulled = tmp_path / "pulled"
    testimg = images["library/testimg"]
    try:
        skopeo.copy(f"{mirror.host}/testimg:1", f"oci:{pulled}:1", creds=creds)
        index = json.loads((pulled / "index.json").read_text())
        pull_problem = "" if index["manifests"][0]["digest"] == testimg.digest else str(index)
    except CommandError as e:
        pull_problem = e.stderr[-600:]
    if pull_problem:
        pull = Case(-1, f"skopeo copy --src-creds {creds}", b"GET", b"/v2/testimg/manifests/1")
        failures.append(Failure(pull, None, [f"skopeo pull: {pull_problem}"], crashes(log.new())))
        print(failures[-1].report())

    groups: dict[str, list[int]] = {}
    for failure in failures:
        for group in failure.groups():
            groups.setdefault(group, []).append(failure.case.n)
    summary = "\n".join(f"{len(ns):4} x {g}  (cases {ns[:12]})" for g, ns in sorted(groups.items()))
    print(f"failures by cause (seed {SEED}, {variant}):\n{summary or '  none'}")
    assert alive, f"the mirror died during the fuzz\n{mirror.proc.describe()}"
    assert elapsed < 60, f"the fuzz took {elapsed:.0f} s"
    assert not failures, f"{len(failures)} failing inputs (seed {SEED}, {variant}):\n{summary}"
