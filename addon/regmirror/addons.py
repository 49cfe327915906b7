"""The mirror's addons, in hook order."""

from .annotations import Annotations
from .client_auth import ClientAuth
from .connection_limits import ConnectionLimits
from .metrics import Metrics
from .oplog import OpLog
from .redact import Redaction
from .redirects import Redirects
from .refuse_tls import RefuseTls
from .router import Router
from .status import StatusEndpoints
from .streaming import Streaming
from .token_auth import TokenAuth
from .upstream import UpstreamConnections
from .views import Views


def mirror_addons() -> list[object]:
    # Router first: it classifies every flow for the others. The status endpoints answer
    # before it; annotations, redaction and metrics come last, to see what clients get.
    router = Router()
    metrics = Metrics()
    return [
        UpstreamConnections(),
        RefuseTls(),
        ConnectionLimits(),
        StatusEndpoints(metrics.registry),
        router,
        ClientAuth(router),
        TokenAuth(router),
        Redirects(),
        Streaming(),
        OpLog(),
        Views(),
        Annotations(),
        Redaction(),
        metrics,
    ]
