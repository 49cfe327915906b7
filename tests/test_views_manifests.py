import json

import pytest
from mitmproxy import contentviews
from regmirror.observe.describe import human_size
from regmirror.observe.views.manifests import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    ManifestView,
    platform,
)

from tests.support.images import build_image, build_two_platform, hello_layers
from tests.viewutil import text

D = ["sha256:" + c * 64 for c in "0123456789abcdef"]
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def view(data: bytes, content_type: str) -> tuple[str, str]:
    description, lines = ManifestView()(data, content_type=content_type)
    return description, text(lines)


def test_oci_manifest_of_a_real_image(tmp_path):
    image = build_image(tmp_path, hello_layers("views"))
    single = image.single
    description, out = view(image.read_blob(single.manifest.digest), OCI_MANIFEST)
    total = sum(layer.size for layer in single.layers)
    assert description == f"OCI image manifest: 2 layers, {human_size(total)}"
    assert f"media type: {OCI_MANIFEST}" in out
    assert f"config:     {single.config.digest}  {human_size(single.config.size)}  " in out
    assert "  #  digest" in out and "size" in out and "media type" in out
    for n, layer in enumerate(single.layers, 1):
        row = next(line for line in out.splitlines() if layer.digest in line)
        assert row.split() == [str(n), layer.digest, *human_size(layer.size).split(), OCI_LAYER]
    assert out.splitlines()[-1].split() == ["total", *human_size(total).split()]


def test_oci_index_of_a_real_multiarch_image(tmp_path):
    image = build_two_platform(tmp_path, "views")
    assert image.index is not None
    description, out = view(image.read_blob(image.index.digest), OCI_INDEX)
    assert description == "OCI image index: 2 manifests"
    for plat, img in image.platforms.items():
        row = next(line for line in out.splitlines() if img.manifest.digest in line)
        assert row.split()[1:3] == [plat, img.manifest.digest]
        assert row.endswith(OCI_MANIFEST)


def test_docker_manifest_with_digest_header_and_annotations():
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 7656,
            "digest": D[1],
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": 29_124_181,
                "digest": D[2],
            },
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": 41_400_000,
                "digest": D[3],
                "annotations": {"org.opencontainers.image.title": "app.tar"},
            },
        ],
        "annotations": {"org.opencontainers.image.base.name": "docker.io/library/debian:12"},
    }
    description, lines = ManifestView()(json.dumps(doc).encode(), content_type=DOCKER_MANIFEST)
    out = text(lines)
    assert description == "Docker image manifest: 2 layers, 70.5 MB"
    assert "29.1 MB" in out and "41.4 MB" in out and "70.5 MB" in out
    assert "#2 org.opencontainers.image.title: app.tar" in out
    assert "org.opencontainers.image.base.name: docker.io/library/debian:12" in out


def test_manifest_digest_from_the_registry_header():
    from mitmproxy import http

    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {}, "layers": []}
    resp = http.Response.make(200, b"", {"Docker-Content-Digest": D[9]})
    _, lines = ManifestView()(
        json.dumps(doc).encode(), content_type=OCI_MANIFEST, http_message=resp
    )
    assert text(lines).startswith(f"digest:     {D[9]}\nmedia type: {OCI_MANIFEST}")


def test_docker_manifest_list_platforms():
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [
            {
                "mediaType": DOCKER_MANIFEST,
                "size": 1570,
                "digest": D[4],
                "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
            },
            {
                "mediaType": DOCKER_MANIFEST,
                "size": 1571,
                "digest": D[5],
                "platform": {"architecture": "amd64", "os": "windows", "os.version": "10.0.1"},
            },
        ],
    }
    description, out = view(json.dumps(doc).encode(), DOCKER_LIST)
    assert description == "Docker manifest list: 2 manifests"
    assert "linux/arm64/v8" in out and "windows/amd64 10.0.1" in out
    assert "artifact type" not in out


def test_referrers_index_with_artifacts_and_subject():
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "size": 700,
                "digest": D[6],
                "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
                "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
            }
        ],
    }
    _, out = view(json.dumps(doc).encode(), OCI_INDEX)
    assert "artifact type" in out.splitlines()[3]
    assert out.splitlines()[4].split()[1:3] == ["-", D[6]]
    assert "#1 org.opencontainers.image.created: 2024-01-01T00:00:00Z" in out

    artifact = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2, "digest": D[7]},
        "layers": [{"mediaType": "application/spdx+json", "size": 1234, "digest": D[8]}],
        "subject": {"mediaType": OCI_MANIFEST, "size": 500, "digest": D[6]},
    }
    description, out = view(json.dumps(artifact).encode(), OCI_MANIFEST)
    assert description == "OCI image manifest: 1 layer, 1.2 kB"
    assert "artifact type: application/vnd.example.sbom" in out
    assert f"subject:       {D[6]}  500 B  {OCI_MANIFEST}" in out


def test_platform():
    assert platform(None) == "-"
    assert platform({"os": "linux", "architecture": "arm", "variant": "v7"}) == "linux/arm/v7"


@pytest.mark.parametrize("ctype", [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX])
def test_outranks_the_json_view(ctype):
    data = b'{"schemaVersion": 2}'
    json_view = contentviews.get("JSON")
    assert json_view.render_priority(data, content_type=ctype) == 1
    assert ManifestView().render_priority(data, content_type=ctype) > 1
    assert ManifestView().render_priority(b"", content_type=ctype) == 0
    assert ManifestView().render_priority(data, content_type="application/json") == 0


def test_not_json_falls_back():
    assert ManifestView()(b"<html>", content_type=OCI_MANIFEST) is None
