"""Building blocks for the registry content views: lines of (style, text) pairs.

Styles are the ones mitmproxy's tools know: "header" (bold), "highlight", "offset", "text".
"""

import datetime
import json
from collections.abc import Iterable, Sequence
from typing import Any

Line = list[tuple[str, str]]


def heading(text: str) -> Line:
    return [("highlight", text)]


def blank() -> Line:
    return [("text", " ")]  # not empty: mitmweb collapses empty lines


def pairs(items: Iterable[tuple[str, str]], indent: int = 0) -> list[Line]:
    """`key: value` lines with the values aligned."""
    items = list(items)
    width = max((len(k) for k, _ in items), default=0) + 2
    pad = " " * indent
    return [[("header", f"{pad}{k + ':':<{width}}"), ("text", v)] for k, v in items]


def table(head: Sequence[str], rows: Sequence[Sequence[str]], indent: int = 2) -> list[Line]:
    """A text table: a bold header row and left-aligned columns (the last one unpadded)."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    pad = " " * indent

    def fmt(cells: Sequence[str]) -> str:
        padded = [c.ljust(w) for c, w in zip(cells[:-1], widths[:-1], strict=True)]
        return pad + "  ".join([*padded, cells[-1]]).rstrip()

    return [[("header", fmt(head))], *[[("text", fmt(r))] for r in rows]]


def value(v: Any) -> str:
    """A JSON value as one line: strings as they are, the rest as compact JSON."""
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def duration(seconds: float) -> str:
    """`1 h 2 min`, `4 min 59 s`, `12 s`."""
    s = int(abs(seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (s, "s")]
    shown = [f"{n} {unit}" for n, unit in parts if n][:2]
    return " ".join(shown) or "0 s"


def local_time(timestamp: float, now: float | None = None) -> str:
    """A Unix time in the local time zone; with `now`, also how far away it is."""
    text = datetime.datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    if now is None:
        return text
    if timestamp >= now:
        return f"{text} (in {duration(timestamp - now)})"
    return f"{text} ({duration(now - timestamp)} ago)"


def parse_json_object(data: bytes) -> dict[str, Any] | None:
    """The JSON object in a body, or None if it is not one."""
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None
