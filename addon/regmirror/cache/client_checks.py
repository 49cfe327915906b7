"""Who may read content fetched with a client's own credentials (docker login to a private
repository): only a client whose credentials the upstream accepts for that repository. The
mirror asks the upstream (a HEAD of what the client asks for, with the client's
Authorization) and remembers a yes per credentials and repository, for at most REMEMBER
seconds and never past the token's own expiry. When the upstream cannot be asked, the
answer is no: fail closed."""

import time

from mitmproxy import http

from ..auth.ledger import Ledger
from ..auth.provenance import Provenances
from ..transport.side_requests import SideRequests, passed_headers

REMEMBER = 60.0  # seconds a yes is remembered, at most


def _key(authorization: str, registry: str, repository: str) -> str:
    return f"{registry}\n{repository}\n{authorization}"


class ClientChecks:
    def __init__(self, side: SideRequests, provenances: Provenances) -> None:
        self.side, self.provenances = side, provenances
        self.ledger = Ledger[bool](0.0, REMEMBER)

    def remember(self, req: http.Request, registry: str, repository: str, now: float) -> None:
        """The upstream has just accepted this request's credentials for `repository`."""
        authorization = req.headers.get("Authorization", "")
        expiry = self.provenances.expiry(authorization, now)
        lifetime = REMEMBER if expiry is None else min(REMEMBER, expiry - now)
        if lifetime > 0:
            self.ledger.add(_key(authorization, registry, repository), True, lifetime, now)

    async def accepted(self, req: http.Request, registry: str, repository: str) -> bool:
        """Does the upstream accept this request's credentials for `repository`? `req` is
        the client's request as it would go upstream."""
        authorization, now = req.headers.get("Authorization", ""), time.time()
        if self.ledger.get(_key(authorization, registry, repository), now):
            return True
        said = await self.side.head(req.url, passed_headers(req))
        if said.status != 200:
            return False
        self.remember(req, registry, repository, time.time())
        return True
