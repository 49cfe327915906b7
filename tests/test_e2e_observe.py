"""End to end: what an operator sees. mitmweb with the addon in front of a real distribution
registry (token auth), pulled through by skopeo; the registry views read through mitmweb's
HTTP API and in a real browser; metrics and health scraped from mitmdump; mitmdump's output
checked for credentials."""

import json
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tests.support.images import BuiltImage
from tests.support.mirror import Mirror, mitmdump_path
from tests.support.procs import Proc, free_port, require_binary
from tests.support.registry import Registry
from tests.support.tokenserver import ALICE_CREDS

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
JWT_RE = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")


def hub_options(tmp_path: Path, upstream_url: str) -> dict[str, str]:
    """The mirror's config: the local registry stands in for Docker Hub."""
    cfg = tmp_path / "mirror.toml"
    cfg.write_text(f'[registries."docker.io"]\nurl = "{upstream_url}"\n')
    return {"regmirror_config": str(cfg)}


class MitmWeb(Mirror):
    """The mirror under mitmweb, as `./run.sh web` starts it; its UI on its own port."""

    def __init__(self, base_dir: Path, upstream: str, options: dict[str, str]) -> None:
        self.web_port = free_port()
        web = {"web_port": str(self.web_port), "web_open_browser": "false"}
        super().__init__(base_dir, upstream, {**options, **web}, name="mitmweb")

    @property
    def args(self) -> list[str]:
        return [str(mitmdump_path().with_name("mitmweb")), *super().args[1:]]

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def _ready(self, proc: Proc, timeout: float) -> None:
        super()._ready(proc, timeout)
        proc.wait_for_http(self.web_url + "/flows", timeout)

    def flows(self) -> list[dict]:
        return httpx.get(self.web_url + "/flows", timeout=10).json()

    def view(self, flow: dict, view: str = "auto", message: str = "response") -> dict:
        name = urllib.parse.quote(view)
        url = f"{self.web_url}/flows/{flow['id']}/{message}/content/{name}.json"
        return httpx.get(url, timeout=10).json()


@pytest.fixture
def web(tmp_path: Path, registry: Registry) -> Iterator[MitmWeb]:
    mirror = MitmWeb(tmp_path / "web", registry.url, hub_options(tmp_path, registry.url))
    mirror.start()
    try:
        yield mirror
    finally:
        mirror.stop()


def text(view: dict) -> str:
    return "\n".join("".join(part for _, part in line) for line in view["lines"])


def by_comment(flows: list[dict], start: str) -> dict:
    matching = [f for f in flows if f["comment"].startswith(start)]
    assert matching, f"no flow commented {start!r} in {[f['comment'] for f in flows]}"
    return matching[0]


def test_views_through_mitmweb_api(web, skopeo, images: dict[str, BuiltImage], tmp_path):
    multi, testimg = images["library/multi"], images["library/testimg"]
    skopeo.copy(f"{web.host}/library/multi:1", f"dir:{tmp_path / 'multi'}", all=True)
    skopeo.copy(f"{web.host}/testimg:1", f"dir:{tmp_path / 'testimg'}")
    assert skopeo.list_tags(f"{web.host}/library/testimg") == ["1"]
    flows = web.flows()
    comments = [f["comment"] for f in flows]

    # every flow says what it was
    assert all(comments), comments
    assert "ping docker.io -> 401 challenge" in comments
    assert any(c.startswith("token repository:library/multi:pull -> 200") for c in comments)
    index_flow = by_comment(flows, "pull manifest docker.io/library/multi:1")
    index = web.view(index_flow)
    assert index["description"] == "OCI image index: 2 manifests"
    for platform, image in multi.platforms.items():
        row = next(line for line in text(index).splitlines() if image.manifest.digest in line)
        assert platform in row
    manifest_flow = by_comment(flows, "pull manifest docker.io/library/testimg:1")
    manifest = text(web.view(manifest_flow))
    assert f"digest:     {testimg.digest}" in manifest
    for layer in testimg.layers:
        assert layer.digest in manifest
    blob = by_comment(flows, f"pull blob docker.io/library/testimg@{testimg.layers[0].digest[:19]}")
    assert blob["comment"].endswith(" B")

    # the token: claims, never the token
    token_flow = by_comment(flows, "token repository:library/testimg:pull")
    token = web.view(token_flow)
    assert token["description"].startswith("Registry token sha256:")
    assert "  repository  library/testimg  pull" in text(token)
    assert not JWT_RE.search(text(token))
    # once answered, requests show only the token's fingerprint
    detail = httpx.get(f"{web.web_url}/flows", timeout=10).text
    assert "Bearer <redacted sha256:" in detail and not JWT_RE.search(detail)

    challenge = web.view(by_comment(flows, "ping docker.io"))
    assert challenge["description"] == "Registry error 401 UNAUTHORIZED"
    assert f"realm:   https://{web.host}/v2/auth" in text(challenge)  # skopeo tried TLS
    tags = web.view(by_comment(flows, "list tags docker.io/library/testimg"))
    assert tags["description"] == "library/testimg: 1 tag"


def test_manifest_flow_in_a_real_browser(web, skopeo, images: dict[str, BuiltImage], tmp_path):
    require_binary(CHROMIUM)
    testimg = images["library/testimg"]
    skopeo.copy(f"{web.host}/testimg:1", f"dir:{tmp_path / 'testimg'}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "mitmweb-manifest.png"  # docs/mitmweb-manifest.png is one of these
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1920, "height": 820})
            page.goto(web.web_url + "/")
            page.get_by_text("manifest docker.io/library/testimg:1").first.click()
            page.locator(".flow-detail nav").get_by_text("Response", exact=True).click()
            widen_detail_pane(page, 720)
            table = page.locator(".contentview pre").filter(has_text="#  digest")
            table.wait_for(timeout=15_000)
            shown = table.inner_text()
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert "Layers (2," in shown
    for layer in testimg.layers:
        assert layer.digest in shown
    assert shot.stat().st_size > 10_000


def widen_detail_pane(page, list_width: int) -> None:
    """Drag mitmweb's splitter so that the flow list keeps `list_width` pixels."""
    box = page.locator(".splitter").bounding_box()
    assert box, "mitmweb's splitter between flow list and flow detail not found"
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(list_width, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if m and all(f'{k}="{v}"' in (m[1] or "") for k, v in labels.items()):
            total += float(m[2])
    return total


def test_metrics_and_health_after_a_pull(
    mirror_factory, registry: Registry, skopeo, images: dict[str, BuiltImage], tmp_path
):
    mirror = mirror_factory(registry.url, hub_options(tmp_path, registry.url))
    health = httpx.get(mirror.url + "/_regmirror/healthz", timeout=10)
    assert (health.status_code, health.text) == (200, "ok\n")
    before = httpx.get(mirror.url + "/_regmirror/metrics", timeout=10).text
    assert metric(before, "regmirror_requests_total") == 0
    skopeo.copy(f"{mirror.host}/library/testimg:1", f"dir:{tmp_path / 'testimg'}")
    after = httpx.get(mirror.url + "/_regmirror/metrics", timeout=10)
    assert after.headers["Content-Type"].startswith("text/plain; version=")
    m = after.text
    route = registry.url
    layers = images["library/testimg"].layers
    assert metric(m, "regmirror_requests_total", route=route, operation="blob", status="200") >= 2
    assert metric(m, "regmirror_requests_total", operation="ping", status="401") >= 1
    served = metric(m, "regmirror_served_bytes_total", route=route, operation="blob")
    assert served >= sum(layer.size for layer in layers)
    assert metric(m, "regmirror_token_fetches_total", route=route, status="200") >= 1
    assert metric(m, "regmirror_upstream_latency_seconds_count", operation="manifest") >= 1
    assert "regmirror_upstream_throttled_total" in m
    assert not JWT_RE.search(m) and "/_regmirror/" not in m


def test_mitmdump_output_masks_credentials(
    mirror_factory, registry: Registry, skopeo, images: dict[str, BuiltImage], tmp_path
):
    mirror = mirror_factory(
        registry.url,
        {**hub_options(tmp_path, registry.url), "regmirror_log_flows": "true", "flow_detail": "3"},
    )
    data = skopeo.inspect(f"{mirror.host}/private/secret:1", creds=ALICE_CREDS)
    assert data["Digest"] == images["private/secret"].digest  # the wire kept the credentials
    log = mirror.log_text()
    assert "Authorization: Basic <redacted>" in log
    assert "Authorization: Bearer <redacted sha256:" in log
    assert "JWT claims" in log  # the token answer, decoded
    assert "wonderland" not in log and "YWxpY2U6d29uZGVybGFuZA" not in log
    assert not JWT_RE.search(log)


def test_the_default_log_is_one_line_per_operation_and_json_on_request(
    mirror_factory, registry: Registry, skopeo, images: dict[str, BuiltImage], tmp_path
):
    image = images["library/testimg"]
    text = mirror_factory(registry.url, hub_options(tmp_path, registry.url))
    assert skopeo.inspect(f"{text.host}/library/testimg:1")["Digest"] == image.digest
    log = text.log_text()
    lines = [ln for ln in log.splitlines() if re.match(r"\[\d\d:\d\d:\d\d\.\d{3}\] \S", ln)]
    assert any("pull manifest docker.io/library/testimg:1 -> 200" in ln for ln in lines)
    for noise in ("client connect", "client disconnect", "server connect", "<< 200", "Streaming"):
        assert noise not in log, f"{noise!r} in the default log"
    operations = [ln for ln in lines if " -> " in ln]
    assert len(operations) >= 3  # ping, token, manifest at least: one line each

    json_mirror = mirror_factory(
        registry.url, {**hub_options(tmp_path, registry.url), "regmirror_log_format": "json"}
    )
    assert skopeo.inspect(f"{json_mirror.host}/library/testimg:1")["Digest"] == image.digest
    records = [json.loads(ln) for ln in json_mirror.log_text().splitlines() if ln.startswith("{")]
    manifest = [r for r in records if r["operation"] == "pull manifest"]
    assert manifest and manifest[0]["image"] == "docker.io/library/testimg:1"
    assert manifest[0]["status"] == 200 and manifest[0]["client"].startswith("127.0.0.1:")
    assert {"ping", "token"} <= {r["operation"] for r in records}
    assert all(isinstance(r["ms"], int) and r["time"] for r in records)
