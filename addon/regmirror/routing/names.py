"""Registry API paths: which endpoint a request is for, validated against the grammar of
the distribution spec (https://github.com/distribution/distribution/blob/main/docs/spec/api.md).
"""

import re
from typing import NamedTuple

from .. import errors

MAX_NAME_LENGTH = 255
MAX_PATH_LENGTH = 4096

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"
_DIGEST = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+"

_NAME_RE = re.compile(_NAME)
_TAG_RE = re.compile(_TAG)
_DIGEST_RE = re.compile(_DIGEST)
_SHA256_RE = re.compile(r"sha256:[a-f0-9]{64}")
_SHA512_RE = re.compile(r"sha512:[a-f0-9]{128}")

# Endpoints under /v2/<name>/. A name may hold endpoint words (`a/blobs/uploads`): as in
# distribution's router, manifests, tags and blobs are tried first, then uploads (whose
# name is the longest that fits, as an upload's own path may have more parts).
_ENDPOINT_RE = re.compile(
    r"/v2/(?P<name>.+?)/(?:"
    r"(?P<kind>manifests|referrers|blobs(?!/uploads\Z))/(?P<ref>[^/]+)"
    r"|(?P<tags>tags/list)"
    r")"
)
_UPLOAD_RE = re.compile(r"/v2/(?P<name>.+)/blobs/uploads(?:/.*)?")

PING = "ping"
TOKEN = "token"
CATALOG = "catalog"
MANIFEST = "manifest"
BLOB = "blob"
TAGS = "tags"
REFERRERS = "referrers"
UPLOAD = "upload"

# Endpoints whose answers come from the upstream registry itself.
API_KINDS = frozenset({PING, CATALOG, MANIFEST, BLOB, TAGS, REFERRERS})

_KINDS = {"manifests": MANIFEST, "blobs": BLOB, "referrers": REFERRERS}


class InvalidRequest(ValueError):
    """The path names a registry endpoint but a part of it is malformed."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class ApiPath(NamedTuple):
    kind: str
    name: str = ""
    reference: str = ""


def valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and _NAME_RE.fullmatch(name) is not None


def valid_tag(tag: str) -> bool:
    return _TAG_RE.fullmatch(tag) is not None


def valid_digest(digest: str) -> bool:
    if len(digest) > 200 or not _DIGEST_RE.fullmatch(digest):
        return False
    algorithm = digest.split(":", 1)[0]
    if algorithm == "sha256":
        return _SHA256_RE.fullmatch(digest) is not None
    if algorithm == "sha512":
        return _SHA512_RE.fullmatch(digest) is not None
    return True


def parse_api_path(path: str) -> ApiPath | None:
    """Classify a request path (without query). None: not a registry endpoint.

    Raises InvalidRequest (code NAME_INVALID, TAG_INVALID or DIGEST_INVALID) when the path
    names an endpoint with a malformed repository name or reference.
    """
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidRequest(errors.NAME_INVALID, "request path too long")
    if path in ("/v2", "/v2/"):
        return ApiPath(PING)
    if path == "/v2/auth":
        return ApiPath(TOKEN)
    if path == "/v2/_catalog":
        return ApiPath(CATALOG)
    m = _ENDPOINT_RE.fullmatch(path) or _UPLOAD_RE.fullmatch(path)
    if not m:
        return None
    name = m["name"]
    if not valid_name(name):
        raise InvalidRequest(errors.NAME_INVALID, f"invalid repository name {name[:300]!r}")
    if m.re is _UPLOAD_RE:
        return ApiPath(UPLOAD, name)
    if m["tags"]:
        return ApiPath(TAGS, name)
    kind = _KINDS[m["kind"]]
    ref = m["ref"]
    if kind == MANIFEST and (valid_tag(ref) or valid_digest(ref)):
        return ApiPath(kind, name, ref)
    if kind != MANIFEST and valid_digest(ref):
        return ApiPath(kind, name, ref)
    if kind == MANIFEST and ":" not in ref:
        raise InvalidRequest(errors.TAG_INVALID, f"invalid tag {ref[:300]!r}")
    raise InvalidRequest(errors.DIGEST_INVALID, f"invalid digest {ref[:300]!r}")


def with_library(name: str) -> str:
    """Docker Hub keeps official images under `library/`: `nginx` is `library/nginx`."""
    return name if "/" in name else f"library/{name}"
