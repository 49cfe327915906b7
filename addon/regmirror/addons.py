"""The mirror's addons, in hook order."""

from .client_auth import ClientAuth
from .oplog import OpLog
from .redirects import Redirects
from .router import Router
from .streaming import Streaming
from .token_auth import TokenAuth
from .upstream import UpstreamConnections


def mirror_addons() -> list[object]:
    # Router first: it classifies every flow for the others.
    router = Router()
    return [
        UpstreamConnections(),
        router,
        ClientAuth(router),
        TokenAuth(router),
        Redirects(),
        Streaming(),
        OpLog(),
    ]
