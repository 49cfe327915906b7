"""End to end: the cache command line (`./run.sh cache`, issue 12) on the cache of a running
mirror, filled by real pulls.

Real parts: a fresh distribution with token auth per test as "docker.io", the mirror as
`mitmdump -s` caching in the test's directory (tests/test_e2e_cache.py's cache_mirror),
skopeo as the client, and the CLI run as users run it: `python -m regmirror.cli` with the
PYTHONPATH run.sh sets, as a process of its own beside the mirror, which keeps running.

What is checked: ls lists the pulled images with their sizes; rm purges one image (its files
gone, a re-pull fetches it upstream again) while the other stays cached; verify finds a
file corrupted under an unchanged size and time, --repair drops it and the next pull
fetches it again; gc with a small limit evicts; warm pulls a list through the mirror (every
platform, or one) and reports the reference that fails, and the images it pulled are then
served from the cache; errors are one line, never a traceback.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.clients import Skopeo
from tests.support.images import BuiltImage, sha256_digest
from tests.support.mirror import REPO_ROOT
from tests.support.procs import free_port
from tests.test_e2e_cache import (
    UpstreamLog,
    assert_stored,
    by_digest,
    cache_mirror,
    check_dir_copy,
    digests_of,
    skopeo_pull,
    stored_path,
)

pytestmark = pytest.mark.e2e

CLI_TIMEOUT = 120  # s; each run here takes well under 5 s
CI_TOKEN = "ci-token-0123456789abcdef"


def cli(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The command line as `./run.sh cache ARGS` runs it (run.sh itself would reinstall the
    shared venv; its dispatch line is tested in test_cli_main.py)."""
    return subprocess.run(
        [sys.executable, "-m", "regmirror.cli", *args],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "addon"), **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )


def ok(done: subprocess.CompletedProcess[str], status: int = 0) -> str:
    """stdout of a run that ended with `status` and printed no traceback."""
    said = f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == status, said
    assert "Traceback" not in done.stdout + done.stderr, said
    return done.stdout


def listing(cache: Path) -> dict[str, dict]:
    """`ls --json`, by image (`docker.io/library/multi:1`)."""
    rows = json.loads(ok(cli("ls", "--json", "--cache", str(cache))))
    return {f"{r['registry']}/{r['repository']}:{r['tag']}": r for r in rows}


def image_size(image: BuiltImage) -> int:
    """Its index (if any), manifests, configs and layers, in bytes."""
    return sum(len(image.read_blob(d)) for d in image.blob_digests())


def contents(image: BuiltImage) -> set[str]:
    return image.blob_digests()


# ------------------------------------------------------------------------------------------
# ls, rm
# ------------------------------------------------------------------------------------------


def test_ls_lists_the_pulled_images_with_their_sizes(
    mirror_factory, upstream_factory, skopeo, images, tmp_path
):
    up = upstream_factory(repos=["library/testimg", "library/multi"])
    mirror = cache_mirror(mirror_factory, tmp_path, up.url)
    cache = tmp_path / "cache"
    testimg, multi = images["library/testimg"], images["library/multi"]
    skopeo_pull(skopeo, mirror, tmp_path / "pull", images)
    assert_stored(cache, contents(testimg) | contents(multi))

    rows = listing(cache)
    assert set(rows) == {"docker.io/library/testimg:1", "docker.io/library/multi:1"}
    t, m = rows["docker.io/library/testimg:1"], rows["docker.io/library/multi:1"]
    assert (t["digest"], t["size"], t["complete"]) == (testimg.digest, image_size(testimg), True)
    assert t["media_type"] == testimg.media_type and t["platforms"] == []
    assert (m["digest"], m["size"], m["complete"]) == (multi.digest, image_size(multi), True)
    assert {(p["platform"], p["digest"], p["cached"]) for p in m["platforms"]} == {
        (name, p.manifest.digest, True) for name, p in multi.platforms.items()
    }
    assert t["last_used"].endswith("Z") and t["validated"].endswith("Z")
    assert json.loads(ok(cli("ls", "--json", "--registry", "ghcr.io", "--cache", str(cache)))) == []

    table = cli("ls", "--cache", str(cache))
    lines = ok(table).splitlines()
    assert lines[0].split() == ["IMAGE", "TAG", "DIGEST", "PLATFORMS", "SIZE", "LAST", "USED"]
    rows_by_image = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows_by_image["docker.io/library/multi"][1:4] == ["1", multi.digest[:19], "2"]
    assert rows_by_image["docker.io/library/testimg"][1:4] == ["1", testimg.digest[:19], "1"]
    entries = len(contents(testimg) | contents(multi))
    assert table.stderr.startswith(f"2 images; the cache holds {entries} files, ")


def test_rm_purges_one_image_and_a_re_pull_fetches_it_upstream_while_the_other_stays(
    mirror_factory, upstream_factory, skopeo, images, tmp_path
):
    up = upstream_factory(repos=["library/testimg", "library/multi"])
    mirror = cache_mirror(mirror_factory, tmp_path, up.url)
    cache = tmp_path / "cache"
    upstream = UpstreamLog(up.registry)
    testimg, multi = images["library/testimg"], images["library/multi"]
    skopeo_pull(skopeo, mirror, tmp_path / "pull1", images)
    assert_stored(cache, contents(testimg) | contents(multi))
    assert not contents(testimg) & contents(multi)  # nothing shared: all of testimg goes

    said = ok(cli("rm", "testimg:1", "--cache", str(cache)))
    n = len(contents(testimg))
    assert said.startswith(f"removed docker.io/library/testimg:1: 1 tag, {n} files (")
    assert [d for d in contents(testimg) if stored_path(cache, d).exists()] == []
    assert set(listing(cache)) == {"docker.io/library/multi:1"}
    assert_stored(cache, contents(multi))
    again = cli("rm", "testimg:1", "--cache", str(cache))
    assert ok(again, 2) == ""
    assert again.stderr == (
        "regmirror cache rm: docker.io/library/testimg:1 is not in the cache (see `cache ls`)\n"
    )
    amd64 = multi.platforms["linux/amd64"].manifest.digest
    inner = cli("rm", f"library/multi@{amd64}", "--cache", str(cache))
    assert ok(inner, 2) == ""
    assert inner.stderr == (
        f"regmirror cache rm: nothing removed: docker.io/library/multi@{amd64} is part of "
        "docker.io/library/multi:1; remove that instead\n"
    )
    assert_stored(cache, contents(multi))

    start = upstream.mark()
    skopeo_pull(Skopeo(tmp_path / "skopeo2"), mirror, tmp_path / "pull2", images)
    second = upstream.between(start, upstream.mark())
    # testimg's config and layers come from upstream again (its manifest by tag); nothing of
    # multi does
    assert digests_of(second) == set(testimg.single.digests[1:])
    assert [e for e in second if "/library/testimg/manifests/1" in e.path and e.method == "GET"]
    assert_stored(cache, contents(testimg))
    assert set(listing(cache)) == {"docker.io/library/testimg:1", "docker.io/library/multi:1"}


# ------------------------------------------------------------------------------------------
# verify, gc
# ------------------------------------------------------------------------------------------


def test_verify_reports_a_file_corrupted_on_disk_and_repair_drops_it(
    mirror_factory, upstream_factory, skopeo, images, tmp_path
):
    up = upstream_factory(repos=["library/testimg"])
    mirror = cache_mirror(mirror_factory, tmp_path, up.url)
    cache = tmp_path / "cache"
    upstream = UpstreamLog(up.registry)
    testimg = images["library/testimg"]
    skopeo.copy(f"{mirror.host}/library/testimg:1", f"dir:{tmp_path / 'pull1'}")
    assert_stored(cache, contents(testimg))
    assert ok(cli("verify", "--cache", str(cache))).endswith(
        f"{len(contents(testimg))} files checked, 0 corrupt\n"
    )

    layer = testimg.single.layers[1].digest
    path = stored_path(cache, layer)
    st = path.stat()
    with open(path, "r+b") as f:  # bit rot: same size, same inode, same time
        f.seek(st.st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sha256_digest(path.read_bytes()) != layer

    found = ok(cli("verify", "--cache", str(cache)), 1)
    assert f"corrupt: {layer} " in found and str(path) in found
    assert found.endswith(": `verify --repair` drops them\n")
    assert path.exists()  # reported, not touched
    repaired = ok(cli("verify", "--repair", "--cache", str(cache)), 1)
    assert f"dropped: {layer} " in repaired
    assert not path.exists()
    assert ok(cli("verify", "--cache", str(cache))).endswith("0 corrupt\n")
    assert listing(cache)["docker.io/library/testimg:1"]["complete"] is False

    start = upstream.mark()
    Skopeo(tmp_path / "skopeo2").copy(f"{mirror.host}/library/testimg:1", f"dir:{tmp_path / 'p2'}")
    check_dir_copy(tmp_path / "p2", testimg)
    assert digests_of(upstream.between(start, upstream.mark())) == {layer}
    assert_stored(cache, [layer])


def test_gc_applies_a_small_limit_now(mirror_factory, upstream_factory, skopeo, images, tmp_path):
    up = upstream_factory(repos=["library/testimg", "library/big"])
    mirror = cache_mirror(mirror_factory, tmp_path, up.url)
    cache = tmp_path / "cache"
    testimg, big = images["library/testimg"], images["library/big"]
    skopeo.copy(f"{mirror.host}/library/big:1", f"dir:{tmp_path / 'big'}")
    skopeo.copy(f"{mirror.host}/library/testimg:1", f"dir:{tmp_path / 'testimg'}")
    assert_stored(cache, contents(testimg) | contents(big))
    before = sum(p.stat().st_size for p in (cache / "blobs").rglob("*") if p.is_file())
    assert before > 8 << 20

    assert ok(cli("gc", "--cache", str(cache))).startswith("nothing to evict: ")
    said = ok(cli("gc", "--max-size", "1m", "--cache", str(cache)))
    assert said.startswith("evicted ") and said.endswith(", limit 1m\n")
    # least recently used first, down to 90 % of the limit: big's manifest and layer (pulled
    # first) go, and with its manifest its tag; testimg, pulled last, stays whole
    for gone in (big.digest, big.layers[0].digest):
        assert not stored_path(cache, gone).exists()
    assert_stored(cache, contents(testimg))
    left = [p for p in (cache / "blobs").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in left) <= 0.9 * (1 << 20)
    assert set(listing(cache)) == {"docker.io/library/testimg:1"}
    assert ok(cli("gc", "--max-size", "1m", "--cache", str(cache))).startswith("nothing")


# ------------------------------------------------------------------------------------------
# warm
# ------------------------------------------------------------------------------------------


def test_warm_pulls_through_the_mirror_and_lists_the_reference_that_failed(
    mirror_factory, upstream_factory, images, tmp_path
):
    up = upstream_factory(repos=["library/testimg", "library/multi"])
    mirror = cache_mirror(mirror_factory, tmp_path, up.url)
    cache = tmp_path / "cache"
    upstream = UpstreamLog(up.registry)
    testimg, multi = images["library/testimg"], images["library/multi"]
    arm64 = multi.platforms["linux/arm64"]

    # one platform, from stdin
    said = ok(cli("warm", "-", "--platform", "linux/arm64", "--mirror", mirror.url,
                  stdin="library/multi:1\n"))  # fmt: skip
    assert_stored(cache, {multi.digest, *arm64.digests})
    assert not stored_path(cache, multi.platforms["linux/amd64"].manifest.digest).exists()
    row = listing(cache)["docker.io/library/multi:1"]
    assert row["complete"] is False
    assert {p["platform"]: p["cached"] for p in row["platforms"]} == {
        "linux/amd64": False,
        "linux/arm64": True,
    }
    assert "docker.io/library/multi:1" in said and " ok" in said

    # every platform, and a reference that fails
    images_txt = tmp_path / "images.txt"
    images_txt.write_text(
        "# what the CI fleet pulls\n\nlibrary/multi:1\ndocker.io/library/nosuch:1  # gone\n"
        "testimg:1\n"
    )
    metrics = tmp_path / "warm.prom"
    done = cli("warm", str(images_txt), "--mirror", mirror.url, "--metrics-file", str(metrics))
    table = ok(done, 1)
    samples = {
        (s.name, tuple(s.labels.values())): s.value
        for family in text_string_to_metric_families(metrics.read_text())
        for s in family.samples
    }
    assert samples[("regmirror_warm_images", ("ok",))] == 2
    assert samples[("regmirror_warm_images", ("failed",))] == 1
    assert samples[("regmirror_warm_images", ("pending",))] == 0
    assert samples[("regmirror_warm_bytes", ())] > 0
    results = {line.split()[0]: line.split()[-1] for line in table.splitlines()[1:]}
    assert results == {
        "docker.io/library/multi:1": "ok",
        "docker.io/library/nosuch:1": "failed",
        "docker.io/library/testimg:1": "ok",
    }
    failures = done.stderr[done.stderr.index("1 of 3 images failed:") :].splitlines()
    assert len(failures) == 2 and failures[1].startswith("  docker.io/library/nosuch:1: ")
    assert "404" in failures[1]
    assert_stored(cache, contents(testimg) | contents(multi))
    assert all(r["complete"] for r in listing(cache).values())

    # served from the cache: a client's pull makes no request by digest upstream
    start = upstream.mark()
    skopeo_pull(Skopeo(tmp_path / "skopeo"), mirror, tmp_path / "pull", images)
    assert by_digest(upstream.between(start, upstream.mark())) == []


def test_warm_logs_in_to_a_mirror_with_client_authentication(
    mirror_factory, upstream_factory, images, tmp_path
):
    up = upstream_factory(repos=["library/testimg"])
    cfg = tmp_path / "mirror.toml"
    cfg.write_text(f'[registries."docker.io"]\nurl = "{up.url}"\n[auth]\ntokens = ["{CI_TOKEN}"]\n')
    cache = tmp_path / "cache"
    mirror = mirror_factory(up.url, {"regmirror_config": str(cfg), "regmirror_cache": str(cache)})
    testimg = images["library/testimg"]

    refused = cli("warm", "-", "--mirror", mirror.url, stdin="testimg:1\n")
    ok(refused, 1)
    assert "  docker.io/library/testimg:1: token for docker.io/library/testimg: 401" in (
        refused.stderr
    )
    assert not stored_path(cache, testimg.digest).exists()
    env = {"REGMIRROR_PASSWORD": CI_TOKEN}
    ok(cli("warm", "-", "--mirror", mirror.url, "--user", "ci", stdin="testimg:1\n", env=env))
    assert_stored(cache, contents(testimg))
    assert CI_TOKEN not in mirror.log_text()


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------


def test_errors_are_one_line_without_a_traceback(tmp_path):
    missing = cli("ls", "--cache", str(tmp_path / "nope"))
    assert ok(missing, 2) == ""
    assert missing.stderr.startswith(f"regmirror cache ls: no cache directory {tmp_path}/nope")
    bad = cli("rm", "ghcr.io/Org/app:1", "--cache", str(tmp_path))
    assert ok(bad, 2) == "" and bad.stderr.startswith("regmirror cache rm: 'ghcr.io/Org/app:1': ")
    down = cli("warm", "-", "--mirror", f"http://127.0.0.1:{free_port()}", stdin="nginx:1\n")
    assert ok(down, 2) == "" and "cannot reach the mirror at http://127.0.0.1:" in down.stderr
    for done in (missing, bad, down):
        assert done.stderr.count("\n") == 1
