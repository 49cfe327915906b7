"""Listings: a repository's tags (`/v2/<name>/tags/list`) and the catalog (`/v2/_catalog`)."""

from typing import Any

from mitmproxy import contentviews, http

from ...record import answered_op
from ...routing import names
from .render import Line, blank, heading, pairs, parse_json_object

LISTED = {names.TAGS: "tags", names.CATALOG: "repositories"}
SINGULAR = {"tags": "tag", "repositories": "repository"}


def render(doc: dict[str, Any], link: str = "") -> tuple[str, list[Line]]:
    """Tags of a repository or repositories of a catalog, one per line; `link` is the `Link`
    header that points at the next page."""
    key = "tags" if "tags" in doc else "repositories"
    items = [str(x) for x in doc.get(key) or []]
    count = f"{len(items)} {SINGULAR[key] if len(items) == 1 else key}"
    title = f"{doc['name']}: {count}" if doc.get("name") else count
    lines = [heading(title), *[[("text", f"  {x}")] for x in items]]
    if link:
        lines += [blank(), *pairs([("next page", link)])]
    return title, lines


class ListView(contentviews.View):
    name = "Registry list"

    def __call__(
        self, data: bytes, *, http_message: http.Message | None = None, **metadata: Any
    ) -> contentviews.TViewResult | None:
        doc = parse_json_object(data)
        if doc is None or not any(k in doc for k in LISTED.values()):
            return None
        link = http_message.headers.get("Link", "") if http_message else ""
        description, lines = render(doc, link)
        return description, iter(lines)

    def render_priority(
        self,
        data: bytes,
        *,
        flow: http.HTTPFlow | None = None,
        http_message: http.Message | None = None,
        **metadata: Any,
    ) -> float:
        return 2 if data and answered_op(flow, http_message) in LISTED else 0
