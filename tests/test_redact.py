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
