import json

from mitmproxy import http
from regmirror import answers, errors

from tests.flowutil import reverse_flow


def test_answer_sets_the_response():
    f = reverse_flow("GET", "/v2/x/manifests/1")
    answers.answer(f, answers.refusal(f, 403, errors.DENIED, "no"), "router")
    assert f.response.status_code == 403
    assert json.loads(f.response.content)["errors"][0] == {"code": "DENIED", "message": "no"}


def test_a_refusal_for_head_has_no_body_but_its_length():
    f = reverse_flow("HEAD", "/v2/x/manifests/1")
    resp = answers.refusal(f, 404, errors.NAME_UNKNOWN, "x", headers={"Retry-After": "5"})
    assert resp.content == b"" and int(resp.headers["Content-Length"]) > 0
    assert resp.headers["Retry-After"] == "5"


def test_a_request_whose_body_streams_in_is_closed_not_answered():
    """mitmproxy 11 cannot answer a flow whose request body it streams; setting a response
    there crashed its HTTP layer and left the client hanging (the fuzz test's finding)."""
    f = reverse_flow("PUT", "/v2/x/blobs/uploads/1", content=b"x" * 10)
    f.request.stream = True
    answers.answer(f, http.Response.make(405), "router")
    assert f.response is None and f.error and f.error.msg == "Connection killed."
