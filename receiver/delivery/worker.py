"""The delivery worker behind ``relay worker``.

Loop: claim due deliveries under a lease, send each on a thread pool, record the attempt and
the next step (success, retry time, or dead letter) in one transaction. A crash at any point
loses nothing: an unsent or unrecorded delivery keeps its row and is claimed again when its
lease expires (SPEC invariant 4). Idle workers wake when new deliveries commit: PostgreSQL
through ``LISTEN/NOTIFY``, SQLite by watching ``PRAGMA data_version`` every few milliseconds.
"""

from __future__ import annotations

import logging
import os
import random
import select
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine

from receiver import metrics
from receiver.clock import utcnow
from receiver.delivery.schedule import RetryPolicy, parse_retry_after
from receiver.delivery.sender import Sender, SendResult
from receiver.delivery.urls import UnsafeUrl, check_subscriber_url
from receiver.store.engine import is_sqlite
from receiver.store.repositories import ClaimedDelivery
from receiver.store.uow import UnitOfWork

log = logging.getLogger(__name__)

#: How much a lease outlives twice one attempt's timeout, seconds.
LEASE_MARGIN_SECONDS = 5.0
#: How long to wait when deliveries are due but none can be claimed now, seconds.
BLOCKED_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class WorkerConfig:
    """The worker's knobs (from :class:`receiver.settings.Settings`).

    Seconds throughout: ``timeout`` of one attempt, ``disable_after`` for endpoint health,
    ``idle_poll`` the longest sleep between looks at the table when nothing wakes it.
    """

    retry_schedule: tuple[float, ...]
    timeout: float
    concurrency: int
    allow_private: bool
    disable_after: float
    idle_poll: float = 1.0

    @property
    def lease_seconds(self) -> float:
        return self.timeout * 2 + LEASE_MARGIN_SECONDS


class Waker(Protocol):
    def wait(self, timeout: float) -> None: ...
    def close(self) -> None: ...


class SqliteWaker:
    """Returns from :meth:`wait` soon after another connection commits to the SQLite file."""

    def __init__(self, engine: Engine, kick: threading.Event, interval: float = 0.005) -> None:
        self._raw = engine.raw_connection()
        self._kick = kick
        self._interval = interval
        self._version = self._read()

    def _read(self) -> int:
        cursor = self._raw.cursor()
        try:
            cursor.execute("PRAGMA data_version")
            row = cursor.fetchone()
            return int(row[0]) if row else 0
        finally:
            cursor.close()

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._kick.wait(self._interval):
                return
            version = self._read()
            if version != self._version:
                self._version = version
                return
            if time.monotonic() >= deadline:
                return

    def close(self) -> None:
        self._raw.close()


class PostgresWaker:
    """Returns from :meth:`wait` when a ``NOTIFY relay_deliveries`` arrives.

    A lost LISTEN connection is replaced on the next wait; until then the worker falls back to
    its idle poll, so a database restart costs latency, never deliveries.
    """

    def __init__(self, engine: Engine, kick: threading.Event) -> None:
        url = engine.url.set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._kick = kick
        self._conn: Any = None
        self._connect()

    def _connect(self) -> None:
        import psycopg

        try:
            self._conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=5)
            self._conn.execute("LISTEN relay_deliveries")
        except psycopg.Error:
            log.warning("LISTEN connection failed; polling until it is back")
            self._conn = None

    def wait(self, timeout: float) -> None:
        import psycopg

        if self._conn is None or self._conn.closed:
            self._connect()
        deadline = time.monotonic() + timeout
        while not self._kick.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self._conn is None:
                self._kick.wait(min(left, 0.05))
                continue
            try:
                ready, _, _ = select.select([self._conn.fileno()], [], [], min(left, 0.05))
                if ready and any(True for _ in self._conn.notifies(timeout=0, stop_after=100)):
                    return
            except (psycopg.Error, OSError, ValueError):
                log.warning("LISTEN connection lost; reconnecting")
                self.close()
                return

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


class Worker:
    """Claims, sends and records deliveries until :meth:`stop` is called.

    Thread pool of ``config.concurrency`` senders. :meth:`stop` (SIGTERM) stops claiming, lets
    attempts in flight finish (each is bounded by the timeout) and returns unsent claims.
    """

    def __init__(
        self,
        engine: Engine,
        config: WorkerConfig,
        *,
        name: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.engine = engine
        self.config = config
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self.policy = RetryPolicy(config.retry_schedule)
        self.sender = Sender(
            timeout=config.timeout,
            allow_private=config.allow_private,
            pool_size=max(2, config.concurrency),
        )
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._in_flight = 0
        self._lock = threading.Lock()
        self.sent = 0

    def stop(self) -> None:
        """Ask the loop to finish (safe from a signal handler)."""
        self._stop.set()
        self._kick.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _make_waker(self) -> Waker:
        if is_sqlite(self.engine):
            return SqliteWaker(self.engine, self._kick)
        return PostgresWaker(self.engine, self._kick)

    def run(self) -> None:
        """The loop; returns after :meth:`stop` once in-flight attempts are done."""
        log.info("worker started", extra={"worker": self.name})
        waker = self._make_waker()
        pool = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="deliver")
        try:
            while not self._stop.is_set():
                self._kick.clear()
                free = self.config.concurrency - self._in_flight
                claimed: list[ClaimedDelivery] = []
                if free > 0:
                    try:
                        claimed = self.claim(free)
                    except Exception:  # the database may be down for a moment: keep the worker
                        log.exception("claim failed; retrying shortly")
                        self._stop.wait(1.0)
                        continue
                for item in claimed:
                    with self._lock:
                        self._in_flight += 1
                    future = pool.submit(self._deliver, item)
                    future.add_done_callback(self._done)
                if claimed and len(claimed) >= free:
                    # Full: wait for a slot to free up (``_done`` kicks).
                    self._kick.wait(self.config.idle_poll)
                    continue
                if claimed:
                    continue  # more may be due right away
                waker.wait(self._idle_timeout())
        finally:
            pool.shutdown(wait=True)
            waker.close()
            log.info("worker stopped", extra={"worker": self.name, "sent": self.sent})

    def run_until_idle(self, max_rounds: int = 1000) -> int:
        """Deliver everything due now, on this thread; returns the number of attempts.

        For tests and one-shot use; ``max_rounds`` bounds the loop.
        """
        done = 0
        for _ in range(max_rounds):
            claimed = self.claim(self.config.concurrency)
            if not claimed:
                break
            for item in claimed:
                self._deliver(item)
                done += 1
        return done

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._in_flight -= 1
        if future.exception() is not None:
            log.error("delivery thread failed", exc_info=future.exception())
        self._kick.set()

    def _idle_timeout(self) -> float:
        try:
            with UnitOfWork(self.engine) as uow:
                due = uow.repo.next_due_at()
        except Exception:
            return self.config.idle_poll
        if due is None:
            return self.config.idle_poll
        seconds = (due - utcnow()).total_seconds()
        if seconds <= 0:
            # Due but not claimable: held by a live lease or behind its subscriber's cap. A slot
            # freeing up here kicks the loop; elsewhere, look again shortly, without spinning.
            return min(self.config.idle_poll, BLOCKED_POLL_SECONDS)
        return min(self.config.idle_poll, seconds)

    def claim(self, limit: int) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` due deliveries to this worker (one transaction)."""
        now = utcnow()
        with UnitOfWork(self.engine) as uow:
            claimed = uow.repo.claim_due(
                worker=self.name, now=now, lease_seconds=self.config.lease_seconds, limit=limit
            )
            uow.commit()
        return claimed

    def _rand(self) -> float:
        with self._rng_lock:
            return self._rng.random()

    def _deliver(self, item: ClaimedDelivery) -> None:
        if self._stop.is_set():
            with UnitOfWork(self.engine) as uow:
                uow.repo.release_lease(item.delivery.id, self.name, utcnow())
                uow.commit()
            return
        sub = item.subscriber
        started = utcnow()
        if not self.config.allow_private:
            try:  # the scheme and literal-address rules, again (the URL may predate them)
                check_subscriber_url(sub.url, allow_private=False, resolve=False)
            except UnsafeUrl as exc:
                self.record(item, SendResult("blocked", None, 0.0, str(exc)), started)
                return
        secrets = [sub.secret]
        if (
            sub.previous_secret
            and sub.previous_secret_expires_at
            and sub.previous_secret_expires_at > started
        ):
            secrets.append(sub.previous_secret)
        result = self.sender.send(sub.url, item.event.id, item.event.payload, secrets, started)
        self.record(item, result, started)

    def record(self, item: ClaimedDelivery, result: SendResult, started: datetime) -> None:
        """Write the attempt, the delivery's next step and the subscriber's health at once."""
        now = utcnow()
        delivery, sub = item.delivery, item.subscriber
        number = delivery.attempts + 1
        values: dict[str, Any] = {
            "attempts": number,
            "last_status_code": result.status_code,
            "last_error": result.error,
            "updated_at": now,
        }
        disable_reason: str | None = None
        if result.ok:
            values.update(status="succeeded", completed_at=now)
        elif result.outcome == "gone":
            values.update(status="failed", completed_at=now)
            disable_reason = "the endpoint answered 410 Gone"
        else:
            next_at = self.policy.next_attempt_at(
                number,
                now,
                rand=self._rand(),
                retry_after=parse_retry_after(result.retry_after, now),
                slow_down=result.outcome == "timeout" or result.status_code == 429,
            )
            if next_at is None:
                values.update(status="failed", completed_at=now)
            else:
                values["next_attempt_at"] = next_at
        with UnitOfWork(self.engine) as uow:
            repo = uow.repo
            repo.add_attempt(
                delivery_id=delivery.id,
                number=number,
                started_at=started,
                duration_ms=result.duration_ms,
                status_code=result.status_code,
                outcome=result.outcome,
                error=result.error,
                response_body=result.response_body,
                worker=self.name,
            )
            kept = repo.finish_attempt(delivery_id=delivery.id, worker=self.name, values=values)
            if result.ok:
                repo.update_subscriber(sub.id, failing_since=None, last_success_at=now)
            else:
                current = repo.get_subscriber(sub.id)
                failing_since = (current.failing_since if current else None) or now
                health: dict[str, Any] = {
                    "failing_since": failing_since,
                    "last_failure_at": now,
                    "last_error": (result.error or "")[:500],
                }
                if disable_reason is None and now - failing_since > timedelta(
                    seconds=self.config.disable_after
                ):
                    disable_reason = (
                        f"only failures since {failing_since.isoformat()} "
                        f"(more than {self.config.disable_after:.0f} s)"
                    )
                if disable_reason and current and current.enabled:
                    health.update(enabled=False, disabled_reason=disable_reason, disabled_at=now)
                repo.update_subscriber(sub.id, **health)
            uow.commit()
        if not kept:
            log.warning(
                "lease lost before the attempt was recorded",
                extra={"delivery_id": delivery.id, "worker": self.name},
            )
        self.sent += 1
        # End to end: the event was written when its callback was received.
        latency = (now - item.event.created_at).total_seconds() if result.ok else None
        metrics.delivery_attempted(result.outcome, latency)
        log.info(
            "delivery attempt",
            extra={
                "delivery_id": delivery.id,
                "event_id": item.event.id,
                "job_id": item.event.job_id,
                "subscriber_id": sub.id,
                "attempt": number,
                "outcome": result.outcome,
                "status_code": result.status_code,
                "duration_ms": round(result.duration_ms, 1),
            },
        )


__all__ = ["PostgresWaker", "SqliteWaker", "Worker", "WorkerConfig"]
