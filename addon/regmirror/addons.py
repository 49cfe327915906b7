"""The mirror's addons, in hook order. Every hook is guarded: one that raises answers its
flow with a 500 and nothing goes upstream (guard.py).

mitmproxy calls each hook on the addons in this order, so an addon sees what the ones
before it decided. ORDER names the pairs whose order matters and why; tests/test_addons.py
swaps each pair and shows what breaks.
"""

from .auth.client_auth import ClientAuth, ClientTokens
from .auth.token_proxy import TokenAuth
from .cache.addon import Cache
from .cache.data_plane import DataPlane
from .cache.heads import CachedHeads
from .guard import guarded
from .observe.activity import Activity
from .observe.annotations import Annotations
from .observe.metrics import Metrics
from .observe.oplog import OpLog
from .observe.redact import Redaction
from .observe.status import StatusEndpoints
from .observe.views import Views
from .routing.router import Router
from .transport.connection_limits import ConnectionLimits
from .transport.patches import Patches
from .transport.redirects import Redirects
from .transport.refuse_tls import RefuseTls
from .transport.side_requests import SideRequests
from .transport.streaming import Streaming
from .transport.upstream import UpstreamConnections

ORDER = (
    (StatusEndpoints, Router,
     "the status endpoints answer before routing; the router refuses /_regmirror/* paths"),
    (Router, ClientAuth,
     "client auth reads the route; without one it lets a request pass unchecked"),
    (ClientAuth, TokenAuth,
     "client auth removes the client's mirror credentials before the token proxy looks for "
     "the client's own upstream credentials; else the route's are never added"),
    (TokenAuth, ClientTokens,
     "the token proxy strips refresh tokens and records how the upstream token was obtained "
     "before client auth wraps it in the mirror's token, which carries that provenance"),
    (Streaming, Cache,
     "the cache sets a blob's stream to its verifying tee; streaming would put it back to "
     "a plain pass-through"),
    (Cache, DataPlane,
     "the data plane redirects only what the cache has found to be a hit it may serve"),
    (Cache, CachedHeads,
     "a HEAD is answered from the index only when the cache has found it to be a hit"),
    (Cache, Activity,
     "the status page's activity reads the cache's outcome of a flow (hit, stale, fill "
     "failed), which the cache writes in the same hooks"),
    (TokenAuth, Metrics,
     "metrics counts a flow as sent upstream when its request hook finds no answer; the "
     "token proxy answers malformed OAuth2 forms in that hook"),
)  # fmt: skip


def mirror_addons() -> list[object]:
    router = Router()
    metrics = Metrics()
    connections, side = UpstreamConnections(), SideRequests()
    tokens = TokenAuth(router, connections, side)
    client_auth = ClientAuth(router, tokens.provenances)
    cache, activity = Cache(tokens, side, metrics.registry), Activity(metrics.registry)
    return guarded(
        [
            Patches(),
            connections,
            RefuseTls(),
            ConnectionLimits(),
            StatusEndpoints(metrics.registry, client_auth.admits, cache, activity),
            router,
            client_auth,
            tokens,
            ClientTokens(client_auth),
            Redirects(router),
            Streaming(),
            cache,
            DataPlane(cache, router.signer, metrics),
            CachedHeads(cache),
            OpLog(),
            Views(),
            Annotations(),
            Redaction(),
            activity,
            metrics,
        ]
    )
