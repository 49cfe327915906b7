"""Many open connections to a server: holding them, and the file descriptors that takes."""

from __future__ import annotations

import os
import resource
import socket
from pathlib import Path

from .procs import wait_until

BATCH = 100  # connections opened at once: mitmproxy listens with asyncio's backlog of 100
TCP_LISTEN = "0A"  # socket state in /proc/net/tcp


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def max_open_files(pid: int) -> int:
    """The soft RLIMIT_NOFILE of a running process."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise RuntimeError(f"no open-files limit in /proc/{pid}/limits")


def raise_open_files(need: int) -> tuple[int, int]:
    """Raise this process's soft open-files limit (processes it starts inherit it) to at
    least `need`; returns the previous (soft, hard) limits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        raise RuntimeError(f"open-files hard limit {hard} < {need}: run with `ulimit -n {need}`")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    return soft, hard


def accept_queue(port: int) -> int:
    """Connections waiting to be accepted by the TCP listener on `port` (the kernel shows a
    listening socket's accept queue as its rx_queue)."""
    waiting = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == TCP_LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                waiting += int(fields[4].split(":")[1], 16)
    return waiting


def hold_connections(port: int, n: int, source: str) -> list[socket.socket]:
    """n connections from `source` (an address on the loopback device, e.g. 127.0.0.2) to
    127.0.0.1:port, returned once the server has accepted them all. Opened BATCH at a time:
    a burst beyond the listen backlog costs a SYN retransmission (1 s) per dropped one."""
    socks: list[socket.socket] = []
    try:
        while len(socks) < n:
            for _ in range(min(BATCH, n - len(socks))):
                socks.append(
                    socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
                )
            wait_until(lambda: accept_queue(port) == 0, 20, f"{len(socks)} connections accepted")
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks
