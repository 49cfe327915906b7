"""Start the regmirror addon exactly as a user would: mitmdump -s addon/mirror.py ..."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from .procs import PORT_ATTEMPTS, Proc, Service, StartupError, bind_failed, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
ADDON_SCRIPT = REPO_ROOT / "addon" / "mirror.py"


def mitmdump_path() -> Path:
    """mitmdump next to the running interpreter (the project's venv)."""
    return Path(sys.executable).parent / "mitmdump"


def set_args(options: Mapping[str, str | bool | int | Sequence[str]]) -> list[str]:
    """{"a": "x", "b": True, "c": ["1", "2"]} -> --set a=x --set b=true --set c=1 --set c=2."""
    out: list[str] = []
    for key, value in options.items():
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            text = str(item).lower() if isinstance(item, bool) else str(item)
            out += ["--set", f"{key}={text}"]
    return out


MirrorFactory = Callable[..., "Mirror"]

# What a mirror's log never holds: a hook that raised, whether mitmproxy or the mirror's
# fail-closed guard (which logs the traceback) caught it.
CRASH_MARKS = ("Addon error", "Traceback", "answered 500")


class Mirror(Service):
    """mitmdump -s SCRIPT --mode reverse:UPSTREAM@127.0.0.1:PORT --set confdir=DIR EXTRA...

    Attributes: url, port, host ("127.0.0.1:PORT"), upstream, args, proc; log_text(), stop().
    `started` holds every mirror started, for the check that no test leaves a crash in a
    mirror's log (conftest).
    """

    started: list[Mirror] = []

    def __init__(
        self,
        base_dir: Path,
        upstream: str,
        options: Mapping[str, str | bool | int | Sequence[str]] | None = None,
        extra_args: Sequence[str] = (),
        script: Path | None = None,
        port: int | None = None,
        name: str = "mirror",
    ) -> None:
        self.base_dir = base_dir
        self.upstream = upstream
        self.script = script or ADDON_SCRIPT
        self.fixed_port = port is not None
        self.port = port or free_port()
        self.name = name
        self.confdir = base_dir / "confdir"
        # Every mirror has a cache of its own, unless the test says otherwise.
        self.options = {"regmirror_cache": str(base_dir / "cache"), **(options or {})}
        self.extra_args = list(extra_args)
        self.proc: Proc | None = None

    @property
    def args(self) -> list[str]:
        return [
            str(mitmdump_path()),
            "-s", str(self.script),
            "--mode", f"reverse:{self.upstream}@127.0.0.1:{self.port}",
            "--set", f"confdir={self.confdir}",
            *set_args(self.options),
            *self.extra_args,
        ]  # fmt: skip

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self, timeout: float = 20.0) -> Mirror:
        if not mitmdump_path().is_file():
            pytest.fail(f"mitmdump not found at {mitmdump_path()} (is the venv complete?)")
        if not self.script.is_file():
            pytest.fail(f"mirror addon script not found: {self.script}")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.confdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(PORT_ATTEMPTS):
            self.proc = Proc(
                self.args,
                self.base_dir,
                f"{self.name}-{attempt}" if attempt else self.name,
                # the log is read while the mirror runs (crash checks): no block buffering
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                cwd=self.base_dir,
            )
            try:
                # Wait for the TCP port only: an HTTP probe would reach the upstream (and the
                # token server) and pollute what tests record.
                self.proc.start(ready=lambda p: self._ready(p, timeout))
                Mirror.started.append(self)
                return self
            except StartupError:
                if self.fixed_port or not bind_failed(self.proc.log_text()):
                    raise
                self.port = free_port()
        raise StartupError(f"{self.name}: no free port after {PORT_ATTEMPTS} attempts")

    def _ready(self, proc: Proc, timeout: float) -> None:
        proc.wait_for_port(self.port, timeout=timeout)
        # mitmdump keeps running when the script fails to load; it logs "error in script".
        if "error in script" in proc.log_text():
            raise StartupError(f"{self.name}: the addon script failed to load\n{proc.describe()}")

    def stop(self) -> int | None:
        return self.proc.stop() if self.proc else None

    def crashes(self, since: int = 0) -> list[str]:
        """Log lines from offset `since` on that show a hook raised."""
        text = self.log_text()[since:]
        return [line for line in text.splitlines() if any(m in line for m in CRASH_MARKS)]

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("mirror not started")
        return self.proc.pid
