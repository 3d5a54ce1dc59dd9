"""``ARTIFACT_STORE=s3://…`` end to end: the same story as ``test_artifact_store.py`` with an
S3-compatible server (moto's, a process of its own on loopback) as the store; the durable URL
answers with a redirect to a fresh presigned URL of that server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulator.processes import Process, bin_path, free_port
from tests.e2e.test_artifact_store import (  # the same test, run here with this module's stack
    test_subscriber_back_after_the_vendor_url_died_downloads_the_durable_copy,
)

pytestmark = pytest.mark.e2e

S3_PORT = free_port()
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}
STACK_ENV = {
    "ARTIFACT_STORE": "s3://videos/relay-e2e",
    "ARTIFACT_S3_ENDPOINT_URL": f"http://127.0.0.1:{S3_PORT}",
    "DELIVERY_RETRY_SCHEDULE": ",".join(["0.5"] * 120),
    **AWS_ENV,
}


@pytest.fixture(scope="module", autouse=True)
def s3_server() -> Iterator[str]:
    """moto's S3 server (started before the module's stack) with the bucket ``videos``."""
    import boto3

    server = Process(
        "moto", [bin_path("moto_server"), "-H", "127.0.0.1", "-p", str(S3_PORT)], env=AWS_ENV
    )
    endpoint = f"http://127.0.0.1:{S3_PORT}"
    try:
        server.wait_http(endpoint + "/moto-api/", 30)
        client = boto3.session.Session(
            **{k.lower(): v for k, v in AWS_ENV.items() if k != "AWS_DEFAULT_REGION"},
            region_name="us-east-1",
        ).client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="videos")
        yield endpoint
    finally:
        server.stop()


__all__ = ["test_subscriber_back_after_the_vendor_url_died_downloads_the_durable_copy"]
