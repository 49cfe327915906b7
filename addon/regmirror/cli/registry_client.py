"""A small registry client that pulls through the mirror as docker or skopeo do: requests
go out without credentials; a 401's Bearer challenge names the realm (the mirror's own
token endpoint), whose token is then sent with every request for that repository. Every
manifest and blob is checked against its digest (and its size) as it arrives.

Registries other than the mirror's default are named by path prefix
(`/v2/ghcr.io/org/app/...`), which every mirror route understands."""

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import httpx

from ..auth.challenge import parse_challenges
from ..auth.token_answers import parse_token_answer
from ..routing import names
from .graph import Descriptor
from .references import Reference

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
CHUNK = 1 << 20


class PullError(Exception):
    """One image could not be pulled; the message says why."""


class Unreachable(PullError):
    """The mirror does not answer as a registry."""


class Fetched(NamedTuple):
    digest: str
    media_type: str
    body: bytes


class RegistryClient:
    def __init__(
        self,
        url: str,
        credentials: tuple[str, str] | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.credentials = credentials
        self.http = httpx.Client(timeout=timeout, follow_redirects=True, transport=transport)
        self._auth: dict[str, str] = {}  # repository -> Authorization

    def close(self) -> None:
        self.http.close()

    def ping(self) -> None:
        """GET /v2/: 200, or 401 with a challenge, is a registry."""
        try:
            r = self.http.get(self.url + "/v2/")
        except httpx.HTTPError as e:
            raise Unreachable(f"cannot reach the mirror at {self.url}: {_said(e)}") from e
        if r.status_code not in (200, 401):
            raise Unreachable(f"{self.url}/v2/ answered {r.status_code}: is it a registry mirror?")

    def manifest(self, ref: Reference, reference: str) -> Fetched:
        """The manifest by tag or digest, checked against the digest asked for, or for a
        tag the one the mirror says (Docker-Content-Digest)."""
        path = f"/v2/{ref.registry}/{ref.repository}/manifests/{reference}"
        with self._get(ref, path, {"Accept": ", ".join(MANIFEST_TYPES)}) as r:
            body = r.read()
            said = r.headers.get("Docker-Content-Digest", "")
            media_type = r.headers.get("Content-Type", "")
        digest = reference if names.valid_digest(reference) else said
        digest = digest or "sha256:" + hashlib.sha256(body).hexdigest()
        if not _matches(body, digest):
            raise PullError(f"the manifest {reference} of {ref.name} is not {digest}")
        return Fetched(digest, media_type, body)

    def blob(self, ref: Reference, blob: Descriptor, advance: Callable[[int], None]) -> int:
        """Read the blob fully (and discard it), hashing as it comes; its size."""
        algorithm, _, expected = blob.digest.partition(":")
        try:
            h = hashlib.new(algorithm)
        except ValueError as e:
            raise PullError(f"{blob.digest}: unknown digest algorithm") from e
        size = 0
        with self._get(ref, f"/v2/{ref.registry}/{ref.repository}/blobs/{blob.digest}") as r:
            try:
                for chunk in r.iter_bytes(CHUNK):
                    h.update(chunk)
                    size += len(chunk)
                    advance(len(chunk))
            except httpx.HTTPError as e:
                raise PullError(f"blob {blob.digest} of {ref.name}: {_said(e)}") from e
        if blob.size is not None and size != blob.size:
            raise PullError(f"blob {blob.digest} of {ref.name}: {size} of {blob.size} bytes")
        if h.hexdigest() != expected:
            raise PullError(f"blob {blob.digest} of {ref.name}: its bytes have another digest")
        return size

    @contextmanager
    def _get(
        self, ref: Reference, path: str, headers: dict[str, str] | None = None
    ) -> Iterator[httpx.Response]:
        r = self._send(ref, path, headers or {})
        if r.status_code == 401:  # no token yet, or it expired
            challenge = r.headers.get("Www-Authenticate", "")
            r.close()
            self._authenticate(ref, challenge)
            r = self._send(ref, path, headers or {})
        try:
            if r.status_code != 200:
                raise PullError(f"{path}: {r.status_code} {_error(r.read())}".rstrip())
            yield r
        finally:
            r.close()

    def _send(self, ref: Reference, path: str, headers: dict[str, str]) -> httpx.Response:
        auth = self._auth.get(ref.name)
        request = self.http.build_request(
            "GET", self.url + path, headers={**headers, **({"Authorization": auth} if auth else {})}
        )
        try:
            return self.http.send(request, stream=True)
        except httpx.HTTPError as e:
            raise PullError(f"{path}: {_said(e)}") from e

    def _authenticate(self, ref: Reference, header: str) -> None:
        """A token from the challenge's realm, for pulling the repository."""
        try:
            challenges = parse_challenges(header)
        except ValueError as e:
            raise PullError(f"{ref.name}: 401 without a usable challenge ({e})") from e
        bearer = next((c for c in challenges if c.is_bearer and c.params.get("realm")), None)
        if bearer is None:
            if not self.credentials or all(c.scheme.lower() != "basic" for c in challenges):
                raise PullError(f"{ref.name}: 401, and no Bearer realm to get a token from")
            pair = ":".join(self.credentials).encode()
            self._auth[ref.name] = "Basic " + base64.b64encode(pair).decode()
            return
        params = {"scope": bearer.params.get("scope") or f"repository:{ref.repository}:pull"}
        if service := bearer.params.get("service"):
            params["service"] = service
        try:
            auth = httpx.BasicAuth(*self.credentials) if self.credentials else None
            r = self.http.get(bearer.params["realm"], params=params, auth=auth)
        except httpx.HTTPError as e:
            raise PullError(f"token for {ref.name}: {_said(e)}") from e
        answer = parse_token_answer(r.content) if r.status_code == 200 else None
        if answer is None:
            raise PullError(f"token for {ref.name}: {r.status_code} {_error(r.content)}".rstrip())
        self._auth[ref.name] = f"Bearer {answer.tokens[0]}"


def _matches(body: bytes, digest: str) -> bool:
    algorithm, _, expected = digest.partition(":")
    try:
        return hashlib.new(algorithm, body).hexdigest() == expected
    except ValueError:
        return False


def _error(body: bytes) -> str:
    """`MANIFEST_UNKNOWN: manifest unknown` from a registry error body, else ""."""
    try:
        errors = json.loads(body)["errors"]
        return "; ".join(f"{e['code']}: {e.get('message', '')}".rstrip(": ") for e in errors)
    except (ValueError, KeyError, TypeError):
        return ""


def _said(e: httpx.HTTPError) -> str:
    return str(e) or type(e).__name__
