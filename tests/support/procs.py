"""Start, watch and stop helper processes (registries, daemons, the mirror)."""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest

STOP_TIMEOUT = 10.0
PORT_ATTEMPTS = 3  # servers retry with a new port when theirs was taken meanwhile
_RANDOM = random.Random()
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_LIVE: set[Proc] = set()  # started and not yet stopped; atexit stops leftovers


class StartupError(RuntimeError):
    """A helper process exited early or did not become reachable in time."""


def require_binary(name: str) -> str:
    """Absolute path of an executable; fails the test (never skips) when it is missing."""
    path = shutil.which(name) or shutil.which(name, path=SYSTEM_PATH)
    if path is None:
        pytest.fail(f"required binary {name!r} not found on PATH ({os.environ.get('PATH')})")
    return path


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    Picked below the kernel's ephemeral range when possible, so that outgoing connections
    (which take their source ports from that range) cannot grab it before our server binds.
    """
    eph_low, _ = _ephemeral_range()
    low, high = 20000, min(eph_low, 32768)
    for _ in range(100 if high - low > 1000 else 0):
        port = _RANDOM.randrange(low, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bind_failed(log_text: str) -> bool:
    """The log of a server that could not bind its port (lost a race for it)."""
    return "address already in use" in log_text.lower()


def http_answers(url: str, timeout: float = 1.0) -> bool:
    """True when anything at url speaks HTTP (any status counts)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/")
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    describe: Callable[[], str] | None = None,
) -> None:
    """Poll check() until true; raise StartupError on timeout or when alive() turns false."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        if check():
            return
        if alive is not None and not alive():
            extra = describe() if describe else ""
            raise StartupError(f"{what}: process exited before it was ready\n{extra}")
        if time.monotonic() > deadline:
            extra = describe() if describe else ""
            raise StartupError(f"{what}: not ready after {timeout:.0f}s\n{extra}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def wait_for_http(url: str, timeout: float = 10.0, proc: Proc | None = None) -> None:
    """Wait until url gives any HTTP answer; with proc, fail early if it dies (log tail shown)."""
    wait_until(
        lambda: http_answers(url),
        timeout,
        f"waiting for {url}",
        alive=proc.running if proc else None,
        describe=proc.describe if proc else None,
    )


def wait_for_port(host: str, port: int, timeout: float = 10.0, proc: Proc | None = None) -> None:
    """Wait until host:port accepts TCP connections."""
    wait_until(
        lambda: port_open(host, port),
        timeout,
        f"waiting for {host}:{port}",
        alive=proc.running if proc else None,
        describe=proc.describe if proc else None,
    )


class Proc:
    """A subprocess whose stdout and stderr go to LOG_DIR/NAME.log; stop() by its PID.

    Usable as a context manager: ``with Proc([...], log_dir, "x") as p: ...``.
    """

    def __init__(
        self,
        args: Sequence[str],
        log_dir: Path,
        name: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.args = [str(a) for a in args]
        self.name = name
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, ready: Callable[[Proc], None] | None = None) -> Proc:
        """Start the process; ready(proc) may wait for it (on failure: stop and re-raise)."""
        if self._popen is not None:
            raise RuntimeError(f"{self.name} already started")
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(self.args)}\n".encode())
            log.flush()
            try:
                self._popen = subprocess.Popen(
                    self.args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                raise StartupError(f"{self.name}: cannot start {self.args[0]}: {exc}") from exc
        _LIVE.add(self)
        if ready is not None:
            try:
                ready(self)
            except BaseException:
                self.stop()
                raise
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to timeout, then SIGKILL. Returns the exit code."""
        popen = self._popen
        if popen is None:
            return None
        _LIVE.discard(self)
        if popen.poll() is None:
            try:
                popen.send_signal(signal.SIGTERM)
                popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=timeout)
        return popen.returncode

    def __enter__(self) -> Proc:
        if self._popen is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- state -----------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        if self._popen is None:
            raise RuntimeError(f"{self.name} not started")
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def describe(self) -> str:
        """Status plus the tail of the log, for error messages."""
        state = "running" if self.running() else f"exited with {self.returncode}"
        pid = self._popen.pid if self._popen else "-"
        return f"[{self.name} pid={pid} {state}; log {self.log_path}]\n{self.log_tail()}"

    def wait_for_http(self, url: str, timeout: float = 10.0) -> None:
        wait_for_http(url, timeout, proc=self)

    def wait_for_port(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        wait_for_port(host, port, timeout, proc=self)


@atexit.register
def _stop_leftovers() -> None:
    for proc in list(_LIVE):
        proc.stop()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_pid(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM a process we started indirectly (e.g. dockerd's containerd), then SIGKILL."""
    if not pid_alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid) or _is_zombie(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


class Service:
    """A server process the harness starts: `with Service(...) as s:` starts and stops it."""

    proc: Proc | None = None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        return self.proc.log_text() if self.proc else ""
