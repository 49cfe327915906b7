"""Content views for registry traffic in mitmweb and the mitmproxy console.

Each view outranks mitmproxy's JSON view (priority 1) for what it knows, so "auto" picks it:
manifests and indexes, token answers, refusals (challenges and error bodies), listings.
"""

from mitmproxy import contentviews

from .challenges import ErrorView
from .listings import ListView
from .manifests import ManifestView
from .tokens import TokenView


class Views:
    def __init__(self) -> None:
        self.views: list[contentviews.View] = [ManifestView(), TokenView(), ErrorView(), ListView()]

    def load(self, loader) -> None:
        for view in self.views:
            contentviews.add(view)

    def done(self) -> None:
        for view in self.views:
            contentviews.remove(view)
