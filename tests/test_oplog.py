import json
import logging

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons
from regmirror.observe.oplog import OpLog
from regmirror.record import outcome
from regmirror.routing.router import Router

from tests.flowutil import respond, reverse_flow


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


def test_refusals_name_who_refused(caplog):
    caplog.set_level(logging.INFO)
    router, oplog = Router(), OpLog()
    with taddons.context(router, oplog):
        f = reverse_flow("PUT", "/v2/nginx/manifests/1")
        router.requestheaders(f)
        oplog.response(f)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "regmirror.observe.oplog"]
    assert line.startswith("pull manifest docker.io/library/nginx:1 -> 405 UNSUPPORTED by router")


def test_json_lines_carry_the_operations_facts_and_no_secret(capsys):
    router, oplog = Router(), OpLog()
    with taddons.context(router, oplog) as tctx:
        tctx.configure(oplog, regmirror_log_format="json")
        f = reverse_flow("GET", "/v2/nginx/manifests/1", headers={"Authorization": "Bearer SECRET"})
        router.requestheaders(f)
        outcome(f)["cache"] = "stale"
        respond(f, 200, {"Content-Type": "application/json"}, b"x" * 42)
        oplog.response(f)
        tctx.configure(oplog, regmirror_log_format="text")
    (line,) = capsys.readouterr().out.splitlines()
    record = json.loads(line)
    assert record["operation"] == "pull manifest"
    assert record["image"] == "docker.io/library/nginx:1"
    assert (record["status"], record["bytes"], record["cache"]) == (200, 42, "stale")
    assert record["client"] and record["time"].endswith("+00:00")
    assert "SECRET" not in line


def test_quiet_by_default_drops_connection_lines_not_warnings():
    oplog = OpLog()
    server = logging.getLogger("mitmproxy.proxy.server")

    def shown(level: int, message: str) -> bool:
        return bool(server.filter(server.makeRecord(server.name, level, "", 0, message, (), None)))

    with taddons.context(oplog) as tctx:
        tctx.configure(oplog, regmirror_log_flows=False)  # the default, as mitmdump applies it
        assert not shown(logging.INFO, "client connect")
        assert shown(logging.WARNING, "server connection failed")
        tctx.configure(oplog, regmirror_log_flows=True)
        assert shown(logging.INFO, "client disconnect")
    with taddons.context(oplog) as tctx, pytest.raises(exceptions.OptionsError, match="format"):
        tctx.configure(oplog, regmirror_log_format="xml")
