"""An S3-compatible server for the tests: moto's standalone server (`moto_server`, from
PyPI's moto[server]). It STANDS IN FOR REAL S3 (AWS, MinIO, Ceph RGW): MinIO cannot be
installed from the package registries this project can reach. moto keeps objects in
memory and implements the calls regmirror makes (multipart uploads and their abort,
conditional writes with If-None-Match and If-Match, presigned GETs, listings); it does not
show S3's latency, throughput or consistency under load, and it does not check the
signature of a presigned URL.

Its credentials are any: tests pass these in the environment of the mirrors they start,
as users pass theirs (the standard AWS chain)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any, Self

import boto3

from .procs import Proc, Service, free_port, wait_for_http

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "regmirror-test",
    "AWS_SECRET_ACCESS_KEY": "regmirror-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class S3Server(Service):
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.port = free_port()
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        moto = Path(sys.executable).with_name("moto_server")  # the venv's
        self.proc = Proc([str(moto), "-H", "127.0.0.1", "-p", str(self.port)], self.log_dir,
                         "moto-s3")  # fmt: skip
        self.proc.start(ready=lambda p: wait_for_http(self.url, 20, p))
        return self

    def stop(self) -> int | None:
        return self.proc.stop() if self.proc else None

    def client(self) -> Any:
        """A boto3 client of this server, for the tests' own look into the bucket."""
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])  # fmt: skip

    def bucket(self) -> str:
        """A new, empty bucket."""
        name = f"regmirror-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                        Prefix=prefix)  # fmt: skip
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def uploads(self, bucket: str) -> list[str]:
        """Multipart uploads begun and neither completed nor aborted."""
        said = self.client().list_multipart_uploads(Bucket=bucket)
        return [u["Key"] for u in said.get("Uploads", [])]
