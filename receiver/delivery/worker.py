"""The worker behind ``relay worker``: threads, flow control and waking.

It runs both halves of the work that follows a callback: the applier thread
(:class:`receiver.ingest.applier.Applier`) applies stored callbacks as they arrive, which
writes events and deliveries (the outbox); the delivery loop below sends those.

Loop: claim due deliveries under a lease, send each on a thread pool, and record the attempts in
batches; what each of those steps does is :mod:`receiver.delivery.pipeline`'s. Delivery threads
only sign and POST; the loop (one thread) takes every finished result and records them in one
transaction that also claims due deliveries for the slots just freed. A crash at any point loses
nothing: an unsent or unrecorded delivery keeps its row and is claimed again when its lease
expires (SPEC invariant 4). Idle workers wake when new deliveries commit
(:mod:`receiver.store.wakeup`).
"""

from __future__ import annotations

import logging
import os
import queue
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from receiver.clock import utcnow
from receiver.delivery.pipeline import Finished, Pipeline, Step
from receiver.delivery.sender import Sender
from receiver.domain.delivery import RetryPolicy
from receiver.ingest.applier import Applier, apply_pending
from receiver.services.callbacks import ApplyOptions
from receiver.services.purge_schedule import start_scheduled
from receiver.store.repositories import ClaimedDelivery
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

    @property
    def apply_options(self) -> ApplyOptions:
        """How the applier applies stored callbacks (``ARTIFACT_STORE``: a succeeded task's
        video is copied first; ``ALLOW_PRIVATE_URLS``: http artifact URLs pass)."""
        return ApplyOptions(
            hold_succeeded=bool(self.artifact_store), allow_http_artifacts=self.allow_private
        )


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
        self._stop = threading.Event()
        self.pipeline = Pipeline(
            engine,
            self.name,
            sender=Sender(
                timeout=config.timeout,
                allow_private=config.allow_private,
                pool_size=max(2, config.concurrency),
            ),
            policy=RetryPolicy(config.retry_schedule),
            lease_seconds=config.lease_seconds,
            allow_private=config.allow_private,
            disable_after=config.disable_after,
            stopping=self._stop,
            rng=rng or random.Random(),
        )
        self._kick = Kick()
        self._finished: queue.SimpleQueue[Finished] = queue.SimpleQueue()
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
        applier = Applier(
            self.engine,
            self.config.apply_options,
            self._stop,
            applied=self._kick.set,  # new deliveries: the loop looks at once
            idle_poll=self.config.idle_poll,
        ).start()
        purger = start_scheduled(  # its own thread: batches between pauses
            self.engine,
            self.config.retention_days,
            self.config.purge_interval,
            self._stop,
            self.config.artifact_store,
            self.config.artifact_s3_endpoint_url,
        )
        waker = waker_for(self.engine, self._kick)
        pool = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="deliver")
        unrecorded: list[Finished] = []
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
                step: Step | None = None
                if unrecorded or limit > 0:
                    try:
                        if self.pipeline.conn is None:  # kept between steps
                            self.pipeline.conn = self.engine.connect()
                        step = self.pipeline.step(unrecorded, limit)
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
                    self.sent += self.pipeline.report(step)
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
            applier.stop()
            pool.shutdown(wait=True)
            applier.join(timeout=10)
            if purger is not None:
                purger.join(timeout=10)
            self.pipeline.close()
            waker.close()
            self._kick.close()
            log.info("worker stopped", extra={"worker": self.name, "sent": self.sent})

    def run_until_idle(self, max_rounds: int = 1000) -> int:
        """Apply every stored callback and deliver everything due now, on this thread;
        returns the number of attempts.

        Stored callbacks are applied first (:func:`receiver.ingest.applier.apply_pending`).
        Then each round claims up to ``config.concurrency`` deliveries, sends them one after the
        other, and records them in the transaction that claims the next round. For tests and
        one-shot use; ``max_rounds`` bounds the loop.
        """
        apply_pending(self.engine, self.config.apply_options)
        done = 0
        finished: list[Finished] = []
        rounds = 0
        while True:
            limit = self.config.concurrency if rounds < max_rounds else 0
            step = self.pipeline.step(finished, limit)
            self.sent += self.pipeline.report(step)
            if not step.claimed:
                return done
            rounds += 1
            finished = [self.pipeline.send(item) for item in step.claimed]
            done += sum(1 for f in finished if f.result is not None)

    def _gather(self, sending: int) -> list[Finished]:
        """Wait up to :data:`GATHER_SECONDS` for more of the ``sending`` attempts still running
        to finish, so that one transaction records them together (a transaction costs about
        as much as several fast attempts). Returns those that finished in time."""
        out: list[Finished] = []
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

    def _take_finished(self) -> list[Finished]:
        out: list[Finished] = []
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
        return self.pipeline.step([], limit).claimed

    def _deliver(self, item: ClaimedDelivery) -> None:
        """On a pool thread: send, queue the result for the loop, wake it."""
        try:
            finished = self.pipeline.send(item)
        except Exception:
            log.exception("delivery thread failed", extra={"delivery_id": item.delivery.id})
            finished = Finished(item, None, utcnow())
        self._finished.put(finished)
        self._kick.set()


__all__ = ["Worker", "WorkerConfig"]
