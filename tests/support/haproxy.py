"""haproxy (Debian's, 2.6) in front of mirror replicas, with the configuration the README's
Running several replicas shows: docs/haproxy.cfg as it is, its addresses given in the
environment, one `server` line per replica made from its first. A second file adds what
only tests need: a frontend per replica that sends everything to that replica alone (to
pin a request), and the stats page, to tell which replicas haproxy takes for up."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path

import httpx

from .mirror import REPO_ROOT
from .procs import Proc, Service, free_port, require_binary, wait_until

DOC_CONFIG = REPO_ROOT / "docs" / "haproxy.cfg"
DATA_PLANE = "# The blob data plane"  # where the doc's optional last frontend and backend begin
_SERVER = re.compile(r'^(\s*server replica)1 "\$\{REGMIRROR_REPLICA1(_BLOBS)?\}"(.*)$', re.M)
_OTHER = re.compile(
    r'^\s*server replica([2-9]|\d\d+) "\$\{REGMIRROR_REPLICA\d+(_BLOBS)?\}".*\n', re.M
)


def doc_config(replicas: int, data_plane: bool) -> str:
    """docs/haproxy.cfg with one `server` line per replica in each backend (it shows two),
    made from the first, and without its data-plane part unless `data_plane`."""
    text = DOC_CONFIG.read_text()
    if not data_plane:
        text = text[: text.index(DATA_PLANE)]
    text = _OTHER.sub("", text)

    def servers(m: re.Match[str]) -> str:
        suffix = m[2] or ""
        return "\n".join(
            f'{m[1]}{i} "${{REGMIRROR_REPLICA{i}{suffix}}}"{m[3]}' for i in range(1, replicas + 1)
        )

    return _SERVER.sub(servers, text)


class Haproxy(Service):
    """haproxy -f CONFIG -f TEST_EXTRAS -db: `url`/`host` balance over every replica,
    `blob_host` over their data planes, `pinned[i]` is a host:port that reaches replica i+1
    only. `up()` names the servers the health checks find up."""

    def __init__(self, base_dir: Path, name: str = "haproxy") -> None:
        """Its ports are chosen here, so that replicas can be told them before start()."""
        self.base_dir, self.name = base_dir, name
        self.port, self.stats_port, self.blob_port = free_port(), free_port(), free_port()
        self.replicas: list[str] = []
        self.blobs: list[str] = []
        self.pinned: list[str] = []
        self.proc: Proc | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def blob_host(self) -> str:
        """Where the data-plane frontend listens: the replicas' regmirror_blob_url."""
        return f"127.0.0.1:{self.blob_port}"

    def _extras(self) -> str:
        out = [
            "frontend stats",
            f"    bind 127.0.0.1:{self.stats_port}",
            "    stats enable",
            "    stats uri /stats",
        ]
        for i, (pin, replica) in enumerate(zip(self.pinned, self.replicas, strict=True), 1):
            out += [
                f"frontend pin_replica{i}",
                f"    bind {pin}",
                f"    default_backend pin_replica{i}",
                f"backend pin_replica{i}",
                "    http-response set-header X-Regmirror-Replica %s",
                f"    server replica{i} {replica}",
            ]
        return "\n".join(out) + "\n"

    def start(
        self, replicas: Sequence[str], blobs: Sequence[str] = (), timeout: float = 20.0
    ) -> Haproxy:
        """replicas: each mirror's host:port; blobs: each one's data plane host:port, if on."""
        binary = require_binary("haproxy")
        self.replicas, self.blobs = list(replicas), list(blobs)
        self.pinned = [f"127.0.0.1:{free_port()}" for _ in self.replicas]
        self.base_dir.mkdir(parents=True, exist_ok=True)
        config, extras = self.base_dir / "haproxy.cfg", self.base_dir / "test-extras.cfg"
        config.write_text(doc_config(len(self.replicas), bool(self.blobs)))
        extras.write_text(self._extras())
        env = {"REGMIRROR_LISTEN": self.host, "REGMIRROR_BLOB_LISTEN": self.blob_host}
        env |= {f"REGMIRROR_REPLICA{i}": r for i, r in enumerate(self.replicas, 1)}
        env |= {f"REGMIRROR_REPLICA{i}_BLOBS": b for i, b in enumerate(self.blobs, 1)}
        self.proc = Proc([binary, "-f", config, "-f", extras, "-db"], self.base_dir, self.name,
                         env=env)  # fmt: skip
        self.proc.start(ready=lambda p: self._ready(p, timeout))
        return self

    def _ready(self, proc: Proc, timeout: float) -> None:
        proc.wait_for_port(self.port, timeout=timeout)
        for pin in self.pinned:
            proc.wait_for_port(int(pin.rpartition(":")[2]), timeout=timeout)
        self.wait_up(len(self.replicas), timeout)

    def up(self) -> set[str]:
        """The servers of the balanced backend that haproxy's health checks take for up."""
        stats = httpx.get(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=5)
        rows = csv.DictReader(io.StringIO(stats.text.removeprefix("# ")))
        return {
            r["svname"]
            for r in rows
            if r["pxname"] == "regmirror" and r["svname"].startswith("replica")
            and r["status"].startswith("UP")
        }  # fmt: skip

    def wait_up(self, count: int, timeout: float = 20.0) -> None:
        """Wait until exactly `count` replicas are up (health checks: every 2 s, 2 in a row)."""
        assert self.proc is not None
        wait_until(lambda: len(self.up()) == count, timeout, f"{count} replicas up in haproxy",
                   alive=self.proc.running, describe=self.proc.describe)  # fmt: skip

    def stop(self) -> int | None:
        return self.proc.stop() if self.proc else None


def served_by(response: httpx.Response) -> str:
    """The replica that answered a request through haproxy."""
    return response.headers.get("X-Regmirror-Replica", "")
