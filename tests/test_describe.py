import pytest
from mitmproxy import http
from regmirror.observe.describe import (
    ending,
    error_code,
    human_size,
    image,
    operation,
    printable,
    redirect_target,
    response_size,
    words,
)

from tests.flowutil import respond, reverse_flow

D = "sha256:" + "ab12" * 16
HUB = {"mirror": "http://m", "registry": "docker.io", "upstream": "https://r", "style": "host"}


def test_human_size():
    assert human_size(0) == "0 B"
    assert human_size(999) == "999 B"
    assert human_size(1234) == "1.2 kB"
    assert human_size(27_100_000) == "27.1 MB"
    assert human_size(5 * 10**12) == "5000.0 GB"


def test_printable():
    assert printable("a b/c:é") == "a b/c:é"
    assert printable("a\r\nb\tc\x00\u2028\udcff") == "a\\r\\nb\\tc\\x00\\u2028\\udcff"


def describe(method, route, scopes=(), path="", short=False):
    return words(operation(method, route, list(scopes), path, short))


@pytest.mark.parametrize(
    "method, route, scopes, short, expected",
    [
        ("GET", HUB | {"op": "manifest", "name": "library/nginx", "reference": "1"}, [], False,
         "pull manifest docker.io/library/nginx:1"),
        ("HEAD", HUB | {"op": "manifest", "name": "library/nginx", "reference": D}, [], False,
         f"check manifest docker.io/library/nginx@{D}"),
        ("HEAD", HUB | {"op": "manifest", "name": "library/nginx", "reference": D}, [], True,
         "check manifest docker.io/library/nginx@sha256:ab12ab12ab12…"),
        ("GET", HUB | {"op": "manifest", "name": "org/app", "reference": "1", "style": "ns"}, [],
         False, "pull manifest docker.io/org/app:1 [ns]"),
        ("GET", HUB | {"op": "blob", "name": "a", "reference": D}, [], False,
         "pull blob docker.io/a@sha256:ab12ab12ab12…"),
        ("GET", HUB | {"op": "blob", "name": "a", "reference": D, "via": "redirect",
                       "target": "https://cdn.example/x?s=1"}, [], False,
         "pull blob docker.io/a@sha256:ab12ab12ab12… via cdn.example"),
        ("GET", HUB | {"op": "tags", "name": "org/app"}, [], False, "list tags docker.io/org/app"),
        ("GET", HUB | {"op": "token"}, ["repository:a:pull", "repository:b:pull"], False,
         "token repository:a:pull repository:b:pull"),
        ("GET", HUB | {"op": "token"}, [], False, "token (no scope)"),
        ("GET", HUB | {"op": "ping"}, [], False, "ping docker.io"),
        ("GET", HUB | {"op": "catalog"}, [], False, "list catalog docker.io"),
        ("GET", HUB | {"op": "root"}, [], False, "root redirect"),
        ("PUT", None, [], False, "request PUT /v2/x\\x00"),
    ],
)  # fmt: skip
def test_operation(method, route, scopes, short, expected):
    assert describe(method, route, scopes, "/v2/x\x00", short) == expected


@pytest.mark.parametrize(
    "status, headers, body, result, expected",
    [
        (200, {}, b"x" * 1234, {}, "-> 200 1.2 kB"),
        (307, {"Location": "http://m/_regmirror/redirect?u=https%3A%2F%2Fcdn.example%2Fx&e=1"},
         b"", {}, "-> 307 cdn.example 0 B"),
        (401, {"WWW-Authenticate": 'Bearer realm="http://m/v2/auth"'}, b"", {},
         "-> 401 challenge"),
        (403, {}, b'{"errors":[{"code":"DENIED","message":"x"}]}', {"answered_by": "router",
         "refused": "x"}, "-> 403 DENIED by router"),
        (200, {}, b'{"token":"t"}', {"answered_by": "token cache"}, "-> 200 by token cache 13 B"),
    ],
)  # fmt: skip
def test_ending(status, headers, body, result, expected):
    f = respond(reverse_flow(), status, headers, body)
    assert ending(f, result) == expected.replace(" 0 B", "")


def test_error_code_and_size():
    resp = http.Response.make(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
    assert error_code(resp) == "MANIFEST_UNKNOWN"
    assert error_code(http.Response.make(404, b"not json")) == ""
    resp.headers["Content-Length"] = "²"
    assert response_size(resp) == len(resp.raw_content)


def test_redirect_target():
    assert redirect_target("https://cdn.example/x") == "cdn.example"
    assert redirect_target("/_regmirror/redirect?u=https%3A%2F%2Fs3.example%2Fb") == "s3.example"


# --- Properties (hypothesis) -------------------------------------------------------------

from hypothesis import example, given
from hypothesis import strategies as st
from regmirror import record
from regmirror.routing import names

from tests.strategies import digests, header_text, mitm_text, props, repo_names, tags

_ops = st.sampled_from([names.PING, names.CATALOG, names.MANIFEST, names.BLOB, names.TAGS,
                        names.REFERRERS, names.TOKEN, names.UPLOAD, record.ROOT, ""])  # fmt: skip
_infos = st.fixed_dictionaries(
    {"op": _ops},
    optional={k: header_text for k in ("name", "reference", "registry", "upstream", "style",
                                       "target", "prefix", "via", "mirror")},
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
    assert describe(method, None, scopes, path).isprintable()


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
