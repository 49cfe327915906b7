import io
import json
import re

import pytest
from mitmproxy import exceptions
from mitmproxy.addons.dumper import Dumper
from mitmproxy.test import taddons
from regmirror.observe.redact import (
    Redaction,
    fingerprint,
    mask_authorization,
    mask_form,
)
from regmirror.routing.router import Router

from tests.flowutil import respond, reverse_flow
from tests.support.tokenserver import TokenServer
from tests.viewutil import registered

JWT_RE = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")


def test_mask_authorization():
    assert (
        mask_authorization("Bearer abc.def.ghi")
        == f"Bearer <redacted {fingerprint('abc.def.ghi')}>"
    )
    assert mask_authorization("Basic YWxpY2U6d29uZGVybGFuZA==") == "Basic <redacted>"
    assert mask_authorization("secret") == "<redacted>"
    masked = mask_authorization("Bearer t")
    assert mask_authorization(masked) == masked


def test_masking_never_raises_on_undecodable_bytes():
    assert mask_authorization("Bearer \udcff").startswith("Bearer <redacted sha256:")
    assert mask_authorization("Basic \udcff") == "Basic <redacted>"
    assert mask_form("password=\udcff&scope=%FF&x=\udcfe") == (
        "password=%3Credacted%3E&scope=%FF&x=%FE"
    )


def test_mask_form():
    form = "grant_type=password&username=alice&password=wonderland&refresh_token=R&scope=a+b"
    assert mask_form(form) == (
        "grant_type=password&username=alice&password=%3Credacted%3E"
        "&refresh_token=%3Credacted%3E&scope=a+b"
    )


def test_masked_once_answered_unless_shown():
    redaction = Redaction()
    with taddons.context(redaction) as tctx:
        f = reverse_flow("GET", "/v2/x/manifests/1", headers={"Authorization": "Bearer tok"})
        respond(f, 200)
        redaction.response(f)
        assert f.request.headers["Authorization"] == f"Bearer <redacted {fingerprint('tok')}>"
        form = b"grant_type=password&username=alice&password=wonderland"
        p = reverse_flow(
            "POST",
            "/v2/auth",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            content=form,
        )
        redaction.error(p)
        assert b"wonderland" not in p.request.content
        assert p.request.urlencoded_form["username"] == "alice"
        tctx.configure(redaction, regmirror_show_secrets=True)
        g = reverse_flow("GET", "/v2/", headers={"Authorization": "Bearer tok"})
        redaction.response(g)
        assert g.request.headers["Authorization"] == "Bearer tok"


def test_raw_dumper_views_need_show_secrets():
    redaction = Redaction()
    with taddons.context(Dumper(), redaction) as tctx:
        with pytest.raises(exceptions.OptionsError, match="dumper_default_contentview=raw"):
            tctx.configure(redaction, dumper_default_contentview="raw")
        tctx.configure(redaction, regmirror_show_secrets=True, dumper_default_contentview="raw")


def test_mitmdump_output_shows_no_secrets(tmp_path):
    """What mitmdump prints at the highest detail, for a token flow and a pull with it."""
    server = TokenServer(tmp_path, users={"alice": "wonderland"})
    token = server.issue_token("alice", scopes=["repository:library/nginx:pull"])
    answer = {"token": token, "access_token": token, "expires_in": 300, "refresh_token": "R3F"}
    out = io.StringIO()
    router, redaction, dumper = Router(), Redaction(), Dumper(out)
    with registered(router, redaction, dumper) as tctx:
        tctx.configure(dumper, flow_detail=4)
        t = reverse_flow(
            "GET",
            "/v2/auth?scope=repository:library/nginx:pull",
            headers={"Authorization": "Basic YWxpY2U6d29uZGVybGFuZA=="},
        )
        router.requestheaders(t)
        respond(t, 200, {"Content-Type": "application/json"}, json.dumps(answer).encode())
        m = reverse_flow(
            "GET", "/v2/library/nginx/manifests/1", headers={"Authorization": f"Bearer {token}"}
        )
        router.requestheaders(m)
        respond(m, 200, {"Content-Type": "application/json"}, b"{}")
        for f in (t, m):
            redaction.response(f)
            dumper.response(f)
            assert json.loads(t.response.content)["token"] == token  # the client's copy
    printed = out.getvalue()
    assert "Authorization: Basic <redacted>" in printed
    assert f"Authorization: Bearer <redacted {fingerprint(token)}>" in printed
    assert f"fingerprint: {fingerprint(token)}" in printed  # the token view of the answer
    assert "library/nginx" in printed
    assert not JWT_RE.search(printed)
    assert "YWxpY2U6d29uZGVybGFuZA" not in printed and "R3F" not in printed


# --- Properties (hypothesis) -------------------------------------------------------------

import string
import urllib.parse

from hypothesis import assume, example, given
from hypothesis import strategies as st
from regmirror.observe.redact import REDACTED, SECRET_FORM_FIELDS

from tests.strategies import header_text, mitm_text, props

# RFC 7235: credentials start with a scheme (a header without one keeps its first word).
_schemes = st.sampled_from(["Bearer", "bearer", "Basic", "Token", "AWS4-HMAC-SHA256"]) | (
    st.text(string.ascii_letters, min_size=1, max_size=12)
)
# Long enough not to occur in a mask by chance; some not UTF-8, as mitmproxy decodes them.
_secrets = st.one_of(
    st.text(string.ascii_letters + string.digits + "-_.~+/=", min_size=32, max_size=64),
    st.text(min_size=32, max_size=64),
    st.binary(min_size=32, max_size=64).map(lambda b: b.decode("utf8", "surrogateescape")),
)


@props(200)
@given(header_text)
@example("Bearer \udcff")  # a token that is not UTF-8, as mitmproxy has it
def test_prop_mask_authorization_never_raises_and_is_idempotent(value):
    masked = mask_authorization(value)
    assert mask_authorization(masked) == masked  # a replayed flow is masked once


@props(150)
@given(_schemes, _secrets, st.sampled_from([" ", "  ", " \t"]))
@example("Bearer", "\udcff" * 32, " ")
def test_prop_mask_authorization_hides_the_credentials(scheme, secret, sep):
    assume(not secret.startswith("<redacted") and secret.strip() == secret)
    masked = mask_authorization(f"{scheme}{sep}{secret}")
    assert secret not in masked and secret[:16] not in masked


_fields = (
    st.sampled_from(
        sorted(SECRET_FORM_FIELDS) + ["grant_type", "username", "scope", "service", "client_id"]
    )
    | mitm_text
)
_forms = st.lists(st.tuples(_fields, mitm_text | _secrets), max_size=5)


@props(150)
@given(st.one_of(mitm_text, _forms.map(lambda f: urllib.parse.urlencode(
    f, errors="surrogateescape"))))  # fmt: skip
@example("password=%FF")  # a password that is not UTF-8
@example("grant_type=\udcff")  # a body byte that is not UTF-8, as get_text(strict=False) has it
def test_prop_mask_form_never_raises(form):
    masked = mask_form(form)
    assert mask_form(masked) == masked


@props(150)
@given(_forms, st.sampled_from(sorted(SECRET_FORM_FIELDS)), _secrets)
@example([], "password", "\udcff" * 32)
@example([("grant_type", "\udcff")], "password", "p" * 32)  # %FF must stay %FF
def test_prop_mask_form_hides_secrets_and_keeps_the_rest(fields, name, secret):
    form = urllib.parse.urlencode(fields + [(name, secret)], errors="surrogateescape")
    masked = urllib.parse.parse_qsl(mask_form(form), keep_blank_values=True,
                                    errors="surrogateescape")  # fmt: skip
    original = urllib.parse.parse_qsl(form, keep_blank_values=True, errors="surrogateescape")
    assert masked == [(k, REDACTED if k in SECRET_FORM_FIELDS else v) for k, v in original]
    if not any(secret in k or secret in v for k, v in fields):  # only in the secret field
        assert not any(secret in k or secret in v for k, v in masked)
