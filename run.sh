#!/usr/bin/env bash
# regmirror: one entry point for users, tests and CI.
#   ./run.sh [mitmdump args]   start the mirror (default: Docker Hub, 0.0.0.0:5000)
#   ./run.sh web [mitmweb args] the same under mitmweb, to watch registry traffic
#   ./run.sh test [pytest args] install everything the tests need and run them
#   ./run.sh bench [args]       benchmarks side by side with direct pulls and distribution's proxy
#   ./run.sh cache SUBCOMMAND   the cache command line: ls, rm, verify, gc, warm (--help)
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
UPSTREAM=${REGMIRROR_UPSTREAM:-https://registry-1.docker.io}
LISTEN=${REGMIRROR_LISTEN:-5000}
APT_PACKAGES=(docker-registry skopeo docker.io containerd podman curl ca-certificates chromium haproxy)

python_bin() {
    for p in python3.11 python3; do
        if command -v "$p" >/dev/null && "$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
            echo "$p"; return
        fi
    done
    echo "regmirror needs Python 3.11 (mitmproxy 11.0.2)" >&2
    exit 1
}

# Create or update .venv; reinstall only when pyproject.toml changed.
ensure_venv() {
    local extra=$1 stamp="$VENV/.installed$1"
    [ -x "$VENV/bin/python" ] || "$(python_bin)" -m venv "$VENV"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q ".$extra"
        touch "$stamp"
    fi
}

# The real registry and clients the end-to-end tests drive (Debian, as root).
ensure_apt() {
    local missing=()
    for bin in docker-registry skopeo dockerd containerd ctr podman curl chromium haproxy; do
        command -v "$bin" >/dev/null || missing+=("$bin")
    done
    [ ${#missing[@]} -eq 0 ] && return
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "missing ${missing[*]}: install ${APT_PACKAGES[*]} (Debian package names)" >&2
        exit 1
    fi
    echo "installing ${APT_PACKAGES[*]} with apt-get" >&2
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${APT_PACKAGES[@]}"
}

has_mode() {
    for a in "$@"; do case $a in --mode|--mode=*|-m) return 0 ;; esac; done
    return 1
}

serve() {
    local tool=$1; shift
    ensure_venv ""
    local mode=()
    has_mode "$@" || mode=(--mode "reverse:$UPSTREAM@$LISTEN")
    exec "$VENV/bin/$tool" -s addon/mirror.py "${mode[@]}" "$@"
}

case "${1:-}" in
    test)
        shift
        ensure_apt
        ensure_venv "[test,bench]"  # tests/test_bench.py runs bench/run.py --quick
        "$VENV/bin/ruff" check .
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    bench)
        shift
        ensure_apt
        ensure_venv "[test,bench]"
        exec "$VENV/bin/python" bench/run.py "$@"
        ;;
    web)
        shift
        serve mitmweb "$@"
        ;;
    cache)
        shift
        ensure_venv ""
        root=$PWD
        cd "$OLDPWD"  # back where the caller was (see the cd above): FILE and --cache DIR are theirs
        PYTHONPATH="$root/addon" exec "$root/$VENV/bin/python" -m regmirror.cli "$@"
        ;;
    *)
        serve mitmdump "$@"
        ;;
esac
