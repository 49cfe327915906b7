import json
import time

from hypothesis import example, given
from mitmproxy.test import taddons
from regmirror.auth import carried_tokens, client_tokens, offline_tokens
from regmirror.auth.carried_tokens import PREFIX, open_token
from regmirror.auth.token_proxy import TokenAuth, mirror_challenge
from regmirror.routing.router import Router
from regmirror.transport.side_requests import SideRequests
from regmirror.transport.signing import seal
from regmirror.transport.upstream import UpstreamConnections

from tests.flowutil import respond, reverse_flow
from tests.strategies import header_text, props

KEY, OTHER = b"k" * 32, b"o" * 32
HUB_CHALLENGE = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"'


def test_a_token_carries_its_provenance_until_it_expires_and_only_under_its_key():
    token = carried_tokens.mint(KEY, "anonymous", "UP", 300, now=1000.0)
    assert token.startswith(PREFIX) and carried_tokens.is_carried(token)
    assert open_token(KEY, token, 1299.9) == ("anonymous", "UP", 1300)
    assert open_token(KEY, token, 1300.0) is None
    assert open_token(OTHER, token, 1000.0) is None
    assert open_token(KEY, carried_tokens.mint(KEY, "route", "UP", 60, 0.0), 1.0).provenance == (
        "route")  # fmt: skip


def test_nothing_but_our_own_signed_fields_opens():
    for fields in (["client", "UP", 99], ["anonymous", "UP", 9.5], ["anonymous", "U\nP", 99],
                   ["anonymous", 7, 99], ["anonymous", "UP"], {"a": 1}):  # fmt: skip
        assert open_token(KEY, PREFIX + seal(KEY, "carried token", fields), 0.0) is None
    # no other token of the mirror's, signed with the same secret, opens as one
    client = client_tokens.mint(KEY, client_tokens.Principal("token", "", "p"), "anonymous",
                                "UP", 300, 0.0)  # fmt: skip
    assert open_token(KEY, PREFIX + client.removeprefix(client_tokens.PREFIX), 0.0) is None
    assert open_token(KEY, offline_tokens.mint(KEY, 0.0), 0.0) is None


@props(300)
@given(rest=header_text)
@example(rest="\udcff.\udcff")
@example(rest="é.é")
def test_prop_any_token_a_client_sends_is_judged_without_raising(rest):
    assert open_token(KEY, PREFIX + rest, 0.0) is None
    signed = carried_tokens.mint(KEY, "anonymous", "UP", 300, 0.0)
    assert open_token(KEY, signed + rest, 0.0) is None or rest == ""


def replica(secret: str) -> tuple[Router, TokenAuth]:
    router = Router()
    router.signer.key, router.signer.configured = secret.encode(), bool(secret)
    auth = TokenAuth(router, UpstreamConnections(), SideRequests())
    auth.challenges["https://registry-1.docker.io"] = mirror_challenge(HUB_CHALLENGE, "x")[0]
    return router, auth


async def token_answer(router: Router, auth: TokenAuth, token: str) -> dict:
    f = reverse_flow("GET", "/v2/auth?scope=repository:library/nginx:pull")
    router.requestheaders(f)
    await auth.requestheaders(f)
    body = {"token": token, "access_token": token, "expires_in": 300}
    respond(f, 200, {"Content-Type": "application/json"}, json.dumps(body).encode())
    auth.responseheaders(f)
    auth.response(f)
    return json.loads(f.response.content)


async def test_with_a_shared_secret_anonymous_tokens_go_out_carrying_it_to_any_replica():
    one, two = replica("s" * 16), replica("s" * 16)
    with taddons.context(*one, UpstreamConnections()):
        said = await token_answer(*one, "UP")
    assert said["token"] == said["access_token"] and said["token"].startswith(PREFIX)
    router, auth = two
    with taddons.context(router, auth, UpstreamConnections()):
        f = reverse_flow("GET", "/v2/library/nginx/manifests/1",
                         headers={"Authorization": f"Bearer {said['token']}"})  # fmt: skip
        router.requestheaders(f)
        await auth.requestheaders(f)
    assert f.request.headers["Authorization"] == "Bearer UP"  # the upstream sees its own
    assert auth.provenances.of("Bearer UP", time.time()) == "anonymous"  # learned here


async def test_one_this_replica_cannot_open_goes_nowhere():
    one, other = replica("s" * 16), replica("t" * 16)
    with taddons.context(*one, UpstreamConnections()):
        said = await token_answer(*one, "UP")
    router, auth = other
    with taddons.context(router, auth, UpstreamConnections()):
        f = reverse_flow("GET", "/v2/library/nginx/manifests/1",
                         headers={"Authorization": f"Bearer {said['token']}"})  # fmt: skip
        router.requestheaders(f)
        await auth.requestheaders(f)
    assert "Authorization" not in f.request.headers and f.response is None  # anonymous


async def test_without_a_configured_secret_tokens_go_out_as_the_upstream_sent_them():
    alone = replica("")
    with taddons.context(*alone, UpstreamConnections()):
        assert (await token_answer(*alone, "UP"))["token"] == "UP"
