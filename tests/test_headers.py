import pytest
from mitmproxy import http
from mitmproxy.test import tutils
from regmirror.transport.headers import content_length, request_problem


def test_content_length():
    for value, expected in (("12", 12), ("", None), ("²", None), ("-1", None), ("1e3", None)):
        assert content_length(http.Headers(content_length=value) if value else http.Headers()) == (
            expected
        )


@pytest.mark.parametrize(
    "method, version, headers, status",
    [
        (b"GET", b"HTTP/1.1", [], None),
        (b"POST", b"HTTP/2.0", [(b"Content-Length", b"10")], None),
        (b"GET", b"HTTP/9.9", [], 505),
        (b"get", b"HTTP/1.1", [], 405),  # methods are case-sensitive
        (b"GET", b"HTTP/1.1", [(b"X-A", b"x\rInjected: 1")], 400),
        (b"GET", b"HTTP/1.1", [(b"X-A", b"a\x00b")], 400),
        (b"GET", b"HTTP/1.1", [(b"Content-Length", b"99999999999999999999")], 400),
        (b"HEAD", b"HTTP/1.1", [(b"Transfer-Encoding", b"chunked")], 400),
        (b"GET", b"HTTP/1.1", [(b"Content-Length", b"0")], None),
    ],
)
def test_request_problem(method, version, headers, status):
    req = tutils.treq(method=method, http_version=version, headers=http.Headers(headers))
    problem = request_problem(req)
    assert (problem[0] if problem else None) == status
