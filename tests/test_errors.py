import json

import pytest
from regmirror import errors

# The codes of the distribution spec (https://distribution.github.io/distribution/spec/api/
# #errors-2) and those distribution's errcode package adds (registry/api/errcode/register.go).
SPEC_CODES = {
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "MANIFEST_UNVERIFIED",
    "NAME_INVALID", "NAME_UNKNOWN", "PAGINATION_NUMBER_INVALID", "RANGE_INVALID",
    "SIZE_INVALID", "TAG_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED",
    "UNKNOWN", "UNAVAILABLE", "TOOMANYREQUESTS",
}  # fmt: skip


def constants() -> dict[str, str]:
    return {k: v for k, v in vars(errors).items() if k.isupper() and isinstance(v, str)}


def test_the_codes_are_the_registrys_own():
    codes = constants()
    assert {k for k, v in codes.items() if k != v} == set()  # the name is the code
    assert set(codes.values()) <= SPEC_CODES
    # the ones the mirror answers with
    assert {"NAME_UNKNOWN", "DENIED", "UNAUTHORIZED", "UNSUPPORTED", "UNAVAILABLE"} <= set(
        codes.values()
    )


@pytest.mark.parametrize(
    "detail, error",
    [
        (None, {"code": "DENIED", "message": "no"}),  # no detail: no key
        ({}, {"code": "DENIED", "message": "no", "detail": {}}),  # empty, but given
        ("", {"code": "DENIED", "message": "no", "detail": ""}),
        (
            {"routes": ["docker.io", "ghcr.io"]},
            {"code": "DENIED", "message": "no", "detail": {"routes": ["docker.io", "ghcr.io"]}},
        ),
    ],
)
def test_error_body(detail, error):
    body = errors.error_body(errors.DENIED, "no", detail)
    assert json.loads(body) == {"errors": [error]}
    assert b" " not in body  # compact


@pytest.mark.parametrize(
    "message",
    [
        'a "quoted" name\nand a newline',
        "caf\u00e9 \u2603",
        "a lone surrogate from a client's bytes: \udcff",
    ],
)
def test_error_body_takes_any_message(message):
    body = errors.error_body(errors.NAME_INVALID, message)
    assert body.isascii()
    assert json.loads(body)["errors"][0]["message"] == message


@pytest.mark.parametrize(
    "status, code",
    [
        (401, errors.UNAUTHORIZED),
        (403, errors.DENIED),
        (404, errors.NAME_UNKNOWN),
        (429, errors.TOOMANYREQUESTS),
        (502, errors.UNAVAILABLE),
    ],
)
def test_error_response(status, code):
    resp = errors.error_response(status, code, "what happened", {"x": 1})
    assert resp.status_code == status
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert resp.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert resp.content == errors.error_body(code, "what happened", {"x": 1})
    assert resp.headers["Content-Length"] == str(len(resp.content))


def test_head_answers_have_no_body_but_the_length_of_one():
    get = errors.error_response(404, errors.NAME_UNKNOWN, "unknown repository")
    head = errors.error_response(404, errors.NAME_UNKNOWN, "unknown repository", head=True)
    assert head.content == b""
    assert head.headers["Content-Length"] == str(len(get.content)) != "0"
    assert head.headers.get_all("Content-Length") == [head.headers["Content-Length"]]
    assert (head.status_code, head.headers["Content-Type"]) == (404, get.headers["Content-Type"])
