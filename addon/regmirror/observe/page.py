"""The status page at /_regmirror/, rendered on the server: plain HTML with inline CSS and
SVG, no assets from anywhere, readable on a phone. A tiny script (allowed by a nonce in the
Content-Security-Policy, nothing else runs) filters the image table as you type; without
it the filter form still works (Enter), sorting and auto-refresh are plain links.

Every value from outside (repository names and tags from clients and upstreams, error
messages) goes through `html.escape`. Pure: `render(view)`."""

import html
import time
import urllib.parse
from collections.abc import Sequence
from typing import NamedTuple

from .activity import Event, Health, Minute, Snapshot
from .describe import human_size
from .images import DEFAULT_SORT, SORTS, CachedImage, Contents, filter_key

REFRESH_CHOICES = (0, 10, 60)  # seconds; 0: off
NBSP = "\u00a0"  # numbers stay with their units on a narrow screen

esc = html.escape


class View(NamedTuple):
    now: float
    started: float
    cache_on: bool
    contents: Contents | None  # None: not read (see problem)
    limit: int  # bytes
    problem: str  # why the cache index could not be read
    activity: Snapshot
    images: list[CachedImage]  # the rows shown, filtered and sorted (status.page_text)
    matched: int  # images the filter matched (more than shown when cut)
    query: str
    sort: str
    refresh: int
    nonce: str


def span(seconds: int) -> str:
    """`2 h`, `5 min`, `12 s`: the largest unit that fits, rounded down."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size}{NBSP}{unit}"
    return f"{seconds}{NBSP}s"


def ago(at: float, now: float) -> str:
    return f"{span(max(0, int(now - at)))}{NBSP}ago" if at else "never"


def stamp(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def when(at: float, now: float) -> str:
    """A time as `3 min ago`, the exact time on hover."""
    if not at:
        return "never"
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    return f'<time datetime="{iso}" title="{stamp(at)}">{ago(at, now)}</time>'


def size(n: int) -> str:
    shown = human_size(n).replace(" ", NBSP)
    return f'<span title="{n:,} bytes">{shown}</span>'


def share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}{NBSP}%" if whole else "–"


def sparkline(series: Sequence[tuple[str, Sequence[float | None]]], label: str) -> str:
    """Inline SVG: one line per (css class, values), on a common scale; None leaves a gap
    (a minute with nothing to show)."""
    width, height = 240, 40
    top = max((v for _, values in series for v in values if v is not None), default=0) or 1
    lines = []
    for css, values in series:
        step = (width - 4) / max(len(values) - 1, 1)  # 2 px inside each end: dots fit
        runs: list[list[str]] = [[]]
        for i, v in enumerate(values):
            if v is None:
                runs.append([])
            else:
                runs[-1].append(f"{2 + i * step:.1f},{height - 2 - (height - 4) * v / top:.1f}")
        for run in filter(None, runs):
            if len(run) == 1:  # a lone minute: a dot
                x, y = run[0].split(",")
                lines.append(f'<circle class="{css}" cx="{x}" cy="{y}" r="2"/>')
            else:
                lines.append(f'<polyline class="{css}" points="{" ".join(run)}"/>')
    return (
        f'<svg class="spark" viewBox="0 0 {width} {height}" preserveAspectRatio="none" '
        f'role="img" aria-label="{esc(label)}"><title>{esc(label)}</title>{"".join(lines)}</svg>'
    )


def link(view: View, **changes: object) -> str:
    """The page's own URL with `changes` to its query, for an href."""
    params = {"q": view.query, "sort": view.sort, "refresh": view.refresh, **changes}
    kept = {k: v for k, v in params.items() if v and not (k == "sort" and v == DEFAULT_SORT)}
    return esc("?" + urllib.parse.urlencode(kept) if kept else "./")


def cache_card(view: View) -> str:
    if not view.cache_on:
        return "<article><h2>Cache</h2><p>off (<code>regmirror_cache</code> is empty)</p></article>"
    rows = []
    if view.contents is not None:
        used, limit = view.contents.size, view.limit
        rows.append(
            f"<tr><th>size</th><td>{size(used)} of {size(limit)} ({share(used, limit)})"
            f'<br><meter min="0" max="{limit}" value="{used}" high="{int(limit * 0.9)}">'
            f"</meter></td></tr>"
        )
        rows.append(f"<tr><th>entries</th><td>{view.contents.entries:,}</td></tr>")
    else:
        rows.append(f'<tr><th>index</th><td class="bad">{esc(view.problem)}</td></tr>')
    total, hour = view.activity.total, sum(view.activity.minutes, Minute())
    for label, m in (("hit ratio, last hour", hour), ("hit ratio, since start", total)):
        rows.append(
            f"<tr><th>{label}</th><td>{share(m.hits, m.hits + m.misses)} "
            f'<span class="dim">({m.hits:,} hits, {m.misses:,} misses)</span></td></tr>'
        )
    ratios = [m.hits / (m.hits + m.misses) if m.hits + m.misses else None
              for m in view.activity.minutes]  # fmt: skip
    spark = sparkline([("hits", ratios)], "hit ratio per minute, last hour")
    return (
        f'<article><h2>Cache</h2><table class="kv">{"".join(rows)}</table>'
        f'<p class="chart">{spark}<span class="dim">hit ratio per minute, last hour</span></p>'
        "</article>"
    )


def traffic_card(view: View) -> str:
    total, minutes = view.activity.total, view.activity.minutes
    hour = sum(minutes, Minute())
    rows = "".join(
        f"<tr><th>{label}</th><td>{size(getattr(hour, f))}</td>"
        f"<td>{size(getattr(total, f))}</td></tr>"
        for label, f in (
            ('<i class="key cache"></i>served from the cache', "cache_bytes"),
            ('<i class="key upstream"></i>fetched upstream', "upstream_bytes"),
        )
    )
    rows += (
        f"<tr><th>share from the cache</th>"
        f"<td>{share(hour.cache_bytes, hour.cache_bytes + hour.upstream_bytes)}</td>"
        f"<td>{share(total.cache_bytes, total.cache_bytes + total.upstream_bytes)}</td></tr>"
    )
    spark = sparkline(
        [("cache", [m.cache_bytes for m in minutes]),
         ("upstream", [m.upstream_bytes for m in minutes])],
        "bytes per minute, last hour: from the cache and from upstream",
    )  # fmt: skip
    return (
        '<article><h2>Traffic</h2><table class="kv"><tr><th></th><th>last hour</th>'
        f"<th>since start</th></tr>{rows}</table>"
        f'<p class="chart">{spark}<span class="dim">bytes per minute, last hour</span></p>'
        "</article>"
    )


def ratelimit(h: Health, now: float) -> str:
    if not h.ratelimit_seen:
        return '<span class="dim">not seen</span>'
    remaining = "?" if h.remaining is None else f"{h.remaining:g}"
    limit = "" if h.limit is None else f" of {h.limit:g}"
    per = f" per {span(h.window)}" if h.window else ""
    low = h.remaining is not None and h.limit and h.remaining < 0.1 * h.limit
    css = ' class="bad"' if low else ""
    seen = when(h.ratelimit_seen, now)
    return f'<span{css}>{remaining}{limit}{per}</span> <span class="dim">{seen}</span>'


def upstreams_section(view: View) -> str:
    now, upstreams = view.now, view.activity.upstreams
    if not upstreams:
        body = '<p class="dim">No upstream asked yet.</p>'
    else:
        rows = []
        for name in sorted(upstreams):
            h = upstreams[name]
            failing = h.error > h.success
            state = '<b class="bad">failing</b>' if failing else '<b class="good">ok</b>'
            error = f"{when(h.error, now)}: {esc(h.problem)}" if h.error else "never"
            success = f"{when(h.success, now)} (HTTP {h.status})" if h.success else "never"
            rows.append(
                f"<tr><td>{esc(name)}</td><td>{state}</td><td>{success}</td>"
                f"<td>{error}</td><td>{ratelimit(h, now)}</td></tr>"
            )
        body = (
            '<div class="scroll"><table><thead><tr><th>registry</th><th>state</th>'
            "<th>last success</th><th>last error</th><th>rate limit left</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>"
        )
    return f'<section id="upstreams"><h2>Upstreams</h2>{body}</section>'


def recent_section(view: View) -> str:
    events: list[Event] = view.activity.recent
    if not events:
        body = '<p class="dim">None since the start.</p>'
    else:
        rows = "".join(
            f"<tr><td>{when(e.at, view.now)}</td><td>{esc(e.kind)}</td>"
            f"<td>{esc(e.image)}</td><td>{esc(e.detail)}</td></tr>"
            for e in events
        )
        body = (
            '<div class="scroll"><table><thead><tr><th>when</th><th>what</th><th>image</th>'
            f"<th>detail</th></tr></thead><tbody>{rows}</tbody></table></div>"
        )
    return f'<section id="recent"><h2>Stale answers and fill failures</h2>{body}</section>'


def images_section(view: View) -> str:
    heads = []
    for column, title in (("image", "image"), ("", "digest"), ("size", "size"),
                          ("pulled", "last pulled"), ("pulls", "pulls")):  # fmt: skip
        if not column:
            heads.append(f'<th class="digest">{title}</th>')
            continue
        current = column == (view.sort if view.sort in SORTS else DEFAULT_SORT)
        arrow = (" ▼" if SORTS[column][1] else " ▲") if current else ""
        aria = f' aria-sort="{"descending" if SORTS[column][1] else "ascending"}"'
        heads.append(
            f'<th{aria if current else ""}><a href="{link(view, sort=column)}">{title}</a>'
            f"{arrow}</th>"
        )
    rows = "".join(
        f'<tr data-key="{esc(filter_key(i))}"><td>{esc(i.name)}</td>'
        f'<td class="digest"><code title="{esc(i.digest)}">{esc(i.digest[:19])}…</code></td>'
        f'<td data-bytes="{i.size}">{size(i.size)}</td><td>{when(i.last_pulled, view.now)}</td>'
        f"<td>{i.pulls:,}</td></tr>"
        for i in view.images
    )
    shown = len(view.images)
    cut = (
        f" (the first {shown} of {view.matched}: narrow the filter)" if view.matched > shown else ""
    )
    return (
        '<section id="images"><h2>Cached images</h2>'
        f'<form method="get" action="./"><input type="search" id="filter" name="q" '
        f'value="{esc(view.query)}" placeholder="filter: name, tag or digest" '
        f'aria-label="filter the images" autocomplete="off">'
        f'<input type="hidden" name="sort" value="{esc(view.sort)}">'
        f'<input type="hidden" name="refresh" value="{view.refresh}">'
        f"<button>filter</button></form>"
        f'<p class="dim"><span id="shown">{shown}</span> shown{esc(cut)}. Pulls: the fetch '
        "that cached the manifest and its cache hits since (a HEAD and a GET each count; "
        "written to the index every 30 s).</p>"
        f'<div class="scroll"><table id="image-table"><thead><tr>{"".join(heads)}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div></section>"
    )


def header(view: View) -> str:
    choices = " ".join(
        f"<b>{span(s) if s else 'off'}</b>" if s == view.refresh
        else f'<a href="{link(view, refresh=s)}">{span(s) if s else "off"}</a>'
        for s in REFRESH_CHOICES
    )  # fmt: skip
    up = span(int(view.now - view.started))
    return (
        f"<header><h1>regmirror</h1><p>up {up} · as of {stamp(view.now)} · "
        f"auto-refresh: {choices}</p></header>"
    )


STYLE = """
:root{color-scheme:light dark;--fg:#1d2430;--dim:#667085;--bg:#f6f7f9;--card:#fff;
--line:#e3e6ea;--cache:#1a7f37;--upstream:#2f6fdb;--bad:#c4320a;--good:#1a7f37}
@media(prefers-color-scheme:dark){:root{--fg:#e6e8eb;--dim:#98a2b3;--bg:#14171c;
--card:#1d2128;--line:#2e343d;--cache:#4ac26b;--upstream:#6ea8fe;--bad:#ff7b59;--good:#4ac26b}}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,sans-serif;color:var(--fg);
background:var(--bg)}header,main{max-width:72rem;margin:auto;padding:.5rem 1rem}
h1{font-size:1.4rem;margin:.3rem 0 0}h2{font-size:1.05rem;margin:0 0 .5rem}
header p,.dim{color:var(--dim);font-size:.85rem}section,article{background:var(--card);
border:1px solid var(--line);border-radius:8px;padding:.8rem 1rem;margin:0 0 1rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(20rem,1fr));gap:1rem;
background:none;border:0;padding:0}.cards article{margin:0}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .5rem;
border-bottom:1px solid var(--line);vertical-align:top}th{font-weight:600}
.kv th{font-weight:normal;color:var(--dim)}.scroll{overflow-x:auto}
th,time,#image-table td{white-space:nowrap}
#image-table td:first-child{white-space:normal;overflow-wrap:anywhere}code{font-size:.85em}
a{color:var(--upstream)}meter{width:100%;height:.8rem}.bad{color:var(--bad)}
.good{color:var(--good)}.chart{display:flex;align-items:center;gap:.6rem;margin:.6rem 0 0}
.spark{width:240px;height:40px;max-width:60%;flex:none}.spark polyline{fill:none;
stroke-width:1.5;vector-effect:non-scaling-stroke}.spark .cache,.spark .hits{stroke:var(--cache)}
.spark .upstream{stroke:var(--upstream)}.spark circle{stroke:none;fill:var(--cache)}
.spark circle.upstream{fill:var(--upstream)}.key{display:inline-block;width:.7rem;height:.7rem;
border-radius:2px;margin-right:.4rem}.key.cache{background:var(--cache)}
.key.upstream{background:var(--upstream)}form{display:flex;gap:.5rem;margin:0 0 .3rem}
input[type=search]{flex:1;font:inherit;padding:.35rem .5rem;border:1px solid var(--line);
border-radius:6px;background:var(--bg);color:inherit}button{font:inherit}
@media(max-width:40rem){.digest{display:none}body{font-size:14px}}
"""

# Filters the rows the server sent as you type, with filter_key's text (data-key), and
# keeps the query in the URL so that auto-refresh keeps it.
SCRIPT = """
const box = document.getElementById("filter");
const rows = document.querySelectorAll("#image-table tbody tr");
const shown = document.getElementById("shown");
box.addEventListener("input", () => {
  const q = box.value.trim().toLowerCase();
  let n = 0;
  for (const row of rows) {
    row.hidden = !row.dataset.key.includes(q);
    if (!row.hidden) n++;
  }
  shown.textContent = n;
  const url = new URL(location.href);
  if (q) url.searchParams.set("q", box.value.trim()); else url.searchParams.delete("q");
  history.replaceState(null, "", url);
});
"""


def render(view: View) -> str:
    refresh = f'<meta http-equiv="refresh" content="{view.refresh}">' if view.refresh else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{refresh}<title>regmirror status</title>"
        f'<style nonce="{view.nonce}">{STYLE}</style></head><body>{header(view)}<main>'
        f'<section class="cards">{cache_card(view)}{traffic_card(view)}</section>'
        f"{upstreams_section(view)}{recent_section(view)}{images_section(view)}</main>"
        f'<script nonce="{view.nonce}">{SCRIPT}</script></body></html>'
    )


def content_security_policy(nonce: str) -> str:
    """Only the page's own style and script run; nothing is loaded from anywhere."""
    return (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
