"""The delivery pipeline: claim → send → record, one delivery at a time or in batches.

1. **Claim** (:meth:`Pipeline.step`): lease up to ``limit`` due deliveries to this worker, in
   the transaction that records the previous batch, so that a subscriber's cap slot freed by a
   recorded attempt is reused at once.
2. **Send** (:meth:`Pipeline.send`, no database): sign the stored body with the secrets that
   sign now and POST it; the URL guard is applied again.
3. **Record** (:meth:`Pipeline.step`, one transaction): each attempt's row and its delivery's
   next step, each subscriber's health once (and a ``subscriber.disabled`` event when it was
   just disabled), the worker's metric counters; after commit, :meth:`Pipeline.report` logs.

The rules (next step, health, secrets) are :mod:`receiver.domain.delivery`'s; threads, flow
control and waking are :class:`receiver.delivery.worker.Worker`'s. A crash at any point loses
nothing: an unsent or unrecorded delivery keeps its row and is claimed again when its lease
expires (SPEC invariant 4).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime

from sqlalchemy import Connection, Engine

from receiver import metrics
from receiver.clock import utcnow
from receiver.delivery.operational import record_subscriber_disabled
from receiver.delivery.sender import Sender, SendResult
from receiver.delivery.urls import UnsafeUrl, check_subscriber_url
from receiver.domain.delivery import (
    RetryPolicy,
    health_after,
    next_step,
    signing_secrets,
)
from receiver.store.repositories import AttemptRecord, ClaimedDelivery, Repository
from receiver.store.uow import UnitOfWork

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finished:
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
class Step:
    """What one transaction of :meth:`Pipeline.step` did (for reporting after commit).

    ``recorded`` pairs each recorded attempt with its number and whether the lease was still
    held; ``next_due`` is the earliest due time of a pending delivery, read when the claim came
    back short (None otherwise, or when nothing is pending).
    """

    now: datetime
    recorded: list[tuple[Finished, int, bool]] = field(default_factory=list)
    claimed: list[ClaimedDelivery] = field(default_factory=list)
    next_due: datetime | None = None


@dataclass(eq=False)
class Pipeline:
    """Claims, sends and records deliveries for the worker named ``name``.

    :param sender: sends on any thread (:meth:`send` is thread-safe; the others are not).
    :param policy: the retry schedule (``DELIVERY_RETRY_SCHEDULE``).
    :param lease_seconds: how long a claim holds a delivery, seconds.
    :param allow_private: ``ALLOW_PRIVATE_URLS``.
    :param disable_after: seconds of only failures after which a subscriber is disabled.
    :param stopping: set when the worker stops: :meth:`send` then gives claims back unsent.
    :param rng: the jitter's randomness.
    """

    engine: Engine
    name: str
    _: KW_ONLY
    sender: Sender
    policy: RetryPolicy
    lease_seconds: float
    allow_private: bool
    disable_after: float
    stopping: threading.Event
    rng: random.Random
    #: A connection kept between steps (the worker's loop opens it); None: each step takes
    #: one from the pool.
    conn: Connection | None = field(default=None, init=False)

    def close(self) -> None:
        """Close the kept connection, if any."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def step(self, finished: Sequence[Finished], limit: int) -> Step:
        """One transaction: record ``finished`` (attempt rows, the deliveries' next steps, the
        subscribers' health), give back unsent claims, then claim up to ``limit`` due
        deliveries for the slots this frees.

        Nothing is reported here (see :meth:`report`): on an exception the transaction is
        rolled back and ``finished`` can be given again; a kept connection is dropped (it may
        be broken) and the next step opens a new one.

        :raises sqlalchemy.exc.SQLAlchemyError: when the database fails; nothing is kept.
        """
        step = Step(now=utcnow())
        if not finished and limit <= 0:
            return step
        now = step.now
        sent = [f for f in finished if f.result is not None]
        records = [self._attempt_record(f, now) for f in sent]
        if self.conn is None:
            with UnitOfWork(self.engine) as uow:  # outside run(): a connection of the pool
                kept = self._write(uow.repo, step, finished, records, limit)
                uow.commit()
        else:
            conn = self.conn
            try:
                with conn.begin():  # commits on leaving, rolls back on an exception
                    kept = self._write(Repository(conn), step, finished, records, limit)
            except Exception:
                self.conn = None  # it may be broken (a restart, a failover): open a new one
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
        step: Step,
        finished: Sequence[Finished],
        records: Sequence[AttemptRecord],
        limit: int,
    ) -> set[str]:
        """The statements of :meth:`step`, inside its transaction; returns the kept leases."""
        now = step.now
        unsent = [f.item.delivery.id for f in finished if f.unsent]
        if unsent:
            repo.release_leases(unsent, self.name, now)
        kept = repo.record_attempts(worker=self.name, now=now, records=records)
        self._record_health(repo, [f for f in finished if f.result is not None], now)
        if limit > 0:
            step.claimed, step.next_due = repo.claim(
                worker=self.name, now=now, lease_seconds=self.lease_seconds, limit=limit
            )
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

    def _attempt_record(self, finished: Finished, now: datetime) -> AttemptRecord:
        """The attempt row and the delivery's next step (success, retry time or dead letter)."""
        result = finished.result
        assert result is not None
        number = finished.item.delivery.attempts + 1
        after = next_step(self.policy, result, number, now, self.rng.random)
        return AttemptRecord(
            delivery_id=finished.item.delivery.id,
            number=number,
            started_at=finished.started,
            duration_ms=result.duration_ms,
            status_code=result.status_code,
            outcome=result.outcome,
            error=result.error,
            response_body=result.response_body,
            status=after.status,
            next_attempt_at=after.next_attempt_at,
            completed_at=after.completed_at,
        )

    def _record_health(self, repo: Repository, sent: Sequence[Finished], now: datetime) -> None:
        """Each subscriber's health after these attempts (:func:`~receiver.domain.delivery.
        health_after`), written once per subscriber, in subscriber id order (see the lock order
        in :mod:`receiver.store.repositories`); a ``subscriber.disabled`` event for each one
        just disabled."""
        by_sub: dict[str, list[SendResult]] = {}
        for f in sent:
            assert f.result is not None
            by_sub.setdefault(f.item.subscriber.id, []).append(f.result)
        failing = [sid for sid, results in by_sub.items() if not all(r.ok for r in results)]
        current = repo.live_subscribers(failing)
        # In subscriber id order, whatever order the attempts finished in: every worker locks
        # the subscriber rows it updates in the same order, so two workers never deadlock.
        for sid in sorted(by_sub):
            sub = current.get(sid)
            health = health_after(sub, by_sub[sid], now, self.disable_after)
            repo.set_subscriber_health(sid, health)
            if health.get("enabled") is False and sub is not None:  # just disabled: tell
                record_subscriber_disabled(repo, sub, health, now)

    def send(self, item: ClaimedDelivery) -> Finished:
        """Sign and POST one claimed delivery (no database); unsent when stopping."""
        started = utcnow()
        if self.stopping.is_set():
            return Finished(item, None, started, unsent=True)
        sub = item.subscriber
        if not self.allow_private:
            try:  # the scheme and literal-address rules, again (the URL may predate them)
                check_subscriber_url(sub.url, allow_private=False, resolve=False)
            except UnsafeUrl as exc:
                return Finished(item, SendResult("blocked", None, 0.0, str(exc)), started)
        secrets = signing_secrets(
            sub.secret, sub.previous_secret, sub.previous_secret_expires_at, started
        )
        result = self.sender.send(sub.url, item.event.id, item.event.payload, secrets, started)
        return Finished(item, result, started)

    def report(self, step: Step) -> int:
        """After commit: a warning per lost lease, then metrics and a log line per attempt.

        :returns: the number of attempts reported.
        """
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
        return len(step.recorded)


__all__ = ["Finished", "Pipeline", "Step"]
