"""py-spy profiles of the mirror under load, summarized by frame (self and inclusive) and
by addon hook. LOADS: what to profile, each against the mirror process the bench measures
(`--profile NAME,...`):

- blob, skopeo, manifest-head: the pass-through mirror (1 GiB with curl three times; a
  skopeo pull over TLS; manifest HEADs by tag);
- fill: the caching mirror, fresh, filling the 1 GiB blob (one curl: a miss, the tee);
- cached-head: the caching mirror's manifest HEADs by digest, answered from its cache;
- dp-skopeo, dp-curl, dp-64: the data plane's mirror, filled once through its API port
  (not profiled), then serving hits: a skopeo pull over TLS (307, then TLS in Python), the
  1 GiB blob with curl three times, and 64 clients x 8 MiB three times.
"""

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
from typing import TYPE_CHECKING

import httpx

from .measure import curl_get, curl_parallel, skopeo_pull
from .stack import CACHED, DATA_PLANE

if TYPE_CHECKING:
    from .plan import Plan
    from .scenarios import Data
    from .stack import Stack

Load = Callable[[], None]

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


def record(
    pid: int, out: Path, load: Callable[[], None], rate: int = 250, native: bool = False
) -> Path:
    """Run load() while py-spy samples `pid` (with `native`, C frames too); folded stacks go
    to `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    args = [py_spy(), "record", "-p", str(pid), "-o", str(out), "-f", "raw", "-r", str(rate)]
    args += ["--native"] if native else []
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


# Leaf frames of threads that wait, which py-spy counted as busy on this VM: a pool thread
# in queue.get (its work runs in a frame below, _WorkItem.run), the event loop in epoll.
_WAITING = ("_worker (concurrent/futures/thread.py)", "EpollSelector.select (selectors.py)")


def _frames(stack: str) -> list[str]:
    return [_LINE.sub(")", _SITE.sub(" (", f)) for f in stack.split(";")]


def summarize(folded: Path, top: int = 15) -> str:
    """Text: the busiest frames by self time, by inclusive time, and per addon hook."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    hooks: Counter[str] = Counter()
    total = waiting = 0
    for line in folded.read_text().splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        n = int(count)
        frames = _frames(stack)
        if frames[-1] in _WAITING:
            waiting += n
            continue
        total += n
        self_time[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
            if (m := _HOOK.match(f)) and m[1] not in _WRAPPERS:
                hooks[f"{m[2]} {m[1]}"] += n
    if not total:
        return "no samples\n"

    def block(title: str, counter: Counter[str]) -> list[str]:
        return [title, *(f"  {c / total * 100:5.1f}%  {f}" for f, c in counter.most_common(top))]

    lines = [f"{total} samples ({folded.name}; {waiting} of waiting threads left out)"]
    lines += block("self time:", self_time)
    lines += block("inclusive time:", inclusive)
    lines += block("addon code (inclusive; regmirror's and mitmproxy's own addons):", hooks)
    return "\n".join(lines) + "\n"


def _heads(url: str, path: str, headers: dict[str, str], n: int) -> Load:
    def heads() -> None:
        with httpx.Client(base_url=url, headers=headers) as client:
            for _ in range(n):
                client.head(path).raise_for_status()

    return heads


def _blob(stack: Stack, data: Data, plan: Plan, token: str) -> tuple[int, Load]:
    image = data.images[plan.big]
    url = f"{stack.url('mirror')}/v2/{image.repo}/blobs/{image.layers[0].digest}"

    def blobs() -> None:
        for _ in range(3):
            curl_get(url, {"Authorization": f"Bearer {token}"}, plan.big)

    return stack.pid("mirror"), blobs


def _skopeo(stack: Stack, data: Data, plan: Plan, token: str, target: str = "mirror") -> Load:
    ref = f"{stack.host(target)}/{data.images[plan.big].repo}:1"
    return lambda: skopeo_pull(stack.work / f"profile-skopeo-{target}", ref)


def _manifest_head(stack: Stack, data: Data, plan: Plan, token: str) -> tuple[int, Load]:
    image = data.images[plan.big]
    headers = {"Authorization": f"Bearer {token}", "Accept": image.manifest.media_type}
    path = f"/v2/{image.repo}/manifests/1"
    return stack.pid("mirror"), _heads(stack.url("mirror"), path, headers, plan.small_requests * 3)


def _fill(stack: Stack, data: Data, plan: Plan, token: str) -> tuple[int, Load]:
    image = data.images[plan.big]
    stack.restart(CACHED)
    url = f"{stack.url(CACHED)}/v2/{image.repo}/blobs/{image.layers[0].digest}"
    auth = {"Authorization": f"Bearer {stack.cached_token(CACHED)}"}

    def fill() -> None:
        curl_get(url, auth, plan.big)

    return stack.pid(CACHED), fill


def _cached_head(stack: Stack, data: Data, plan: Plan, token: str) -> tuple[int, Load]:
    image = data.images[plan.big]
    headers = {
        "Authorization": f"Bearer {stack.cached_token(CACHED)}",
        "Accept": image.manifest.media_type,
    }
    path = f"/v2/{image.repo}/manifests/{image.manifest.digest}"
    httpx.get(stack.url(CACHED) + path, headers=headers).raise_for_status()  # now cached
    return stack.pid(CACHED), _heads(stack.url(CACHED), path, headers, plan.small_requests * 3)


def _filled_data_plane(stack: Stack, urls: list[str], sizes: list[int], auth: dict) -> None:
    """A fresh data plane's mirror with `urls` fetched once through its API port (misses)."""
    for url, size in zip(urls, sizes, strict=True):
        curl_get(url, auth, size)
    stack.wait_committed(sum(sizes), DATA_PLANE)


def _dp_skopeo(stack: Stack, data: Data, plan: Plan, token: str) -> tuple[int, Load]:
    stack.restart(DATA_PLANE)
    image = data.images[plan.big]
    auth = {"Authorization": f"Bearer {stack.cached_token(DATA_PLANE)}"}
    base = f"{stack.url(DATA_PLANE)}/v2/{image.repo}/blobs/"
    blobs = [image.config, *image.layers]
    _filled_data_plane(stack, [base + b.digest for b in blobs], [b.size for b in blobs], auth)
    return stack.pid(DATA_PLANE), _skopeo(stack, data, plan, token, DATA_PLANE)


def _dp_curl(stack: Stack, data: Data, plan: Plan, token: str) -> tuple[int, Load]:
    stack.restart(DATA_PLANE)
    image = data.images[plan.big]
    auth = {"Authorization": f"Bearer {stack.cached_token(DATA_PLANE)}"}
    url = f"{stack.url(DATA_PLANE)}/v2/{image.repo}/blobs/{image.layers[0].digest}"
    _filled_data_plane(stack, [url], [plan.big], auth)

    def blobs() -> None:
        for _ in range(3):
            curl_get(url, auth, plan.big, follow=True)

    return stack.pid(DATA_PLANE), blobs


def _dp_64(stack: Stack, data: Data, plan: Plan, token: str) -> tuple[int, Load]:
    stack.restart(DATA_PLANE)
    blobs = data.many[: max(plan.concurrency)]
    auth = {"Authorization": f"Bearer {stack.cached_token(DATA_PLANE)}"}
    urls = [f"{stack.url(DATA_PLANE)}/v2/{data.many_repo}/blobs/{b.digest}" for b in blobs]
    _filled_data_plane(stack, urls, [b.size for b in blobs], auth)
    digests = [b.digest for b in blobs]

    def parallel() -> None:
        for i in range(3):
            curl_parallel(urls, auth, stack.work / f"profile-dp-64-{i}", digests, follow=True)

    return stack.pid(DATA_PLANE), parallel


LOADS: dict[str, Callable[[Stack, Data, Plan, str], tuple[int, Load]]] = {
    "blob": _blob,
    "skopeo": lambda stack, data, plan, token: (
        stack.pid("mirror"),
        _skopeo(stack, data, plan, token),
    ),
    "manifest-head": _manifest_head,
    "fill": _fill,
    "cached-head": _cached_head,
    "dp-skopeo": _dp_skopeo,
    "dp-curl": _dp_curl,
    "dp-64": _dp_64,
}
