import json

from regmirror.transport import error_pages
from regmirror.transport.error_pages import error_page


def test_error_pages_are_registry_errors():
    status, body = error_page(502, "Cannot connect to x: refused")
    assert status == 502
    assert json.loads(body)["errors"][0] == {
        "code": "UNAVAILABLE",
        "message": "Bad Gateway: Cannot connect to x: refused",
    }
    assert error_page(502, "connection to x:1 timed out after 3 s")[0] == 504
    assert error_page(400, "bad request line")[0] == 400


def test_the_mirrors_message_is_used_once():
    error_pages.say_next("upstream u:1 timed out: no response within 3 s")
    head = error_pages.http1_error_response(502, "Connection killed")
    assert head.startswith(b"HTTP/1.1 504 ") and b"no response within" in head
    assert b"Connection killed" in error_pages.http1_error_response(502, "Connection killed")
