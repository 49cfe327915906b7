"""End to end: the status page and readiness (issue 12, items 1 and 4). The mirror as
`mitmdump -s` caching in front of a real distribution with token auth, pulled through by
skopeo; the page loaded in headless Chromium through Playwright (as the mitmweb test does),
with its filter typed into; readyz while the cache's file system is remounted read-only;
the page and the metrics behind client authentication."""

import subprocess
from pathlib import Path

import bcrypt
import httpx
import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from tests.support.images import BuiltImage
from tests.support.procs import free_port, require_binary
from tests.support.registry import Registry
from tests.test_e2e_cache import eventually, skopeo_pull
from tests.test_e2e_observe import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.e2e

PAGE = "/_regmirror/"
READY = "/_regmirror/readyz"


def config(tmp_path: Path, upstream_url: str, extra: str = "") -> str:
    """docker.io is the local registry; down.test a registry nothing listens for."""
    cfg = tmp_path / "mirror.toml"
    cfg.write_text(
        f'[registries."docker.io"]\nurl = "{upstream_url}"\n'
        f'[registries."down.test"]\nurl = "http://127.0.0.1:{free_port()}"\n{extra}'
    )
    return str(cfg)


def sizes(image: BuiltImage) -> dict[str, int]:
    """Every digest of an image (index, manifests, configs, layers) and its size."""
    out = {b.digest: b.size for p in image.platforms.values()
           for b in (p.manifest, p.config, *p.layers)}  # fmt: skip
    if image.index is not None:
        out[image.index.digest] = image.index.size
    return out


def test_the_status_page_in_a_real_browser(
    mirror_factory, registry: Registry, skopeo, images: dict[str, BuiltImage], tmp_path
):
    require_binary(CHROMIUM)
    mirror = mirror_factory(
        registry.url, {"regmirror_config": config(tmp_path, registry.url),
                       "regmirror_cache": str(tmp_path / "cache")},
    )  # fmt: skip
    testimg, multi = images["library/testimg"], images["library/multi"]
    skopeo_pull(skopeo, mirror, tmp_path / "pull1", images)
    skopeo_pull(skopeo, mirror, tmp_path / "pull2", images)  # from the cache, tags revalidated
    down = httpx.get(f"{mirror.url}/v2/down.test/org/app/manifests/1", timeout=30)
    assert down.status_code in (502, 504)

    def listed() -> bool:  # the tag is in the index once the fill's durable part is done
        text = httpx.get(mirror.url + PAGE, timeout=10).text
        return "docker.io/library/testimg:1" in text and "docker.io/library/multi:1" in text

    eventually(listed, lambda: "the pulled images never appeared on the page", timeout=10)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "status-page.png"  # docs/status-page.png is one of these
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: m.type == "error" and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(mirror.url + PAGE)
            rows = page.locator("#image-table tbody tr")
            names = rows.locator("td:first-child").all_inner_texts()
            assert sorted(names) == ["docker.io/library/multi:1", "docker.io/library/testimg:1"]
            row = rows.filter(has_text="library/testimg:1")
            assert row.locator("code").get_attribute("title") == testimg.digest
            assert int(row.locator("td[data-bytes]").get_attribute("data-bytes")) == sum(
                sizes(testimg).values()
            )
            multi_row = rows.filter(has_text="library/multi:1")
            assert multi_row.locator("code").get_attribute("title") == multi.digest
            assert int(multi_row.locator("td[data-bytes]").get_attribute("data-bytes")) == sum(
                sizes(multi).values()
            )  # both platforms, copied with --all
            upstreams = page.locator("#upstreams tbody")
            assert "ok" in upstreams.locator("tr", has_text="docker.io").inner_text()
            down_row = upstreams.locator("tr", has_text="down.test").inner_text()
            assert "failing" in down_row and "cannot connect to 127.0.0.1:" in down_row
            assert "Connection killed" not in down_row
            # the page's own style ran (the CSP lets it), and the traffic was counted
            assert page.evaluate("getComputedStyle(document.body).margin") == "0px"
            for row_name in ("served from the cache", "fetched upstream"):
                since_start = page.locator("tr", has_text=row_name).locator("span[title]").last
                counted = int(since_start.get_attribute("title").split()[0].replace(",", ""))
                assert counted > 0, row_name
            page.screenshot(path=str(shot), full_page=True)

            # the filter, as you type
            page.locator("#filter").fill("MULTI")
            visible = page.locator("#image-table tbody tr:visible td:first-child")
            assert visible.all_inner_texts() == ["docker.io/library/multi:1"]
            assert page.locator("#shown").inner_text() == "1"
            assert "q=MULTI" in page.url
            page.locator("#filter").fill(testimg.digest[7:19])  # by digest
            assert visible.all_inner_texts() == ["docker.io/library/testimg:1"]
            # Enter: the server filters, and a reload keeps the filter
            page.locator("#filter").fill("multi")
            page.locator("#filter").press("Enter")
            page.wait_for_url("**/_regmirror/?q=multi*")
            assert rows.locator("td:first-child").all_inner_texts() == ["docker.io/library/multi:1"]
            # sorting by size: multi (two platforms) first
            page.goto(mirror.url + PAGE)
            page.get_by_role("link", name="size", exact=True).click()
            page.wait_for_url("**/_regmirror/?sort=size")
            assert (
                rows.locator("td:first-child").all_inner_texts()[0] == "docker.io/library/multi:1"
            )
        finally:
            browser.close()
    assert problems == []  # no script errors, no content-security-policy violations
    assert shot.stat().st_size > 10_000


def test_readyz_follows_the_cache_filesystem(mirror_factory, registry: Registry, tmp_path):
    mirror = mirror_factory(registry.url, {"regmirror_cache": str(tmp_path / "cache")})
    ready = httpx.get(mirror.url + READY, timeout=10)
    assert (ready.status_code, ready.headers["Content-Type"]) == (200, "application/json")
    assert ready.json() == {
        "ready": True,
        "checks": {
            "config": {"ok": True, "detail": "loaded"},
            "cache": {"ok": True, "detail": "writable"},
        },
    }
    # tmp/, where every fill is written, becomes a read-only mount (the mirror holds the
    # index open for writing, so the whole file system could not be remounted read-only)
    tmp = tmp_path / "cache" / "tmp"
    mount("--bind", str(tmp), str(tmp))
    try:
        mount("-o", "remount,bind,ro", str(tmp))
        unready = httpx.get(mirror.url + READY, timeout=10)
        assert unready.status_code == 503
        assert unready.json() == {
            "ready": False,
            "checks": {
                "config": {"ok": True, "detail": "loaded"},
                "cache": {
                    "ok": False,
                    "detail": "the cache directory cannot be written: Read-only file system",
                },
            },
        }
        assert str(tmp_path) not in unready.text
        alive = httpx.get(mirror.url + "/_regmirror/healthz", timeout=10)
        assert alive.status_code == 200  # liveness only: the process is fine
    finally:
        subprocess.run(["umount", str(tmp)], check=False)
    assert httpx.get(mirror.url + READY, timeout=10).status_code == 200


def mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode:
        pytest.fail(f"mount {' '.join(args)} failed (the test runs as root): {done.stderr}")


def test_the_page_needs_credentials_under_client_auth(
    mirror_factory, registry: Registry, skopeo, images: dict[str, BuiltImage], tmp_path
):
    require_binary(CHROMIUM)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    (tmp_path / "htpasswd").write_text(f"bob:{hashed}\n")
    cfg = config(tmp_path, registry.url, '[auth]\nhtpasswd = "htpasswd"\n')
    mirror = mirror_factory(registry.url, {"regmirror_config": cfg})
    skopeo.copy(f"{mirror.host}/library/testimg:1", f"dir:{tmp_path / 'out'}", creds="bob:s3cret")
    for path in (PAGE, "/_regmirror/metrics"):
        refused = httpx.get(mirror.url + path, timeout=10)
        assert refused.status_code == 401, path
        assert refused.headers["WWW-Authenticate"] == 'Basic realm="regmirror"'
        assert "testimg" not in refused.text
        wrong = httpx.get(mirror.url + path, auth=("bob", "wrong"), timeout=10)
        assert wrong.status_code == 401, path
    # probes need no credentials
    assert httpx.get(mirror.url + READY, timeout=10).status_code == 200
    assert httpx.get(mirror.url + "/_regmirror/healthz", timeout=10).status_code == 200
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            bare = browser.new_page()  # the Basic challenge, and no credentials to answer it
            with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
                bare.goto(mirror.url + PAGE)
            context = browser.new_context(
                http_credentials={"username": "bob", "password": "s3cret"}
            )
            page = context.new_page()
            assert page.goto(mirror.url + PAGE).status == 200
            text = page.content()
        finally:
            browser.close()
    assert "docker.io/library/testimg:1" in text
    assert "s3cret" not in text and hashed not in text and "htpasswd" not in text
