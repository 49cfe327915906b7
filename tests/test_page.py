import re
from html.parser import HTMLParser

from regmirror.observe.activity import Event, Health, Minute, Snapshot
from regmirror.observe.images import CachedImage, Contents
from regmirror.observe.page import (
    View,
    ago,
    content_security_policy,
    link,
    render,
    sparkline,
)

NOW = 1_800_000_000.0
D = "sha256:" + "ab" * 32
EVIL = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


def view(**changes) -> View:
    minutes = [Minute() for _ in range(60)]
    minutes[-1] = Minute(cache_bytes=3_000, upstream_bytes=1_000, hits=3, misses=1)
    images = [CachedImage("docker.io", "library/nginx", "1", D, 27_100_000, NOW - 30, 12)]
    base = View(
        now=NOW,
        started=NOW - 7200,
        cache_on=True,
        contents=Contents(3_000_000_000, 1234, images),
        limit=20 << 30,
        problem="",
        activity=Snapshot(
            Minute(cache_bytes=9_000, upstream_bytes=1_000, hits=9, misses=1), minutes, {}, []
        ),  # fmt: skip
        images=images,
        matched=1,
        query="",
        sort="pulled",
        refresh=0,
        nonce="n0nce",
    )
    return base._replace(**changes)


class Parsed(HTMLParser):
    """The elements of a page, to check that it is well formed and what runs in it."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.open: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in ("meta", "input", "br"):  # void elements
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):  # <polyline .../>
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        assert self.open.pop() == tag, f"</{tag}> closes something else"


def shown(text: str) -> str:
    """The page's text without its tags, spaces as spaces."""
    return re.sub(r"<[^>]+>", "", text).replace("\u00a0", " ")


def test_the_page_shows_the_cache_the_traffic_and_the_images():
    text = render(view())
    words = shown(text)
    assert "size3.0 GB of 21.5 GB (14 %)" in words
    assert "entries1,234" in words
    assert "hit ratio, last hour75 % (3 hits, 1 misses)" in words
    assert "hit ratio, since start90 % (9 hits, 1 misses)" in words
    assert "served from the cache3.0 kB9.0 kB" in words  # last hour, since start
    assert "fetched upstream1.0 kB1.0 kB" in words
    assert "share from the cache75 %90 %" in words
    assert f"docker.io/library/nginx:1{D[:19]}…27.1 MB30 s ago12" in words
    assert f'title="{D}"' in text and 'data-bytes="27100000"' in text
    assert "up 2 h" in words and '<meta http-equiv="refresh"' not in text
    assert "No upstream asked yet." in text and "None since the start." in text
    parsed = Parsed(text)
    assert parsed.open == []


def test_everything_from_outside_is_escaped():
    evil = CachedImage("ghcr.io", EVIL, EVIL, EVIL, 1, NOW, 1)
    activity = view().activity
    activity.upstreams[EVIL] = Health(success=NOW, status=200, error=NOW, problem=EVIL)
    activity.recent.append(Event(NOW, "fill failed", EVIL, EVIL))
    text = render(view(images=[evil], query=EVIL, sort=EVIL, problem=EVIL, contents=None))
    assert EVIL not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    tags = Parsed(text).tags
    assert [t for t, _ in tags].count("script") == 1  # the page's own
    assert [a for t, a in tags if t == "script"] == [{"nonce": "n0nce"}]
    assert not [t for t, _ in tags if t == "img"]
    assert all(not k.startswith("on") for _, attrs in tags for k in attrs)


def test_only_the_pages_own_style_and_script_may_run():
    csp = content_security_policy("n0nce")
    assert "default-src 'none'" in csp and "script-src 'nonce-n0nce'" in csp
    assert "style-src 'nonce-n0nce'" in csp and "unsafe" not in csp
    tags = Parsed(render(view())).tags
    assert [a.get("nonce") for t, a in tags if t in ("style", "script")] == ["n0nce", "n0nce"]
    assert not [a for _, a in tags if "style" in a]  # no inline style attributes (CSP)


def test_cache_off_and_index_unreadable():
    off = render(view(cache_on=False, contents=None, images=[], matched=0))
    assert "off (<code>regmirror_cache</code> is empty)" in off
    broken = render(view(contents=None, problem="the cache index cannot be read: locked"))
    assert '<td class="bad">the cache index cannot be read: locked</td>' in broken


def test_upstreams_and_recent_events():
    activity = view().activity
    activity.upstreams["docker.io"] = Health(
        success=NOW - 5, status=200, error=NOW - 3600, problem="HTTP 503",
        remaining=7, limit=100, window=21600, ratelimit_seen=NOW - 20,
    )  # fmt: skip
    activity.upstreams["ghcr.io"] = Health(success=NOW - 500, status=200, error=NOW - 30,
                                           problem="Connect call failed")  # fmt: skip
    activity.recent.append(Event(NOW - 50, "stale", "docker.io/library/nginx:1", ""))
    text = render(view(activity=activity))
    hub = re.search(r"<tr><td>docker\.io</td>.*?</tr>", text)[0]
    assert '<b class="good">ok</b>' in hub and "1\u00a0h\u00a0ago" in hub and "HTTP 503" in hub
    assert '<span class="bad">7 of 100 per 6\u00a0h</span>' in hub  # under 10 % left
    ghcr = re.search(r"<tr><td>ghcr\.io</td>.*?</tr>", text)[0]
    assert '<b class="bad">failing</b>' in ghcr and "not seen" in ghcr
    assert "<td>stale</td><td>docker.io/library/nginx:1</td>" in text


def test_sort_links_refresh_and_a_cut_list():
    v = view(query="ng inx", sort="size", refresh=10, matched=600)
    text = render(v)
    assert '<meta http-equiv="refresh" content="10">' in text
    assert 'href="?q=ng+inx&amp;sort=image&amp;refresh=10"' in text
    assert (
        '<th aria-sort="descending"><a href="?q=ng+inx&amp;sort=size&amp;refresh=10">size</a> ▼'
        in text
    )
    assert '<a href="?q=ng+inx&amp;sort=size">off</a>' in text
    assert "(the first 1 of 600: narrow the filter)" in text
    assert link(view()) == "./"


def test_sparkline_scales_to_the_largest_value():
    svg = sparkline([("a", [0, 5, 10]), ("b", [10, 0, 0])], "label <x>")
    assert '<polyline class="a" points="2.0,38.0 120.0,20.0 238.0,2.0"/>' in svg
    assert '<polyline class="b" points="2.0,2.0 120.0,38.0 238.0,38.0"/>' in svg
    assert "label &lt;x&gt;" in svg
    flat = sparkline([("a", [0, 0])], "")
    assert 'points="2.0,38.0 238.0,38.0"' in flat
    gaps = sparkline([("a", [1, 1, None, 0, None, None, 1])], "")  # None: nothing to show
    assert '<polyline class="a" points="2.0,2.0 41.3,2.0"/>' in gaps
    assert '<circle class="a" cx="120.0" cy="38.0" r="2"/>' in gaps
    assert '<circle class="a" cx="238.0" cy="2.0" r="2"/>' in gaps
    assert sparkline([("a", [None, None])], "").count("<polyline") == 0


def test_ago():
    assert ago(0, NOW) == "never"
    assert ago(NOW - 59, NOW) == "59\u00a0s\u00a0ago"
    assert ago(NOW - 3 * 86400 - 5, NOW) == "3\u00a0d\u00a0ago"
    assert ago(NOW + 5, NOW) == "0\u00a0s\u00a0ago"  # a clock step back
