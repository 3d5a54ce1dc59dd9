"""``ARTIFACT_STORE=s3://…`` end to end: the same story as ``test_artifact_store.py`` with an
S3-compatible server (moto's, a process of its own on loopback) as the store; the durable URL
answers with a redirect to a fresh presigned URL of that server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from simulator.control import FAKE_MP4
from simulator.processes import Process, bin_path, free_port
from tests.e2e.conftest import Stack
from tests.e2e.test_artifact_store import (
    test_subscriber_back_after_the_vendor_url_died_downloads_the_durable_copy as durable_story,
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


def _bucket(endpoint: str) -> Any:
    import boto3

    return boto3.session.Session(
        **{k.lower(): v for k, v in AWS_ENV.items() if k != "AWS_DEFAULT_REGION"},
        region_name="us-east-1",
    ).client("s3", endpoint_url=endpoint)


def _videos(endpoint: str) -> dict[str, bytes]:
    """The objects under the stack's prefix in the bucket ``videos``: key → body."""
    client = _bucket(endpoint)
    listed = client.list_objects_v2(Bucket="videos", Prefix="relay-e2e/").get("Contents", [])
    return {
        o["Key"]: client.get_object(Bucket="videos", Key=o["Key"])["Body"].read() for o in listed
    }


@pytest.fixture(scope="module", autouse=True)
def s3_server() -> Iterator[str]:
    """moto's S3 server (started before the module's stack) with the bucket ``videos``."""
    server = Process(
        "moto", [bin_path("moto_server"), "-H", "127.0.0.1", "-p", str(S3_PORT)], env=AWS_ENV
    )
    endpoint = f"http://127.0.0.1:{S3_PORT}"
    try:
        server.wait_http(endpoint + "/moto-api/", 30)
        _bucket(endpoint).create_bucket(Bucket="videos")
        yield endpoint
    finally:
        server.stop()


def test_the_durable_copy_is_an_object_in_the_bucket(stack: Stack, s3_server: str) -> None:
    """The story of test_artifact_store.py (the subscriber, back after the vendor's URL died,
    downloads the video from its durable URL) with this module's S3 stack; and the copy it
    downloaded is one new object in the bucket, the video's bytes."""
    before = _videos(s3_server)
    durable_story(stack)
    added = {k: v for k, v in _videos(s3_server).items() if k not in before}
    assert list(added.values()) == [FAKE_MP4], sorted(added)
