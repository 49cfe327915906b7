"""The mirror's addons, in hook order."""

from .auth.client_auth import ClientAuth
from .auth.token_proxy import TokenAuth
from .guard import guarded
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
from .transport.streaming import Streaming
from .transport.upstream import UpstreamConnections


def mirror_addons() -> list[object]:
    # Router first: it classifies every flow for the others. The status endpoints answer
    # before it; annotations, redaction and metrics come last, to see what clients get.
    # Every hook is guarded: one that raises answers its flow with a 500 (fail closed).
    router = Router()
    metrics = Metrics()
    client_auth = ClientAuth(router)
    return guarded(
        [
            Patches(),
            UpstreamConnections(),
            RefuseTls(),
            ConnectionLimits(),
            StatusEndpoints(metrics.registry, client_auth.admits),
            router,
            client_auth,
            TokenAuth(router),
            Redirects(router),
            Streaming(),
            OpLog(),
            Views(),
            Annotations(),
            Redaction(),
            metrics,
        ]
    )
