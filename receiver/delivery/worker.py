"""The delivery worker behind ``relay worker``.

Loop: claim due deliveries under a lease, send each on a thread pool, and record the attempts in
batches. Delivery threads only sign and POST; the loop (one thread) takes every finished result
and, in one transaction, writes their attempts, each delivery's next step (success, retry time,
or dead letter), each subscriber's health once, and claims due deliveries for the slots just
freed, so that a subscriber's cap slot is reused at once. A crash at any point loses nothing: an
unsent or unrecorded delivery keeps its row and is claimed again when its lease expires (SPEC
invariant 4). Idle workers wake when new deliveries commit (:mod:`receiver.store.wakeup`).
"""

from __future__ import annotations

import logging
import os
import queue
import random
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from receiver import metrics
from receiver.clock import utcnow
from receiver.delivery.operational import record_subscriber_disabled
from receiver.delivery.schedule import RetryPolicy, parse_retry_after
from receiver.delivery.sender import Sender, SendResult
from receiver.delivery.urls import UnsafeUrl, check_subscriber_url
from receiver.store import retention
from receiver.store.repositories import AttemptRecord, ClaimedDelivery, Repository
from receiver.store.uow import UnitOfWork
from receiver.store.wakeup import Kick, waker_for

log = logging.getLogger(__name__)

#: How much a lease outlives twice one attempt's timeout, seconds.
LEASE_MARGIN_SECONDS = 5.0
#: How long to wait when deliveries are due but none can be claimed now, seconds.
BLOCKED_POLL_SECONDS = 0.05
#: How long the loop waits for attempts still running before it records those that finished,
#: seconds: about the time of one fast attempt, well below one transaction's.
GATHER_SECONDS = 0.002
#: How long the loop waits before trying again a transaction that failed, seconds.
RETRY_SECONDS = 1.0
#: After :meth:`Worker.stop`, how many failed tries to record the last results before the
#: worker exits without them (their leases expire and they are delivered again).
STOP_RECORD_TRIES = 3


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
    #: ``RETENTION_DAYS`` for the scheduled purge (None: no purge) and its interval, seconds.
    retention_days: int | None = None
    purge_interval: float = 600.0
    artifact_store: str = ""  # ARTIFACT_STORE: the purge deletes the files of purged copies
    artifact_s3_endpoint_url: str = ""

    @property
    def lease_seconds(self) -> float:
        return self.timeout * 2 + LEASE_MARGIN_SECONDS


@dataclass(frozen=True)
class _Finished:
    """A claimed delivery back from a delivery thread, waiting to be recorded.

    ``result`` is None when nothing is known of an attempt: ``unsent`` True when it was never
    sent (the worker was stopping: its lease is given back), False when the thread failed (the
    lease is left to expire, so that it is delivered again). ``started`` is aware UTC.
    """

    item: ClaimedDelivery
    result: SendResult | None
    started: datetime
    unsent: bool = False


@dataclass
class _Step:
    """What one transaction of :meth:`Worker._step` did (for reporting after commit).

    ``recorded`` pairs each recorded attempt with its number and whether the lease was still
    held; ``next_due`` is the earliest due time of a pending delivery, read when the claim came
    back short (None otherwise, or when nothing is pending).
    """

    now: datetime
    recorded: list[tuple[_Finished, int, bool]] = field(default_factory=list)
    claimed: list[ClaimedDelivery] = field(default_factory=list)
    next_due: datetime | None = None


class Worker:
    """Claims, sends and records deliveries until :meth:`stop` is called.

    Thread pool of ``config.concurrency`` senders; the calling thread records and claims. A slot
    stays in flight from its claim until its attempt is recorded. :meth:`stop` (SIGTERM) stops
    claiming, lets attempts in flight finish (each is bounded by the timeout), records them and
    gives back claims that were not sent yet.
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
        self._stop = threading.Event()
        self._kick = Kick()
        self._finished: queue.SimpleQueue[_Finished] = queue.SimpleQueue()
        self._conn: Connection | None = None  # run()'s own connection, kept between steps
        self.sent = 0

    def stop(self) -> None:
        """Ask the loop to finish (safe from a signal handler)."""
        self._stop.set()
        self._kick.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """The loop; returns after :meth:`stop` once in-flight attempts are recorded.

        A failed transaction (the database is away) loses no result: they stay queued and the
        loop tries again every :data:`RETRY_SECONDS`. After :meth:`stop` it gives up after
        :data:`STOP_RECORD_TRIES` failures; those deliveries are sent again once their leases
        expire.
        """
        log.info("worker started", extra={"worker": self.name})
        purger = retention.start_scheduled(  # its own thread: batches between pauses
            self.engine,
            self.config.retention_days,
            self.config.purge_interval,
            self._stop,
            self.config.artifact_store,
            self.config.artifact_s3_endpoint_url,
        )
        waker = waker_for(self.engine, self._kick)
        pool = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="deliver")
        unrecorded: list[_Finished] = []
        self._conn = None
        in_flight = 0  # claimed and not recorded yet (unrecorded ones included)
        failures = 0
        try:
            while True:
                self._kick.clear()
                unrecorded.extend(self._take_finished())
                stopping = self._stop.is_set()
                if unrecorded and not stopping:
                    unrecorded.extend(self._gather(in_flight - len(unrecorded)))
                if stopping and in_flight == 0:
                    break
                # Slots of attempts still running; the unrecorded ones free theirs below.
                limit = 0 if stopping else self.config.concurrency - (in_flight - len(unrecorded))
                step: _Step | None = None
                if unrecorded or limit > 0:
                    try:
                        if self._conn is None:
                            self._conn = self.engine.connect()
                        step = self._step(unrecorded, limit)
                    except Exception as exc:  # the database may be down a moment: keep going
                        failures += 1
                        if failures == 1 and getattr(exc, "connection_invalidated", False):
                            # The kept connection was dead (a restart, an idle timeout): once,
                            # try again at once on a new one.
                            log.warning("database connection lost; reconnecting")
                            continue
                        log.exception("recording or claiming failed; retrying shortly")
                        if stopping and failures >= STOP_RECORD_TRIES:
                            log.error(
                                "stopping without recording the last attempts; their leases "
                                "expire and they are delivered again",
                                extra={"worker": self.name, "unrecorded": len(unrecorded)},
                            )
                            break
                        (time.sleep if stopping else self._stop.wait)(RETRY_SECONDS)
                        continue
                    failures = 0
                    in_flight -= len(unrecorded)
                    unrecorded = []
                    self._report(step)
                    for item in step.claimed:
                        in_flight += 1
                        pool.submit(self._deliver, item)
                if not self._finished.empty():
                    continue  # more results to record (and their slots to fill) right away
                if stopping or in_flight >= self.config.concurrency:
                    # Waiting for a result (``_deliver`` kicks) or, when stopping, the last ones.
                    self._kick.wait(self.config.idle_poll)
                    continue
                if step is not None and step.claimed and len(step.claimed) >= limit:
                    continue  # more may be due right away
                waker.wait(self._idle_timeout(step.next_due if step else None))
        finally:
            pool.shutdown(wait=True)
            if purger is not None:
                purger.join(timeout=10)
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            waker.close()
            self._kick.close()
            log.info("worker stopped", extra={"worker": self.name, "sent": self.sent})

    def run_until_idle(self, max_rounds: int = 1000) -> int:
        """Deliver everything due now, on this thread; returns the number of attempts.

        Each round claims up to ``config.concurrency`` deliveries, sends them one after the
        other, and records them in the transaction that claims the next round. For tests and
        one-shot use; ``max_rounds`` bounds the loop.
        """
        done = 0
        finished: list[_Finished] = []
        rounds = 0
        while True:
            limit = self.config.concurrency if rounds < max_rounds else 0
            step = self._step(finished, limit)
            self._report(step)
            if not step.claimed:
                return done
            rounds += 1
            finished = [self._attempt(item) for item in step.claimed]
            done += sum(1 for f in finished if f.result is not None)

    def _gather(self, sending: int) -> list[_Finished]:
        """Wait up to :data:`GATHER_SECONDS` for more of the ``sending`` attempts still running
        to finish, so that one transaction records them together (a transaction costs about
        as much as several fast attempts). Returns those that finished in time."""
        out: list[_Finished] = []
        deadline = time.monotonic() + GATHER_SECONDS
        while len(out) < sending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                out.append(self._finished.get(timeout=left))
            except queue.Empty:
                break
        return out

    def _take_finished(self) -> list[_Finished]:
        out: list[_Finished] = []
        while True:
            try:
                out.append(self._finished.get_nowait())
            except queue.Empty:
                return out

    def _idle_timeout(self, due: datetime | None) -> float:
        """How long to sleep, seconds, given the earliest due time of a pending delivery."""
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
        return self._step([], limit).claimed

    def _deliver(self, item: ClaimedDelivery) -> None:
        """On a pool thread: send, queue the result for the loop, wake it."""
        try:
            finished = self._attempt(item)
        except Exception:
            log.exception("delivery thread failed", extra={"delivery_id": item.delivery.id})
            finished = _Finished(item, None, utcnow())
        self._finished.put(finished)
        self._kick.set()

    def _attempt(self, item: ClaimedDelivery) -> _Finished:
        """Sign and POST one claimed delivery (no database); unsent when stopping."""
        started = utcnow()
        if self._stop.is_set():
            return _Finished(item, None, started, unsent=True)
        sub = item.subscriber
        if not self.config.allow_private:
            try:  # the scheme and literal-address rules, again (the URL may predate them)
                check_subscriber_url(sub.url, allow_private=False, resolve=False)
            except UnsafeUrl as exc:
                return _Finished(item, SendResult("blocked", None, 0.0, str(exc)), started)
        secrets = [sub.secret]
        if (
            sub.previous_secret
            and sub.previous_secret_expires_at
            and sub.previous_secret_expires_at > started
        ):
            secrets.append(sub.previous_secret)
        result = self.sender.send(sub.url, item.event.id, item.event.payload, secrets, started)
        return _Finished(item, result, started)

    def _step(self, finished: Sequence[_Finished], limit: int) -> _Step:
        """One transaction: record ``finished`` (attempt rows, the deliveries' next steps, the
        subscribers' health), give back unsent claims, then claim up to ``limit`` due
        deliveries for the slots this frees.

        Nothing is reported here (see :meth:`_report`): on an exception the transaction is
        rolled back and ``finished`` can be given again.

        :raises sqlalchemy.exc.SQLAlchemyError: when the database fails; nothing is kept.
        """
        step = _Step(now=utcnow())
        if not finished and limit <= 0:
            return step
        now = step.now
        sent = [f for f in finished if f.result is not None]
        records = [self._attempt_record(f, now) for f in sent]
        if self._conn is None:
            with UnitOfWork(self.engine) as uow:  # outside run(): a connection of the pool
                kept = self._write(uow.repo, step, finished, records, limit)
                uow.commit()
        else:
            conn = self._conn
            try:
                with conn.begin():  # commits on leaving, rolls back on an exception
                    kept = self._write(Repository(conn), step, finished, records, limit)
            except Exception:
                self._conn = None  # it may be broken (a restart, a failover): open a new one
                conn.invalidate()
                conn.close()
                raise
        step.recorded = [
            (f, r.number, r.delivery_id in kept) for f, r in zip(sent, records, strict=True)
        ]
        return step

    def _write(
        self,
        repo: Repository,
        step: _Step,
        finished: Sequence[_Finished],
        records: Sequence[AttemptRecord],
        limit: int,
    ) -> set[str]:
        """The statements of :meth:`_step`, inside its transaction; returns the kept leases."""
        now = step.now
        unsent = [f.item.delivery.id for f in finished if f.unsent]
        if unsent:
            repo.release_leases(unsent, self.name, now)
        kept = repo.record_attempts(worker=self.name, now=now, records=records)
        self._record_health(repo, [f for f in finished if f.result is not None], now)
        if limit > 0:
            step.claimed = repo.claim_due(
                worker=self.name, now=now, lease_seconds=self.config.lease_seconds, limit=limit
            )
            if len(step.claimed) < limit:
                step.next_due = repo.next_due_at()
        # The counters that the web's /metrics shows (receiver/metrics.py), in this transaction
        # so that they count exactly the attempts recorded; last, as their rows stay locked
        # until commit.
        repo.add_to_worker_metrics(
            metrics.worker_increments(
                (f.result.outcome, (now - f.item.event.created_at).total_seconds())
                if f.result.ok
                else (f.result.outcome, None)
                for f in finished
                if f.result is not None
            )
        )
        return kept

    def _attempt_record(self, finished: _Finished, now: datetime) -> AttemptRecord:
        """The attempt row and the delivery's next step (success, retry time or dead letter)."""
        result = finished.result
        assert result is not None
        number = finished.item.delivery.attempts + 1
        status = "pending"
        next_at: datetime | None = None
        completed: datetime | None = None
        if result.ok:
            status, completed = "succeeded", now
        elif result.outcome == "gone":
            status, completed = "failed", now
        else:
            next_at = self.policy.next_attempt_at(
                number,
                now,
                rand=self._rng.random(),
                retry_after=parse_retry_after(result.retry_after, now),
                slow_down=result.outcome == "timeout" or result.status_code == 429,
            )
            if next_at is None:
                status, completed = "failed", now
        return AttemptRecord(
            delivery_id=finished.item.delivery.id,
            number=number,
            started_at=finished.started,
            duration_ms=result.duration_ms,
            status_code=result.status_code,
            outcome=result.outcome,
            error=result.error,
            response_body=result.response_body,
            status=status,
            next_attempt_at=next_at,
            completed_at=completed,
        )

    def _record_health(self, repo: Repository, sent: Sequence[_Finished], now: datetime) -> None:
        """Each subscriber's health after these attempts, in order, written once per subscriber
        (in subscriber id order: see the lock order in :mod:`receiver.store.repositories`).

        A success clears ``failing_since``; a failure sets it (unless already set) and may
        disable the subscriber: at once for 410 Gone, or once it has seen only failures for
        longer than ``config.disable_after`` seconds.
        """
        by_sub: dict[str, list[SendResult]] = {}
        for f in sent:
            assert f.result is not None
            by_sub.setdefault(f.item.subscriber.id, []).append(f.result)
        failing = [sid for sid, results in by_sub.items() if not all(r.ok for r in results)]
        current = repo.live_subscribers(failing)
        # In subscriber id order, whatever order the attempts finished in: every worker locks
        # the subscriber rows it updates in the same order, so two workers never deadlock.
        for sid in sorted(by_sub):
            results = by_sub[sid]
            sub = current.get(sid)
            failing_since = sub.failing_since if sub else None
            enabled = bool(sub and sub.enabled)
            health: dict[str, Any] = {}
            for result in results:
                if result.ok:
                    failing_since = None
                    health.update(failing_since=None, last_success_at=now)
                    continue
                failing_since = failing_since or now
                health.update(
                    failing_since=failing_since,
                    last_failure_at=now,
                    last_error=(result.error or "")[:500],
                )
                reason: str | None = None
                if result.outcome == "gone":
                    reason = "the endpoint answered 410 Gone"
                elif now - failing_since > timedelta(seconds=self.config.disable_after):
                    reason = (
                        f"only failures since {failing_since.isoformat()} "
                        f"(more than {self.config.disable_after:.0f} s)"
                    )
                if reason and enabled:
                    health.update(enabled=False, disabled_reason=reason, disabled_at=now)
                    enabled = False
            repo.set_subscriber_health(sid, health)
            if health.get("enabled") is False and sub is not None:  # just disabled: tell
                record_subscriber_disabled(repo, sub, health, now)

    def _report(self, step: _Step) -> None:
        """After commit: a warning per lost lease, then metrics and a log line per attempt."""
        now = step.now
        for finished, number, kept in step.recorded:
            item, result = finished.item, finished.result
            assert result is not None
            delivery, sub = item.delivery, item.subscriber
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


__all__ = ["Worker", "WorkerConfig"]
