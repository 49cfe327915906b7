"""Run content views as mitmweb and mitmdump do, and read their output as plain text."""

import contextlib
from collections.abc import Iterable, Iterator

from mitmproxy import contentviews, http
from mitmproxy.test import taddons
from regmirror.observe.views import Views


def text(lines: Iterable[list[tuple[str, str]]]) -> str:
    return "\n".join("".join(t for _, t in line) for line in lines)


def show(view: str, flow: http.HTTPFlow, message: http.Message | None = None) -> tuple[str, str]:
    """(description, text) of a flow's response (or `message`) in a view, "auto" included."""
    description, lines, error = contentviews.get_message_content_view(
        view, message or flow.response, flow
    )
    assert error is None, error
    return description, text(lines)


@contextlib.contextmanager
def registered(*addons: object) -> Iterator[taddons.context]:
    """A test context with the registry views registered, removed again afterwards."""
    views = Views()
    with taddons.context(*addons, views) as tctx:
        try:
            yield tctx
        finally:
            views.done()
