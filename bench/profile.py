"""py-spy profiles of the mirror under load, summarized by frame (self and inclusive) and
by addon hook."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

_SITE = re.compile(r"\s*\(/\S*?(site-packages|lib/python3\.\d+|addon)/")
_LINE = re.compile(r":\d+\)$")
_HOOK = re.compile(r"^(\S+) \((regmirror/[\w/]+\.py|mitmproxy/addons/\w+\.py)")
# regmirror frames that wrap every connection rather than run as hooks (streaming.py)
_WRAPPERS = ("install_large_reads.<locals>.handle_connection",)


def py_spy() -> str:
    path = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(path).is_file():
        raise RuntimeError("py-spy not found: pip install py-spy (in the bench extras)")
    return path


def record(pid: int, out: Path, load: Callable[[], None], rate: int = 250) -> Path:
    """Run load() while py-spy samples `pid`; folded stacks go to `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    args = [py_spy(), "record", "-p", str(pid), "-o", str(out), "-f", "raw", "-r", str(rate)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)  # py-spy attaches
        load()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    if not out.is_file():
        raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')}")
    return out


def _frames(stack: str) -> list[str]:
    return [_LINE.sub(")", _SITE.sub(" (", f)) for f in stack.split(";")]


def summarize(folded: Path, top: int = 15) -> str:
    """Text: the busiest frames by self time, by inclusive time, and per addon hook."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    hooks: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        n = int(count)
        total += n
        frames = _frames(stack)
        self_time[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
            if (m := _HOOK.match(f)) and m[1] not in _WRAPPERS:
                hooks[f"{m[2]} {m[1]}"] += n
    if not total:
        return "no samples\n"

    def block(title: str, counter: Counter[str]) -> list[str]:
        return [title, *(f"  {c / total * 100:5.1f}%  {f}" for f, c in counter.most_common(top))]

    lines = [f"{total} samples ({folded.name})"]
    lines += block("self time:", self_time)
    lines += block("inclusive time:", inclusive)
    lines += block("addon code (inclusive; regmirror's and mitmproxy's own addons):", hooks)
    return "\n".join(lines) + "\n"
