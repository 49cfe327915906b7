from mitmproxy import contentviews
from mitmproxy.test import taddons
from regmirror.observe.views import Views

NAMES = ["Registry manifest", "Registry token", "Registry error", "Registry list"]


def test_registered_while_loaded():
    views = Views()
    with taddons.context(views):
        assert [contentviews.get(n).name for n in NAMES] == NAMES
        views.done()
    assert all(contentviews.get(n) is None for n in NAMES)
