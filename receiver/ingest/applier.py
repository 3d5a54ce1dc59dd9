"""The ingest pipeline's second half: apply stored callbacks, in batches, right after they are
stored (SPEC invariant 3; issue 18).

The flow, top to bottom:

1. The web verifies a callback's replyRef, parses it and stores it, ``outcome = 'queued'``
   (:func:`receiver.services.callbacks.store_callback`); its commit sends a wake-up on
   :data:`receiver.store.wakeup.CALLBACKS_CHANNEL` (PostgreSQL) or changes the SQLite file.
2. The :class:`Applier` (a thread of ``relay worker``) wakes, and :func:`apply_batch` takes
   the oldest queued callbacks (up to :data:`BATCH_SIZE`) and applies them in ONE transaction,
   each job's in arrival order (jobs in id order: the lock order), under the applier's lock:
   each moves its task forward and writes its outcome, events and deliveries
   (:func:`receiver.services.callbacks.apply_callback`).
3. If one callback of the batch fails, the batch is rolled back and each callback is applied
   alone; one that fails alone stays queued, with its error, and is tried again after a
   backoff (:data:`RETRY_DELAYS`). No stored callback is dropped, not even to a bug of ours.
   A database that is away fails the batch and nothing else: the loop tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from receiver import metrics
from receiver.clock import utcnow
from receiver.domain.tasks import Outcome
from receiver.services.callbacks import (
    ApplyOptions,
    CallbackResult,
    StoredCallback,
    apply_callback,
    store_callback,
)
from receiver.store.locking import lock_applier
from receiver.store.repositories import QueuedCallback, Repository
from receiver.store.uow import UnitOfWork
from receiver.store.wakeup import CALLBACKS_CHANNEL, Kick, waker_for

log = logging.getLogger(__name__)

#: Most stored callbacks applied in one transaction.
BATCH_SIZE = 256
#: Seconds a callback whose application failed waits before the next try, by the number of
#: failures so far (the last one repeats): quick for a passing fault, slow for a bug.
RETRY_DELAYS = (1.0, 5.0, 30.0, 120.0, 600.0)
#: Seconds the applier waits before trying again when the database is away.
RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class Applied:
    """One stored callback applied: its row id and what it did."""

    callback_id: int
    result: CallbackResult


@dataclass
class BatchReport:
    """What one :func:`apply_batch` did: the callbacks ``applied`` (in order), the ids of those
    whose application failed and were held back (``deferred``), and whether the batch was full
    (more may be queued)."""

    applied: list[Applied] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)
    full: bool = False


def retry_delay(failures: int) -> float:
    """Seconds before the next try of a callback that failed ``failures`` times (≥ 1)."""
    return RETRY_DELAYS[min(max(failures, 1), len(RETRY_DELAYS)) - 1]


def _is_database_away(exc: BaseException) -> bool:
    """True for a lost connection or an unreachable database (try again later, blame no
    callback); False for anything a callback itself may cause."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def apply_batch(
    engine: Engine, options: ApplyOptions, *, limit: int = BATCH_SIZE, now: datetime | None = None
) -> BatchReport:
    """Apply the oldest queued callbacks (up to ``limit``) in one transaction.

    :param now: the time that decides whether a held-back callback may be tried again
        (default: the clock).
    :returns: what was applied and deferred.
    :raises sqlalchemy.exc.OperationalError: the database is away (nothing was applied).
    """
    report = BatchReport()
    with UnitOfWork(engine) as uow:
        lock_applier(uow.repo)
        queued = uow.repo.queued_callbacks(now or utcnow(), limit)
        report.full = len(queued) >= limit
        if not queued:
            return report
        # Each job's callbacks in arrival order, the jobs in id order: the order in which the
        # web's group commit takes its key-share locks on the same job rows (its pieces run in
        # job id order), so that the two never wait for each other in a cycle (PostgreSQL).
        queued.sort(key=lambda stored: (stored.job_id, stored.id))
        try:
            results = [_apply(uow.repo, stored, options) for stored in queued]
            _add_counts(uow.repo, results)
            uow.commit()
        except Exception as exc:
            if _is_database_away(exc):
                raise
            together_failed = exc
        else:
            report.applied = results
            _count(results)
            return report
    log.warning(
        "a batch of stored callbacks failed; applying them one at a time",
        extra={"callbacks": len(queued), "error": repr(together_failed)},
    )
    for stored in queued:
        _apply_alone(engine, stored, options, report)
    return report


def _apply(repo: Repository, stored: QueuedCallback, options: ApplyOptions) -> Applied:
    return Applied(stored.id, apply_callback(repo, stored, options))


def _apply_alone(
    engine: Engine, stored: QueuedCallback, options: ApplyOptions, report: BatchReport
) -> None:
    """Apply ``stored`` in a transaction of its own; if it fails, hold it back (it stays
    queued) with its error. Another applier may have applied it meanwhile: then nothing."""
    try:
        with UnitOfWork(engine) as uow:
            lock_applier(uow.repo)
            still = uow.repo.queued_callback(stored.id)
            if still is None:
                return
            applied = _apply(uow.repo, still, options)
            _add_counts(uow.repo, [applied])
            uow.commit()
        report.applied.append(applied)
        _count([applied])
        return
    except Exception as exc:
        if _is_database_away(exc):
            raise
        error = f"{type(exc).__name__}: {exc}"
    failures = stored.apply_attempts + 1
    delay = retry_delay(failures)
    log.error(
        "could not apply a stored callback; it stays queued and is tried again",
        extra={
            "callback_id": stored.id,
            "job_id": stored.job_id,
            "failures": failures,
            "retry_in_seconds": delay,
            "error": error,
        },
    )
    with UnitOfWork(engine) as uow:
        uow.repo.defer_callback(stored.id, error=error, after=utcnow() + timedelta(seconds=delay))
        uow.commit()
    report.deferred.append(stored.id)


def _add_counts(repo: Repository, applied: list[Applied]) -> None:
    """Add to the ``worker_metrics`` counters in the applying transaction (exact across
    processes; the web's ``/metrics`` reads them)."""
    repo.add_to_worker_metrics(
        metrics.applier_increments(
            (a.result.outcome.value, a.result.new_status, a.result.event_types) for a in applied
        )
    )


def _count(applied: list[Applied]) -> None:
    for item in applied:
        result = item.result
        metrics.callback_applied(result.outcome.value, result.new_status, result.event_types)
        log.info(
            "callback applied",
            extra={
                "callback_id": item.callback_id,
                "job_id": result.job_id,
                "outcome": result.outcome.value,
                "events": len(result.event_ids),
            },
        )


def apply_pending(engine: Engine, options: ApplyOptions, *, max_batches: int = 1000) -> BatchReport:
    """Apply every callback queued now (those held back after a failure excepted), batch
    after batch, on this thread. For one-shot use (``relay reconcile``, tests); ``max_batches``
    bounds the loop.

    :returns: everything applied and deferred, in order.
    :raises sqlalchemy.exc.OperationalError: the database is away.
    """
    total = BatchReport()
    for _ in range(max_batches):
        report = apply_batch(engine, options)
        total.applied.extend(report.applied)
        total.deferred.extend(report.deferred)
        if not report.full:
            break
    return total


def store_and_apply(
    engine: Engine, options: ApplyOptions, **stored: Any
) -> tuple[StoredCallback, CallbackResult | None]:
    """Store one callback (:func:`receiver.services.callbacks.store_callback`, keyword
    arguments ``stored``) and apply what is queued now, this callback included, on this
    thread: for one-shot callers that want the outcome at once (``relay reconcile``).

    :returns: the stored callback and what applying it did (when another applier applied it
        first: its outcome only, read from its row); None as the result when it was held back
        after a failure (it stays queued).
    :raises: what :func:`store_callback` raises; OperationalError: the database is away.
    """
    callback = store_callback(engine, **stored)
    for item in apply_pending(engine, options).applied:
        if item.callback_id == callback.callback_id:
            return callback, item.result
    with UnitOfWork(engine, read_only=True) as uow:
        outcome = uow.repo.callback_outcome(callback.callback_id)
    if outcome is None or outcome == Outcome.QUEUED.value:
        return callback, None
    return callback, CallbackResult(Outcome(outcome), callback.job_id, [])


class Applier:
    """A thread that applies stored callbacks as soon as they are stored, until stopped.

    It waits on its own waker (:data:`CALLBACKS_CHANNEL`), and at the latest ``idle_poll``
    seconds, so a lost wake-up costs latency, never a callback; callbacks held back after a
    failure are tried again on those polls once their time has come.

    :param engine: the database.
    :param options: how callbacks are applied.
    :param stopping: set when the worker stops; the thread then returns.
    :param applied: called after each batch that applied something (the worker uses it to
        wake its delivery loop at once).
    :param idle_poll: the longest wait between two looks at the table, seconds.
    """

    def __init__(
        self,
        engine: Engine,
        options: ApplyOptions,
        stopping: threading.Event,
        *,
        applied: Callable[[], None] | None = None,
        idle_poll: float = 1.0,
    ) -> None:
        self.engine = engine
        self.options = options
        self._stopping = stopping
        self._on_applied = applied
        self._idle_poll = idle_poll
        self.kick = Kick()
        self.batches = 0
        self._thread = threading.Thread(target=self._run, name="applier", daemon=True)

    def start(self) -> Applier:
        """Start the thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Wake the thread so that it sees ``stopping`` (the caller sets it)."""
        self.kick.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to return (after ``stopping`` was set), ``timeout`` seconds."""
        self._thread.join(timeout)
        self.kick.close()

    def _run(self) -> None:
        waker = waker_for(self.engine, self.kick, CALLBACKS_CHANNEL)
        try:
            while not self._stopping.is_set():
                self.kick.clear()
                try:
                    report = apply_batch(self.engine, self.options)
                except Exception:
                    log.exception("applying stored callbacks failed; retrying shortly")
                    self._stopping.wait(RETRY_SECONDS)
                    continue
                self.batches += 1
                if report.applied and self._on_applied is not None:
                    self._on_applied()
                if report.full:
                    continue
                waker.wait(self._idle_poll)
        finally:
            waker.close()


__all__ = [
    "BATCH_SIZE",
    "RETRY_DELAYS",
    "Applied",
    "Applier",
    "BatchReport",
    "apply_batch",
    "apply_pending",
    "retry_delay",
    "store_and_apply",
]
