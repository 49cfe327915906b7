import logging

from mitmproxy.test import taddons
from regmirror.observe.oplog import OpLog, describe, human_size, printable
from regmirror.routing.router import Router

from tests.flowutil import respond, reverse_flow

D = "sha256:" + "ab12" * 16


def test_human_size():
    assert human_size(0) == "0 B"
    assert human_size(999) == "999 B"
    assert human_size(1234) == "1.2 kB"
    assert human_size(27_100_000) == "27.1 MB"
    assert human_size(5 * 10**12) == "5000.0 GB"


def test_describe():
    hub = {"registry": "docker.io", "style": "host"}
    m = hub | {"op": "manifest", "name": "library/nginx", "reference": "1"}
    assert describe("GET", m, [], "") == "pull manifest docker.io/library/nginx:1"
    assert describe("HEAD", m | {"reference": D}, [], "") == (
        f"check manifest docker.io/library/nginx@{D}"
    )
    i = {"op": "manifest", "name": "org/app", "reference": "1", "registry": "ghcr.io"}
    assert describe("GET", i | {"style": "host"}, [], "") == "pull manifest ghcr.io/org/app:1"
    assert describe("GET", i | {"style": "ns"}, [], "") == "pull manifest ghcr.io/org/app:1 [ns]"
    assert describe("GET", hub | {"op": "blob", "name": "a", "reference": D}, [], "") == (
        "pull blob docker.io/a@sha256:ab12ab12ab12…"
    )
    assert describe("GET", {"op": "token"}, ["repository:a:pull", "repository:b:pull"], "") == (
        "token repository:a:pull repository:b:pull"
    )
    assert describe("GET", {"op": "redirect", "target": "cdn.example"}, [], "") == (
        "follow redirect -> cdn.example"
    )
    assert describe("PUT", {"op": "rejected"}, [], "/v2/x\x00") == "reject PUT '/v2/x\\x00'"


def test_token_scopes_of_posts_are_logged_too(caplog):
    caplog.set_level(logging.INFO)
    router, oplog = Router(), OpLog()
    with taddons.context(router, oplog):
        form = b"grant_type=password&scope=repository%3Aa%3Apull+repository%3Ab%3Apull"
        t = reverse_flow(
            "POST", "/v2/auth", headers={"Content-Type": "application/x-www-form-urlencoded"},
            content=form,
        )  # fmt: skip
        router.requestheaders(t)
        respond(t, 200, {}, b"{}")
        oplog.response(t)
    assert "token repository:a:pull repository:b:pull -> 200" in caplog.text


def test_log_line_without_secrets(caplog):
    router, oplog = Router(), OpLog()
    caplog.set_level(logging.INFO)
    with taddons.context(router, oplog):
        f = reverse_flow(
            "GET", "/v2/nginx/manifests/1-alpine", headers={"Authorization": "Bearer SECRET"}
        )
        router.requestheaders(f)
        respond(f, 200, {"Content-Length": "1234"}, b"x" * 1234)
        oplog.response(f)
        t = reverse_flow("GET", "/v2/auth?scope=repository:nginx:pull&account=bob")
        t.request.headers["Authorization"] = "Basic c2VjcmV0OnNlY3JldA=="
        router.requestheaders(t)
        respond(t, 200, {}, b'{"token":"SECRETTOKEN"}')
        oplog.response(t)
        e = reverse_flow("GET", "/v2/nginx/manifests/nope")
        router.requestheaders(e)
        respond(e, 404, {}, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"x"}]}')
        oplog.response(e)
    lines = [r.getMessage() for r in caplog.records if r.name == "regmirror.observe.oplog"]
    assert lines[0].startswith("pull manifest docker.io/library/nginx:1-alpine -> 200 1.2 kB ")
    assert lines[0].endswith(" ms")
    assert lines[1].startswith("token repository:nginx:pull -> 200 ")
    assert lines[2].startswith(
        "pull manifest docker.io/library/nginx:nope -> 404 MANIFEST_UNKNOWN "
    )
    assert not any("SECRET" in r.getMessage() or "c2Vj" in r.getMessage() for r in caplog.records)


def test_nothing_a_client_sends_forges_a_log_line(caplog):
    """The review's finding 7: `%0A` in a scope wrote a second line into the log."""
    caplog.set_level(logging.INFO)
    router, oplog = Router(), OpLog()
    with taddons.context(router, oplog):
        t = reverse_flow("GET", "/v2/auth?scope=repository:a:pull%0A2026-12-01 forged%1B[31m")
        router.requestheaders(t)
        respond(t, 400, {}, b"{}")
        oplog.response(t)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "regmirror.observe.oplog"]
    assert line.startswith("token repository:a:pull\\n2026-12-01 forged\\x1b[31m -> 400")


def test_printable():
    assert printable("a b/c:é") == "a b/c:é"
    assert printable("a\r\nb\tc\x00\u2028\udcff") == "a\\r\\nb\\tc\\x00\\u2028\\udcff"


# --- Properties (hypothesis) -------------------------------------------------------------

from hypothesis import example, given
from hypothesis import strategies as st
from mitmproxy import http
from regmirror import flowinfo
from regmirror.observe.oplog import image, response_size
from regmirror.routing import names

from tests.strategies import digests, header_text, mitm_text, props, repo_names, tags

_ops = st.sampled_from([names.PING, names.CATALOG, names.MANIFEST, names.BLOB, names.TAGS,
                        names.REFERRERS, names.TOKEN, names.UPLOAD, flowinfo.REDIRECT,
                        flowinfo.ROOT, flowinfo.REJECTED, ""])  # fmt: skip
_infos = st.fixed_dictionaries(
    {"op": _ops},
    optional={k: header_text for k in ("name", "reference", "registry", "upstream", "style",
                                       "target", "prefix")},
)  # fmt: skip


@props(100)
@given(st.sampled_from(["GET", "HEAD", "PUT"]) | header_text, _infos,
       st.lists(header_text, max_size=3), header_text)  # fmt: skip
@example("GET", {"op": "token"}, ["repository:a:pull\nERROR forged log line"], "/v2/auth")
@example("GET", {"op": "token"}, ["repository:\udcff:pull"], "/v2/auth")  # not UTF-8
@example("GET", {"op": "redirect", "target": "cdn\x1b[2J.example"}, [], "/")
def test_prop_describe_is_one_printable_line(method, i, scopes, path):
    """Whatever a client or an upstream sends, the log gets one line it can print (no line
    breaks, terminal escapes, or surrogates that no stream can encode)."""
    line = describe(method, i, scopes, path)
    assert line.isprintable()


@props(50)
@given(st.sampled_from(["docker.io", "ghcr.io", "127.0.0.1:5001"]), repo_names,
       st.one_of(tags, digests))  # fmt: skip
def test_prop_image_names_the_reference(registry, name, ref):
    i = {"registry": registry, "name": name, "reference": ref}
    full, short, base = image(i), image(i, short=True), f"{registry}/{name}"
    if ":" in ref:  # a digest
        assert full == f"{base}@{ref}" and short == f"{base}@{ref[:19]}…"
    else:
        assert full == short == f"{base}:{ref}"
    assert full.rpartition("@" if ":" in ref else ":")[::2] == (base, ref)


@props(100)
@given(st.one_of(st.sampled_from(["", "0", "12", "²", "١٢", "-1", " 5", "99999999999999999999"]),
                 mitm_text), st.binary(max_size=20))  # fmt: skip
@example("²", b"")  # a Unicode digit that int() refuses
def test_prop_response_size_is_a_size(length, body):
    resp = http.Response.make(200, body)
    resp.headers["Content-Length"] = length  # after the body, which sets its own
    size = response_size(resp)
    assert size >= 0 and (size == int(length) if length.isascii() and length.isdigit() else
                          size == len(body))  # fmt: skip
