"""``ARTIFACT_STORE``: a durable copy of each succeeded task's video.

Runway's artifact URLs are signed and expire (hours to days): a subscriber that was down for a
day would receive a dead link. With ``ARTIFACT_STORE`` set to a directory:

1. When a callback makes a task SUCCEEDED (with artifacts), its ``task.succeeded`` deliveries
   are written *held* (due in :data:`HOLD_SECONDS`) and a pending copy is written beside them,
   in the same transaction (:func:`hold_for_copy`).
2. The worker's copier thread (:class:`Copier`) leases the copy, downloads each artifact URL
   (streamed, at most ``ARTIFACT_MAX_BYTES``, through the same connect-time address guard as
   deliveries, with timeouts), stores it, adds ``durable_url`` beside each artifact's ``url``
   in the event's body and releases the deliveries, in one transaction. A failed download is
   tried again (:data:`RETRY_SCHEDULE`); when the retries are exhausted, or the video is too
   large or refused by the guard, the event goes out as it was, with the vendor's URLs only.
   If no copier runs, the hold ends by itself after :data:`HOLD_SECONDS`.
3. ``durable_url`` is ``PUBLIC_BASE_URL/artifacts/<token>``: the token signs the stored file's
   key with ``SECRET_KEY`` (:class:`ArtifactSigner`), and ``GET /artifacts/<token>`` serves the
   file (:mod:`receiver.web.artifacts`). It lasts as long as the file, which the retention
   purge removes with its event.

A directory serves one machine (web and worker must see it). ``s3://bucket/prefix`` stores
in any S3-compatible bucket (:class:`S3Store`); ``/artifacts/<token>`` then redirects to a
fresh presigned URL (:data:`PRESIGNED_SECONDS`), so the URL in the event never expires
before the object does.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from itsdangerous import BadSignature, URLSafeSerializer
from requests.adapters import HTTPAdapter
from sqlalchemy import Engine

from receiver.clock import utcnow
from receiver.delivery.urls import GuardedAdapter, UnsafeUrl, refused_by_guard
from receiver.delivery.urls import check_subscriber_url as check_url
from receiver.settings import Settings, parse_s3_url
from receiver.store import artifacts as store
from receiver.store.repositories import Delivery, Event, Repository
from receiver.store.uow import UnitOfWork

log = logging.getLogger(__name__)

#: Lifetime of the presigned URL ``/artifacts/<token>`` redirects to (S3), seconds.
PRESIGNED_SECONDS = 900
#: How long the deliveries of a ``task.succeeded`` wait for its copy at most, seconds.
HOLD_SECONDS = 3600.0
#: Seconds between tries of a failed copy; then it is given up.
RETRY_SCHEDULE: tuple[float, ...] = (5, 30, 120, 600, 1800)
#: A copier's lease on a copy, seconds (a download is cut at :data:`DOWNLOAD_DEADLINE`).
LEASE_SECONDS = 900.0
#: The longest one download may take, seconds.
DOWNLOAD_DEADLINE = 600.0
#: (connect, read) timeouts of one download request, seconds.
TIMEOUTS = (10.0, 30.0)
#: How long an idle copier sleeps between looks at the table, seconds.
IDLE_POLL_SECONDS = 1.0
CHUNK_BYTES = 1 << 16
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class CopyError(Exception):
    """A download that failed; ``permanent`` when trying again cannot help (too large,
    refused by the guard)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class LocalStore:
    """Files under one directory; keys are relative paths (``<job_id>/<n>-<name>``).

    :param root: the directory (created when missing).
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str) -> Path | None:
        """The file of ``key``, or None when it is not a key of this store or is missing."""
        candidate = (self.root / key).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        return candidate

    def put(self, key: str, chunks: Iterable[bytes]) -> tuple[int, str]:
        """Write ``chunks`` to ``key`` atomically (a temporary file, then a rename).

        :returns: (size in bytes, hex SHA-256).
        :raises OSError: the directory cannot be written.
        :raises ValueError: ``key`` would leave the store's directory.
        """
        target = (self.root / key).resolve()
        if not target.is_relative_to(self.root):
            raise ValueError(f"key {key!r} leaves the store")
        target.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return size, digest.hexdigest()

    def delete(self, key: str) -> None:
        """Remove the file of ``key``; a key that is missing or outside the store is ignored.

        :raises OSError: the file exists but cannot be removed.
        """
        path = self.path(key)
        if path is not None:
            path.unlink(missing_ok=True)


class S3Store:
    """Objects in an S3-compatible bucket (AWS, Cloudflare R2, Backblaze B2, MinIO, …) under
    ``s3://bucket/prefix``, through boto3 (the ``s3`` extra: ``pip install
    'runway-relay[s3]'``). Credentials and region come from the usual AWS variables
    (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, …) as boto3
    reads them; ``endpoint_url`` (``ARTIFACT_S3_ENDPOINT_URL``) names another service than AWS,
    addressed path-style.

    :param url: ``s3://bucket`` or ``s3://bucket/prefix``.
    :raises ValueError: not such a URL.
    """

    def __init__(self, url: str, *, endpoint_url: str = "") -> None:
        bucket, prefix = parse_s3_url(url)
        self.bucket = bucket
        self.prefix = prefix
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]

        config = Config(
            s3={"addressing_style": "path"} if endpoint_url else {},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
        )
        self._client: Any = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url or None, config=config
        )

    def _object(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def put(self, key: str, chunks: Iterable[bytes]) -> tuple[int, str]:
        """Spool ``chunks`` to a temporary file (memory up to 8 MiB), then upload it
        (multipart when large). :returns: (size in bytes, hex SHA-256)."""
        digest, size = hashlib.sha256(), 0
        with tempfile.SpooledTemporaryFile(max_size=8 << 20) as spool:
            for chunk in chunks:
                spool.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            spool.seek(0)
            try:
                self._client.upload_fileobj(
                    spool,
                    self.bucket,
                    self._object(key),
                    ExtraArgs={"ContentType": "video/mp4"},
                )
            except Exception as exc:  # botocore's errors: the store cannot be written now
                raise OSError(f"upload to s3://{self.bucket} failed: {exc}") from exc
        return size, digest.hexdigest()

    def delete(self, key: str) -> None:
        """Remove the object of ``key`` (S3 answers success for a missing one too).

        :raises botocore.exceptions.BotoCoreError: the service cannot be reached.
        :raises botocore.exceptions.ClientError: the service refused (credentials, bucket).
        """
        self._client.delete_object(Bucket=self.bucket, Key=self._object(key))

    def presigned_url(self, key: str, lifetime: int) -> str:
        """A GET URL for ``key`` valid ``lifetime`` seconds (nothing is asked of the service)."""
        return str(
            self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._object(key)},
                ExpiresIn=lifetime,
            )
        )


ArtifactStore = LocalStore | S3Store


@functools.lru_cache(maxsize=8)
def open_store(spec: str, *, endpoint_url: str = "") -> ArtifactStore:
    """The store of ``ARTIFACT_STORE``: ``s3://…`` or a directory (one per process and
    setting: a boto3 client is thread-safe and slow to make)."""
    if spec.startswith("s3://"):
        return S3Store(spec, endpoint_url=endpoint_url)
    return LocalStore(Path(spec))


class ArtifactSigner:
    """Signs and verifies store keys for ``/artifacts/<token>`` with ``SECRET_KEY`` (the first
    key signs, every key verifies, as for replyRef)."""

    def __init__(self, keys: Sequence[str]) -> None:
        # itsdangerous signs with the LAST key of its list.
        self._serializer = URLSafeSerializer(list(reversed(keys)), salt="relay-artifact")

    def token(self, key: str) -> str:
        """The URL-safe signed token of store key ``key`` (the ``<token>`` of
        ``/artifacts/<token>``); it does not expire: the copy's existence bounds it."""
        return str(self._serializer.dumps(key))

    def key(self, token: str) -> str | None:
        """The key, or None for a token that does not verify."""
        try:
            value = self._serializer.loads(token)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None


def hold_for_copy(
    repo: Repository,
    succeeded: Sequence[tuple[Event, list[dict[str, Any]]]],
    new_deliveries: list[Delivery],
    now: datetime,
) -> list[Delivery]:
    """In the callback's transaction: a pending copy per ``task.succeeded`` event that has
    artifact URLs, and its deliveries held (due in :data:`HOLD_SECONDS`).

    :param succeeded: the ``task.succeeded`` events written, with their artifacts.
    :returns: ``new_deliveries``, those of the held events due later.
    """
    held = {
        event.id
        for event, artifacts in succeeded
        if any(isinstance(a.get("url"), str) for a in artifacts)
    }
    if not held:
        return new_deliveries
    store.add_copies(repo.conn, [(e.id, e.job_id or "") for e, _ in succeeded if e.id in held], now)
    later = now + timedelta(seconds=HOLD_SECONDS)
    return [replace(d, next_attempt_at=later) if d.event_id in held else d for d in new_deliveries]


@dataclass(frozen=True)
class CopierConfig:
    """The copier's knobs: ``store`` is ``ARTIFACT_STORE`` (a directory or ``s3://…``),
    ``max_bytes`` per video; ``allow_private`` is ALLOW_PRIVATE_URLS."""

    store: str
    public_base_url: str
    signing_keys: tuple[str, ...]
    max_bytes: int
    allow_private: bool
    s3_endpoint_url: str = ""


class Copier:
    """Copies videos to the store, one copy at a time, until :meth:`stop`."""

    def __init__(self, engine: Engine, config: CopierConfig) -> None:
        self.engine = engine
        self.config = config
        self.store = open_store(config.store, endpoint_url=config.s3_endpoint_url)
        self.signer = ArtifactSigner(config.signing_keys)
        self._stop = threading.Event()
        self._session = requests.Session()
        self._session.trust_env = False
        self._session.max_redirects = 3
        adapter = HTTPAdapter() if config.allow_private else GuardedAdapter()
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Copy due copies; sleep :data:`IDLE_POLL_SECONDS` when none is due."""
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:
                log.exception("artifact copy failed; retrying shortly")
                busy = False
            if not busy:
                self._stop.wait(IDLE_POLL_SECONDS)

    def run_once(self, now: datetime | None = None) -> bool:
        """Claim one due copy and do it. :returns: whether one was claimed."""
        with UnitOfWork(self.engine) as uow:
            job = store.claim(uow.repo.conn, now or utcnow(), LEASE_SECONDS)
            uow.commit()
        if job is None:
            return False
        body = json.loads(job.payload)
        artifacts = body.get("data", {}).get("artifacts") or []
        stored: list[dict[str, Any]] = []
        error: str | None = None
        permanent = False
        try:
            for index, artifact in enumerate(artifacts):
                url = artifact.get("url") if isinstance(artifact, dict) else None
                if not isinstance(url, str):
                    continue
                key = f"{_SAFE.sub('_', job.job_id)}/{index}-{_name(artifact)}"
                size, sha = self._copy(url, key)
                stored.append({"key": key, "size": size, "sha256": sha, "source": url[:2048]})
                artifact["durable_url"] = (
                    f"{self.config.public_base_url}/artifacts/{self.signer.token(key)}"
                )
        except CopyError as exc:
            error, permanent = str(exc), exc.permanent
        except OSError as exc:  # the store cannot be written: try again later
            error = f"store: {exc}"
        attempts = job.attempts + 1
        now = utcnow()
        with UnitOfWork(self.engine) as uow:
            conn = uow.repo.conn
            if error is None:
                payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
                store.finish(
                    conn, job.event_id, status=store.DONE, attempts=attempts,
                    stored=stored, payload=payload, error=None, now=now,
                )  # fmt: skip
            elif permanent or attempts > len(RETRY_SCHEDULE):
                for item in stored:
                    self.store.delete(item["key"])
                store.finish(
                    conn, job.event_id, status=store.FAILED, attempts=attempts,
                    stored=None, payload=None, error=error, now=now,
                )  # fmt: skip
            else:
                at = now + timedelta(seconds=RETRY_SCHEDULE[attempts - 1])
                store.retry_later(
                    conn, job.event_id, attempts=attempts, at=at, error=error, now=now
                )
            uow.repo.notify_deliveries()
            uow.commit()
        log.log(
            logging.INFO if error is None else logging.WARNING,
            "artifact copy" if error is None else "artifact copy failed",
            extra={
                "event_id": job.event_id,
                "job_id": job.job_id,
                "attempt": attempts,
                "error": error,
                "copied": len(stored),
            },
        )
        return True

    def _copy(self, url: str, key: str) -> tuple[int, str]:
        """Download ``url`` into the store under ``key``.

        :raises CopyError: the download failed (permanent: too large or refused by the guard).
        :raises OSError: the store cannot be written.
        """
        try:
            check_url(url, allow_private=self.config.allow_private, resolve=False)
        except UnsafeUrl as exc:
            raise CopyError(f"artifact URL refused: {exc}", permanent=True) from None
        limit = self.config.max_bytes
        deadline = time.monotonic() + DOWNLOAD_DEADLINE
        try:
            response = self._session.get(url, stream=True, timeout=TIMEOUTS)
        except requests.RequestException as exc:
            refused = refused_by_guard(exc)
            raise CopyError(f"download failed: {str(exc)[:300]}", permanent=refused) from None
        with response:
            if response.status_code != 200:
                raise CopyError(
                    f"download answered HTTP {response.status_code}",
                    permanent=response.status_code in (401, 403, 404, 410),
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise CopyError(
                    f"video of {declared} bytes is over ARTIFACT_MAX_BYTES ({limit})",
                    permanent=True,
                )

            def chunks() -> Iterable[bytes]:
                seen = 0
                for chunk in response.iter_content(CHUNK_BYTES):
                    seen += len(chunk)
                    if seen > limit:
                        raise CopyError(
                            f"video is over ARTIFACT_MAX_BYTES ({limit})", permanent=True
                        )
                    if time.monotonic() > deadline:
                        raise CopyError(f"download took over {DOWNLOAD_DEADLINE:.0f} s")
                    yield chunk

            try:
                return self.store.put(key, chunks())
            except requests.RequestException as exc:
                raise CopyError(f"download broke off: {str(exc)[:300]}") from None


def _name(artifact: dict[str, Any]) -> str:
    name = artifact.get("filename") or artifact.get("id") or "video.mp4"
    safe = _SAFE.sub("_", str(name))[:100].lstrip(".") or "video.mp4"
    return safe


def copier_config(settings: Settings) -> CopierConfig | None:
    """The copier's configuration from the settings; None when ``ARTIFACT_STORE`` is off."""
    if not settings.artifact_store:
        return None
    return CopierConfig(
        store=settings.artifact_store,
        public_base_url=settings.public_base_url,
        signing_keys=tuple(settings.signing_keys),
        max_bytes=settings.artifact_max_bytes,
        allow_private=settings.allow_private_urls,
        s3_endpoint_url=settings.artifact_s3_endpoint_url,
    )


def start_copier(engine: Engine, config: CopierConfig | None) -> Copier | None:
    """Start a :class:`Copier` on a daemon thread (None when ``config`` is None)."""
    if config is None:
        return None
    copier = Copier(engine, config)
    threading.Thread(target=copier.run, name="artifacts", daemon=True).start()
    return copier


__all__ = [
    "ArtifactSigner",
    "parse_s3_url",
    "Copier",
    "CopierConfig",
    "LocalStore",
    "S3Store",
    "open_store",
    "copier_config",
    "hold_for_copy",
    "start_copier",
]
