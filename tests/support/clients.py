"""Real registry clients: skopeo, dockerd + docker CLI, containerd + ctr, podman."""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .procs import Proc, Service, kill_pid, require_binary, wait_until

CMD_TIMEOUT = 180.0


class CommandError(RuntimeError):
    """A client command failed; `.result` holds the CompletedProcess (stdout/stderr)."""

    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        super().__init__(
            f"command failed with exit code {result.returncode}: {' '.join(result.args)}\n"
            f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
        )

    @property
    def stderr(self) -> str:
        return self.result.stderr


def run_cmd(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = CMD_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else None,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and res.returncode != 0:
        raise CommandError(res)
    return res


def _short_tmpdir(prefix: str) -> Path:
    """A short directory under /tmp for unix sockets (path length limit is 108 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


# ------------------------------------------------------------------------------------------
# skopeo
# ------------------------------------------------------------------------------------------


class Skopeo:
    """skopeo with an isolated environment in work_dir.

    - its own TMPDIR (`--tmpdir`), HOME, XDG dirs, empty auth file, `--registries-conf`,
      `--registries.d` and an accept-anything `--policy`;
    - the blob-info cache: as root skopeo always uses /var/lib/containers/cache (there is no
      flag for it). containers/image decides "root" from `_CONTAINERS_ROOTLESS_UID` when set,
      so we set it to a non-zero uid: the cache then lives under XDG_DATA_HOME in work_dir,
      a fresh one per Skopeo instance (per test with the function-scoped fixture).
    - every docker:// reference is plain HTTP (`--tls-verify=false`).
    """

    def __init__(self, work_dir: Path, registries_conf: str = "") -> None:
        self.binary = require_binary("skopeo")
        self.work_dir = work_dir
        for sub in ("tmp", "home", "data", "run", "config", "registries.d"):
            (work_dir / sub).mkdir(parents=True, exist_ok=True)
        (work_dir / "run").chmod(0o700)
        self.registries_conf = work_dir / "registries.conf"
        self.registries_conf.write_text(registries_conf)
        self.policy = work_dir / "policy.json"
        self.policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
        self.authfile = work_dir / "auth.json"
        self.authfile.write_text('{"auths": {}}')

    @property
    def cache_dir(self) -> Path:
        return self.work_dir / "data" / "containers" / "cache"

    def env(self) -> dict[str, str]:
        w = self.work_dir
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(w / "home"),
            "TMPDIR": str(w / "tmp"),
            "XDG_DATA_HOME": str(w / "data"),
            "XDG_RUNTIME_DIR": str(w / "run"),
            "XDG_CONFIG_HOME": str(w / "config"),
            "REGISTRY_AUTH_FILE": str(self.authfile),
            "_CONTAINERS_ROOTLESS_UID": "1000",
        }

    def command(self, *args: str) -> list[str]:
        """skopeo GLOBAL-FLAGS ARGS... (the global isolation flags are added here)."""
        return [
            self.binary,
            "--tmpdir", str(self.work_dir / "tmp"),
            "--registries.d", str(self.work_dir / "registries.d"),
            "--policy", str(self.policy),
            *args,
        ]  # fmt: skip

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cmd(self.command(*args), env=self.env(), check=check)

    def inspect(
        self,
        ref: str,
        creds: str | None = None,
        raw: bool = False,
        config: bool = False,
        extra: Sequence[str] = (),
    ) -> Any:
        """skopeo inspect: parsed JSON; with raw=True the manifest bytes exactly as served."""
        args = [
            "inspect", "--registries-conf", str(self.registries_conf),
            "--tls-verify=false",
        ]  # fmt: skip
        args += ["--creds", creds] if creds else ["--no-creds"]
        if raw:
            args.append("--raw")
        if config:
            args.append("--config")
        args += [*extra, _docker_ref(ref)]
        if raw:
            return self._run_bytes(args)
        return json.loads(self.run(*args).stdout)

    def _run_bytes(self, args: list[str]) -> bytes:
        res = subprocess.run(
            self.command(*args),
            capture_output=True,
            env=self.env(),
            timeout=CMD_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        if res.returncode != 0:
            raise CommandError(
                subprocess.CompletedProcess(
                    res.args,
                    res.returncode,
                    res.stdout.decode(errors="replace"),
                    res.stderr.decode(errors="replace"),
                )
            )
        return res.stdout

    def copy(
        self,
        src: str,
        dest: str,
        all: bool = False,  # noqa: A002 - mirrors skopeo's --all
        creds: str | None = None,
        dest_creds: str | None = None,
        preserve_digests: bool = True,
        extra: Sequence[str] = (),
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """skopeo copy SRC DEST. `creds` are for the source, `dest_creds` for a registry dest.

        Bare "host:port/name:tag" references mean docker://; use "dir:PATH" or
        "oci:PATH:TAG" for local destinations.
        """
        args = ["copy", "--registries-conf", str(self.registries_conf), "-q"]
        args += ["--src-tls-verify=false", "--dest-tls-verify=false"]
        args += ["--src-creds", creds] if creds else ["--src-no-creds"]
        if dest_creds:
            args += ["--dest-creds", dest_creds]
        if all:
            args.append("--all")
        if preserve_digests:
            args.append("--preserve-digests")
        args += [*extra, _docker_ref(src), _docker_ref(dest)]
        return self.run(*args, check=check)

    def list_tags(self, ref: str, creds: str | None = None) -> list[str]:
        args = ["list-tags", "--registries-conf", str(self.registries_conf), "--tls-verify=false"]
        args += ["--creds", creds] if creds else ["--no-creds"]
        args.append(_docker_ref(ref))
        return list(json.loads(self.run(*args).stdout)["Tags"])


_TRANSPORTS = (
    "docker:", "dir:", "oci:", "oci-archive:", "docker-archive:", "docker-daemon:",
    "containers-storage:", "tarball:",
)  # fmt: skip


def _is_transport(ref: str) -> bool:
    return ref.startswith(_TRANSPORTS)


def _docker_ref(ref: str) -> str:
    """'127.0.0.1:5000/a:1' -> 'docker://127.0.0.1:5000/a:1'; other transports unchanged."""
    return ref if _is_transport(ref) else f"docker://{ref}"


# ------------------------------------------------------------------------------------------
# dockerd + docker CLI
# ------------------------------------------------------------------------------------------


def _unix_http_ok(sock_path: Path, path: str) -> bool:
    """GET path over a unix socket answers 200."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(1.0)
    try:
        sock.connect(str(sock_path))
    except OSError:
        sock.close()
        return False
    conn = http.client.HTTPConnection("localhost", timeout=1.0)
    conn.sock = sock
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


DockerdFactory = Callable[..., "Dockerd"]


class Dockerd(Service):
    """A private dockerd (vfs, no networking) with `registry-mirrors` = mirrors.

    Its data-root lives in base_dir; exec-root, pidfile and socket in a short /tmp dir.
    `docker pull NAME:TAG` of Docker Hub names (docker.io/library/NAME) goes to the mirrors.
    """

    def __init__(
        self,
        base_dir: Path,
        mirrors: Sequence[str] = (),
        insecure_registries: Sequence[str] = (),
        debug: bool = False,
        name: str = "dockerd",
    ) -> None:
        self.dockerd_bin = require_binary("dockerd")
        self.docker_bin = require_binary("docker")
        self.base_dir = base_dir
        self.name = name
        self.mirrors = list(mirrors)
        insecure = list(insecure_registries)
        for url in self.mirrors:  # a plain-HTTP mirror must be insecure
            host = url.split("://", 1)[-1].rstrip("/")
            if host not in insecure:
                insecure.append(host)
        self.insecure_registries = insecure
        self.debug = debug
        self.run_dir = _short_tmpdir("dk-")
        self.socket = self.run_dir / "docker.sock"
        self.config_dir = base_dir / "cli-config"  # DOCKER_CONFIG for the CLI
        self.proc: Proc | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def daemon_json(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "registry-mirrors": self.mirrors,
            "insecure-registries": self.insecure_registries,
            "features": {"buildkit": False},
        }
        if self.debug:
            cfg["debug"] = True
        return cfg

    def start(self, timeout: float = 60.0) -> Dockerd:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "config.json").write_text("{}")
        cfg = self.base_dir / "daemon.json"
        cfg.write_text(json.dumps(self.daemon_json(), indent=2))
        args = [
            self.dockerd_bin,
            "--config-file", str(cfg),
            "--data-root", str(self.base_dir / "root"),
            "--exec-root", str(self.run_dir / "exec"),
            "--pidfile", str(self.run_dir / "docker.pid"),
            "-H", self.host,
            "--iptables=false", "--ip6tables=false", "--bridge=none",
            "--storage-driver=vfs",
        ]  # fmt: skip
        self.proc = Proc(args, self.base_dir, self.name)
        self.proc.start(
            ready=lambda p: wait_until(
                lambda: _unix_http_ok(self.socket, "/_ping"),
                timeout,
                f"{self.name} on {self.socket}",
                alive=p.running,
                describe=p.describe,
            )
        )
        return self

    def _containerd_pid(self) -> int | None:
        pidfile = self.run_dir / "exec" / "containerd" / "containerd.pid"
        try:
            return int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        child = self._containerd_pid()
        if self.proc is not None:
            self.proc.stop(timeout=15)
        if child is not None:  # dockerd's own containerd, normally gone with it
            kill_pid(child)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    # -- CLI -------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.base_dir),
            "DOCKER_HOST": self.host,
            "DOCKER_CONFIG": str(self.config_dir),
        }

    def docker(
        self, *args: str, check: bool = True, timeout: float = CMD_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this daemon."""
        return run_cmd([self.docker_bin, *args], env=self.env(), check=check, timeout=timeout)

    def pull(
        self, ref: str, check: bool = True, platform: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        args = ["pull", "-q"]
        if platform:
            args += ["--platform", platform]
        return self.docker(*args, ref, check=check)

    def inspect(self, ref: str) -> dict[str, Any]:
        return dict(json.loads(self.docker("image", "inspect", ref).stdout)[0])

    def image_id(self, ref: str) -> str:
        return str(self.inspect(ref)["Id"])

    def repo_digests(self, ref: str) -> list[str]:
        return list(self.inspect(ref).get("RepoDigests") or [])

    def rmi(self, *refs: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return self.docker("rmi", "-f", *refs, check=check)

    def remove_all_images(self) -> None:
        ids = self.docker("images", "-aq").stdout.split()
        if ids:
            self.docker("rmi", "-f", *sorted(set(ids)), check=False)

    def set_hub_credentials(self, user: str, password: str) -> None:
        """Store Docker Hub credentials in the CLI config (what `docker login` would write for
        docker.io). The CLI sends them with `docker pull` of Hub names; dockerd then uses them
        at the token realm of the registry mirror."""
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        config = {"auths": {"https://index.docker.io/v1/": {"auth": auth}}}
        (self.config_dir / "config.json").write_text(json.dumps(config))

    def login(self, server: str, user: str, password: str) -> subprocess.CompletedProcess[str]:
        """docker login (credentials land in this daemon's own DOCKER_CONFIG)."""
        res = subprocess.run(
            [self.docker_bin, "login", "-u", user, "--password-stdin", server],
            input=password, capture_output=True, text=True, env=self.env(), timeout=CMD_TIMEOUT,
        )  # fmt: skip
        if res.returncode != 0:
            raise CommandError(res)
        return res


# ------------------------------------------------------------------------------------------
# containerd + ctr
# ------------------------------------------------------------------------------------------

CONTAINERD_DISABLED_PLUGINS = [
    "io.containerd.grpc.v1.cri",
    "io.containerd.internal.v1.opt",
    "io.containerd.internal.v1.tracing",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
]


def write_hosts_toml(
    hosts_dir: Path,
    registry: str,
    mirror_url: str,
    server: str | None = None,
    capabilities: Sequence[str] = ("pull", "resolve"),
    override_path: bool = False,
) -> Path:
    """HOSTS_DIR/REGISTRY/hosts.toml sending pulls of REGISTRY to mirror_url.

    registry: "docker.io", "quay.io" or "127.0.0.1:PORT"; server defaults to
    https://registry-1.docker.io for docker.io, else https://REGISTRY.
    For a direct plain-HTTP registry use registry="127.0.0.1:PORT",
    mirror_url=server="http://127.0.0.1:PORT".
    """
    if server is None:
        server = (
            "https://registry-1.docker.io" if registry == "docker.io" else f"https://{registry}"
        )
    caps = ", ".join(f'"{c}"' for c in capabilities)
    text = f'server = "{server}"\n\n[host."{mirror_url}"]\n  capabilities = [{caps}]\n'
    if override_path:
        text += "  override_path = true\n"
    path = hosts_dir / registry / "hosts.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


class Containerd(Service):
    """A private containerd (config version 2, CRI disabled) plus ctr.

    The metadata store uses content_sharing_policy = "isolated": content pulled in one
    namespace is not reused by another, so `pull(..., namespace=new)` downloads again.
    """

    def __init__(self, base_dir: Path, name: str = "containerd") -> None:
        self.containerd_bin = require_binary("containerd")
        self.ctr_bin = require_binary("ctr")
        self.base_dir = base_dir
        self.name = name
        self.run_dir = _short_tmpdir("ctd-")
        self.socket = self.run_dir / "containerd.sock"
        self.proc: Proc | None = None
        self.default_namespace = "regmirror-test"

    def config_toml(self) -> str:
        disabled = ", ".join(f'"{p}"' for p in CONTAINERD_DISABLED_PLUGINS)
        return (
            "version = 2\n"
            f'root = "{self.base_dir / "root"}"\n'
            f'state = "{self.run_dir / "state"}"\n'
            f"disabled_plugins = [{disabled}]\n\n"
            "[grpc]\n"
            f'  address = "{self.socket}"\n\n'
            "[ttrpc]\n"
            f'  address = "{self.run_dir / "ttrpc.sock"}"\n\n'
            "[debug]\n"
            '  address = ""\n'
            '  level = "info"\n\n'
            '[plugins."io.containerd.metadata.v1.bolt"]\n'
            '  content_sharing_policy = "isolated"\n'
        )

    def start(self, timeout: float = 30.0) -> Containerd:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        cfg = self.base_dir / "config.toml"
        cfg.write_text(self.config_toml())
        self.proc = Proc([self.containerd_bin, "--config", str(cfg)], self.base_dir, self.name)
        self.proc.start(
            ready=lambda p: wait_until(
                lambda: (
                    self.socket.exists()
                    and self.ctr("version", check=False, timeout=5).returncode == 0
                ),
                timeout,
                f"{self.name} on {self.socket}",
                alive=p.running,
                describe=p.describe,
            )
        )
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    # -- ctr -------------------------------------------------------------------------------
    def ctr(
        self,
        *args: str,
        namespace: str | None = None,
        check: bool = True,
        timeout: float = CMD_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        ns = namespace or self.default_namespace
        return run_cmd(
            [self.ctr_bin, "-a", str(self.socket), "-n", ns, *args],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.base_dir)},
            check=check,
            timeout=timeout,
        )

    @staticmethod
    def new_namespace() -> str:
        return f"t{uuid.uuid4().hex[:12]}"

    def pull(
        self,
        ref: str,
        hosts_dir: Path,
        namespace: str | None = None,
        user: str | None = None,
        platform: str | None = None,
        all_platforms: bool = False,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """ctr images pull --snapshotter native --hosts-dir HOSTS_DIR REF (unpacks).

        ref must be fully qualified (docker.io/library/testimg:1, 127.0.0.1:PORT/a/b:1).
        """
        args = ["images", "pull", "--snapshotter", "native", "--hosts-dir", str(hosts_dir)]
        if user:
            args += ["--user", user]
        if platform:
            args += ["--platform", platform]
        if all_platforms:
            args.append("--all-platforms")
        return self.ctr(*args, ref, namespace=namespace, check=check)

    def images(self, namespace: str | None = None) -> dict[str, dict[str, str]]:
        """ctr images ls: {ref: {"type", "digest", "size", "platforms"}}."""
        out = self.ctr("images", "ls", namespace=namespace).stdout.splitlines()
        result: dict[str, dict[str, str]] = {}
        for line in out[1:]:
            cols = line.split()
            if len(cols) < 5:
                continue
            ref, mtype, digest = cols[0], cols[1], cols[2]
            result[ref] = {
                "type": mtype,
                "digest": digest,
                "size": " ".join(cols[3:5]),
                "platforms": cols[5] if len(cols) > 5 else "",
            }
        return result

    def image_digest(self, ref: str, namespace: str | None = None) -> str:
        images = self.images(namespace)
        if ref not in images:
            raise KeyError(f"{ref} not in ctr images ls: {sorted(images)}")
        return images[ref]["digest"]

    def content_digests(self, namespace: str | None = None) -> set[str]:
        """Digests in the content store (of this namespace)."""
        lines = self.ctr("content", "ls", "-q", namespace=namespace).stdout.split()
        return {line.strip() for line in lines if line.startswith("sha256:")}

    def remove(self, ref: str, namespace: str | None = None) -> None:
        self.ctr("images", "rm", "--sync", ref, namespace=namespace, check=False)


# ------------------------------------------------------------------------------------------
# podman (minimal)
# ------------------------------------------------------------------------------------------


class Podman:
    """podman with its own storage (vfs), containers.conf and registries.conf in base_dir.

    mirror: "127.0.0.1:PORT" of a plain-HTTP mirror for docker.io (optional).
    """

    def __init__(
        self, base_dir: Path, mirror: str | None = None, prefix: str = "docker.io"
    ) -> None:
        self.podman_bin = require_binary("podman")
        self.base_dir = base_dir
        base_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = _short_tmpdir("pm-")
        self.registries_conf = base_dir / "registries.conf"
        self.storage_conf = base_dir / "storage.conf"
        self.containers_conf = base_dir / "containers.conf"
        self.storage_conf.write_text(
            '[storage]\ndriver = "vfs"\n'
            f'runroot = "{self.run_dir / "runroot"}"\n'
            f'graphroot = "{base_dir / "graphroot"}"\n'
        )
        self.containers_conf.write_text(
            '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
            f'events_logfile_path = "{base_dir / "events.log"}"\n'
            f'tmp_dir = "{self.run_dir / "tmp"}"\n'
        )
        (base_dir / "auth.json").write_text('{"auths": {}}')
        self.write_registries(mirror, prefix)

    def write_registries(self, mirror: str | None, prefix: str = "docker.io") -> None:
        text = 'unqualified-search-registries = ["docker.io"]\n\n'
        location = "registry-1.docker.io" if prefix == "docker.io" else prefix
        text += f'[[registry]]\nprefix = "{prefix}"\nlocation = "{location}"\n'
        if mirror:
            text += f'\n[[registry.mirror]]\nlocation = "{mirror}"\ninsecure = true\n'
        self.registries_conf.write_text(text)

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.base_dir),
            "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf),
            "CONTAINERS_STORAGE_CONF": str(self.storage_conf),
            "CONTAINERS_CONF": str(self.containers_conf),
            "TMPDIR": str(self.run_dir),
            "XDG_RUNTIME_DIR": str(self.run_dir),
            "REGISTRY_AUTH_FILE": str(self.base_dir / "auth.json"),
            "XDG_DATA_HOME": str(self.base_dir / "data"),
            "XDG_CONFIG_HOME": str(self.base_dir / "config"),
            # keep containers/image's blob-info cache out of /var/lib/containers (see Skopeo)
            "_CONTAINERS_ROOTLESS_UID": "1000",
        }

    def podman(
        self, *args: str, check: bool = True, timeout: float = CMD_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        return run_cmd([self.podman_bin, *args], env=self.env(), check=check, timeout=timeout)

    def pull(
        self, ref: str, creds: str | None = None, tls_verify: bool = True, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        args = ["pull", "-q"]
        if creds:
            args += ["--creds", creds]
        if not tls_verify:
            args.append("--tls-verify=false")
        return self.podman(*args, ref, check=check)

    def inspect(self, ref: str) -> dict[str, Any]:
        return dict(json.loads(self.podman("image", "inspect", ref).stdout)[0])

    def repo_digests(self, ref: str) -> list[str]:
        return list(self.inspect(ref).get("RepoDigests") or [])

    def cleanup(self) -> None:
        """Remove images (vfs layers) and the runtime dir."""
        self.podman("rmi", "-a", "-f", check=False)
        self.podman("system", "reset", "-f", check=False, timeout=60)
        shutil.rmtree(self.run_dir, ignore_errors=True)
