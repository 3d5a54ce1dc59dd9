"""The worker's retention schedule: :func:`receiver.store.retention.purge` on a thread, at an
interval, until the worker stops (``RETENTION_DAYS``, ``RETENTION_PURGE_INTERVAL_SECONDS``)."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Engine

from receiver.store.retention import cutoff_for, purge

log = logging.getLogger(__name__)

#: Seconds after the worker starts before its first purge (then every interval).
FIRST_PURGE_AFTER_SECONDS = 60.0


def run_scheduled(
    engine: Engine,
    retention_days: int,
    interval: float,
    stop: threading.Event,
    *,
    first_after: float = FIRST_PURGE_AFTER_SECONDS,
    artifact_store: str = "",
    s3_endpoint_url: str = "",
) -> None:
    """The worker's purge loop (run it on a thread): a :func:`purge` ``first_after`` seconds
    after start (or ``interval`` if shorter), then every ``interval`` seconds, until ``stop``.

    A failed purge is logged and tried again at the next interval; it never stops the loop.
    """
    delay = min(first_after, interval)
    while not stop.wait(delay):
        delay = interval
        started = time.monotonic()
        try:
            cutoff = cutoff_for(retention_days)
            removed = purge(
                engine,
                cutoff,
                stop=stop,
                artifact_store=artifact_store,
                s3_endpoint_url=s3_endpoint_url,
            )
        except Exception:
            log.exception("retention purge failed; trying again at the next interval")
            continue
        if any(removed.values()):
            log.info(
                "retention purge",
                extra={
                    "removed": removed,
                    "retention_days": retention_days,
                    "seconds": round(time.monotonic() - started, 3),
                },
            )


def start_scheduled(
    engine: Engine,
    retention_days: int | None,
    interval: float,
    stop: threading.Event,
    artifact_store: str = "",
    s3_endpoint_url: str = "",
) -> threading.Thread | None:
    """Start :func:`run_scheduled` on a daemon thread (None when ``retention_days`` is None).

    :param artifact_store: ``ARTIFACT_STORE`` or empty; ``s3_endpoint_url`` its endpoint.
    """
    if retention_days is None:
        return None
    thread = threading.Thread(
        target=run_scheduled,
        args=(engine, retention_days, interval, stop),
        kwargs={"artifact_store": artifact_store, "s3_endpoint_url": s3_endpoint_url},
        name="retention",
        daemon=True,
    )
    thread.start()
    return thread
