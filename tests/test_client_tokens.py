import base64
import json
import time

import bcrypt
from hypothesis import example, given
from mitmproxy.test import taddons
from regmirror.auth import client_tokens, offline_tokens
from regmirror.auth.client_auth import ClientAuth, check_credentials, holder
from regmirror.auth.client_tokens import MAX_TTL, MIN_TTL, PREFIX, Principal, open_token
from regmirror.auth.provenance import Provenances
from regmirror.routing.config import ClientAuth as AuthConfig
from regmirror.routing.router import Router

from tests.flowutil import reverse_flow
from tests.strategies import header_text, props

KEY, OTHER = b"k" * 32, b"o" * 32
HASH = bcrypt.hashpw(b"wonderland", bcrypt.gensalt(rounds=4))
STATIC = "s" * 20
AUTH = AuthConfig({"alice": HASH}, frozenset({STATIC}))
ALICE = check_credentials(AUTH, "alice", "wonderland")
CI = check_credentials(AUTH, "ci", STATIC)


def payload(token: str) -> list:
    text = token.removeprefix(PREFIX).partition(".")[0]
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def test_a_token_carries_the_upstream_token_until_it_expires_and_only_under_its_key():
    token = client_tokens.mint(KEY, ALICE, "route", "UP", 300, now=1000.0)
    claims = open_token(KEY, token, 1000.0)
    assert (claims.kind, claims.user, claims.provenance, claims.upstream) == (
        "htpasswd", "alice", "route", "UP"
    )  # fmt: skip
    assert claims.expires == 1300 and open_token(KEY, token, 1299.9)
    assert open_token(KEY, token, 1300.0) is None
    assert open_token(OTHER, token, 1000.0) is None
    # the lifetime is clamped, as the ledger's was
    for lifetime, kept in ((1, MIN_TTL), (10**9, MAX_TTL)):
        minted = client_tokens.mint(KEY, ALICE, "route", "UP", lifetime, now=0.0)
        assert open_token(KEY, minted, 0.0).expires == kept


def test_the_token_never_shows_the_bcrypt_hash():
    token = client_tokens.mint(KEY, ALICE, "route", "UP", 300, now=0.0)
    assert HASH.decode() not in json.dumps(payload(token))
    assert HASH.decode()[7:] not in token


def test_forgeries_are_refused():
    token = client_tokens.mint(KEY, ALICE, "anonymous", "UP", 300, now=0.0)
    fields = payload(token)
    signature = token.rpartition(".")[2]

    def forged(values: list) -> str:
        text = base64.urlsafe_b64encode(json.dumps(values).encode()).rstrip(b"=").decode()
        return f"{PREFIX}{text}.{signature}"

    for bad in (
        forged([*fields[:3], "route", *fields[4:]]),  # a more public provenance
        forged([*fields[:5], fields[5] + 10**6]),  # a later expiry
        forged(["htpasswd", "bob", *fields[2:]]),  # someone else
        token.replace(PREFIX, "regmirror-offline.", 1),
        token + "x",
        PREFIX,
        PREFIX + ".",
        "",
    ):
        assert open_token(KEY, bad, 0.0) is None, bad
    # nor is one kind of the mirror's tokens the other
    offline = offline_tokens.mint(KEY, 0.0)
    assert not client_tokens.is_client_token(offline) and open_token(KEY, offline, 0.0) is None
    assert not offline_tokens.is_offline(token) and not offline_tokens.valid(KEY, token, 0.0)


def test_a_signed_token_whose_fields_are_not_ours_is_refused():
    """What the MAC covers is checked too: another version's fields, or an upstream token
    that cannot go into a header."""
    for values in (["x"], {"a": 1}, ["htpasswd", "alice", "b", "route", "UP", "1300"],
                   ["htpasswd", "alice", "b", "route", "UP\r\nX: y", 1300],
                   ["htpasswd", "alice", "b", "route", "\udcff", 1300]):  # fmt: skip
        text = base64.urlsafe_b64encode(json.dumps(values).encode()).rstrip(b"=").decode()
        signature = client_tokens.mac(KEY, (client_tokens._KIND, text)).decode()
        assert open_token(KEY, f"{PREFIX}{text}.{signature}", 0.0) is None, values


def test_a_reload_that_removes_a_user_or_changes_a_password_revokes_its_tokens():
    alice = client_tokens.mint(KEY, ALICE, "route", "UP", 300, now=0.0)
    ci = client_tokens.mint(KEY, CI, "route", "UP", 300, now=0.0)
    assert holder(KEY, alice, AUTH, 1.0) and holder(KEY, ci, AUTH, 1.0)
    rehashed = AuthConfig({"alice": bcrypt.hashpw(b"new", bcrypt.gensalt(rounds=4))})
    for auth in (rehashed, AuthConfig(tokens=AUTH.tokens)):
        assert holder(KEY, alice, auth, 1.0) is None
    # the same password hashed again is a new entry too: its salt differs
    assert (
        holder(
            KEY, alice, AuthConfig({"alice": bcrypt.hashpw(b"wonderland", bcrypt.gensalt(4))}), 1.0
        )
        is None
    )
    assert holder(KEY, ci, AuthConfig({"alice": HASH}), 1.0) is None  # the static token went
    assert holder(KEY, ci, AuthConfig({"alice": HASH}, frozenset({"t" * 20})), 1.0) is None
    # a user of the same name as a static token's user is another principal
    as_alice = client_tokens.mint(KEY, Principal("token", "alice", CI.proof), "route", "U", 300, 0)
    assert holder(KEY, as_alice, AuthConfig({"alice": HASH}), 1.0) is None


def replica(key: bytes) -> tuple[Router, ClientAuth]:
    router = Router()
    router.config = type(router.config)(auth=AUTH)
    router.signer.key = key
    return router, ClientAuth(router, Provenances())


async def test_a_token_from_one_replica_is_accepted_by_another_that_shares_the_secret():
    token = client_tokens.mint(KEY, ALICE, "route", "UP", 300, time.time())
    for key, accepted in ((KEY, True), (OTHER, False)):
        router, auth = replica(key)
        with taddons.context(router, auth):
            f = reverse_flow("GET", "/v2/nginx/manifests/1",
                             headers={"Authorization": f"Bearer {token}"})  # fmt: skip
            router.requestheaders(f)
            await auth.requestheaders(f)
            if not accepted:
                assert f.response.status_code == 401
                continue
            assert f.response is None and f.request.headers["Authorization"] == "Bearer UP"
            # the replica that did not issue it knows how its upstream token was obtained
            assert auth.provenances.of("Bearer UP", time.time()) == "route"
            g = reverse_flow("GET", "/_regmirror/metrics",
                             headers={"Authorization": f"Bearer {token}"})  # fmt: skip
            assert await auth.admits(g.request)


@props(300)
@given(rest=header_text)
@example(rest="\udcff.\udcff")
@example(rest="é.é")
def test_prop_any_token_a_client_sends_is_judged_without_raising(rest):
    token = PREFIX + rest  # what follows `Bearer ` in a header, as decoded
    assert open_token(KEY, token, 0.0) is None
    assert holder(KEY, token, AUTH, 0.0) is None
    signed = client_tokens.mint(KEY, ALICE, "route", "UP", 300, 0.0)
    assert open_token(KEY, signed + rest, 0.0) is None or rest == ""
