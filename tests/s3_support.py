"""A real S3 API for tests: moto's server on a free port in a thread, one bucket per test."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

KEY_ID, SECRET = "codeflow-test-key", "codeflow-test-secret"  # moto accepts any by default
REGION = "us-east-1"


@dataclass(frozen=True)
class Bucket:
    """One test's bucket, and the environment that points codeflow at it."""

    endpoint: str
    name: str

    @property
    def uri(self) -> str:
        return f"s3://{self.name}/codeflow"

    def env(self) -> dict[str, str]:
        return {
            "CODEFLOW_STORE_URI": self.uri,
            "CODEFLOW_S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_REGION": REGION,
        }

    def objects(self, *, markers: bool = False) -> list[str]:
        """Every object key in the bucket (without pyarrow's empty ``folder/`` markers)."""
        pages = client(self.endpoint).get_paginator("list_objects_v2").paginate(Bucket=self.name)
        found = [item["Key"] for page in pages for item in page.get("Contents", [])]
        return [k for k in found if markers or not k.endswith("/")]


def client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        region_name=REGION,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server for the session (its request log silenced)."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_endpoint: str) -> Iterator[Bucket]:
    """A new, empty bucket; emptied and removed afterwards."""
    made = Bucket(s3_endpoint, f"cf-{uuid.uuid4().hex[:12]}")
    s3 = client(s3_endpoint)
    s3.create_bucket(Bucket=made.name)
    yield made
    for key in made.objects(markers=True):
        s3.delete_object(Bucket=made.name, Key=key)
    s3.delete_bucket(Bucket=made.name)
