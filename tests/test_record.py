import json

import pytest
from mitmproxy import http
from regmirror.record import KEY, Route, answered_op, outcome, route, set_route

from tests.flowutil import respond, reverse_flow


def test_the_route_is_written_once():
    f = reverse_flow()
    assert route(f) is None
    r = set_route(f, Route(mirror="http://m", op="manifest"))
    assert route(f) is r
    with pytest.raises(RuntimeError, match="once"):
        set_route(f, Route(mirror="http://evil"))
    assert route(f)["mirror"] == "http://m"


def test_outcome_is_created_on_first_use_and_kept():
    f = reverse_flow()
    outcome(f)["client"] = "alice"
    assert outcome(f) == {"client": "alice"}
    assert route(f) is None  # an outcome alone is no route


def test_the_record_is_plain_data_so_saved_flows_load():
    f = reverse_flow()
    set_route(f, Route(mirror="http://m", op="blob", name="a/b", reference="sha256:1"))
    outcome(f)["answered_by"] = "token cache"
    copy = http.HTTPFlow.from_state(f.get_state())
    assert copy.metadata[KEY] == json.loads(json.dumps(f.metadata[KEY]))


def test_answered_op():
    f = reverse_flow()
    set_route(f, Route(op="tags"))
    respond(f, 200, {}, b"{}")
    assert answered_op(f, f.response) == "tags"
    assert answered_op(f, f.request) == ""
    respond(f, 404, {}, b"{}")
    assert answered_op(f, f.response) == ""
    assert answered_op(object(), None) == ""
