"""Prometheus metrics: what an operator scrapes at ``GET /metrics`` (bearer ``ADMIN_TOKEN``).

Three kinds of numbers, each chosen so that it is right however many processes run, and
wherever they run:

* **The web's counters** (callbacks received: stored or refused) are counted in the web
  process. Several gunicorn workers add theirs up through prometheus_client's multiprocess
  mode: ``gunicorn.conf.py`` makes a fresh ``PROMETHEUS_MULTIPROC_DIR`` for its own workers
  when none is set, and a scrape adds up their files.
* **The worker's counters** (callbacks applied by outcome, task transitions, events; delivery
  attempts by outcome, the end-to-end latency histogram) are kept in the database: ``relay
  worker`` adds to the ``worker_metrics`` table in the very transaction that applies the
  callbacks (:func:`applier_increments`) or records the attempts (:func:`worker_increments`),
  and the web's
  ``/metrics`` reads it at scrape time (:class:`DatabaseCollector`). So one scrape of the web
  shows what every worker did, on another dyno or machine too, with no shared directory (on a
  PaaS the web is the only process that can be reached). They are monotonic: retention pruning
  of attempts never touches them. A worker also counts in its own process, served on
  ``WORKER_METRICS_PORT`` where a host can scrape it.
* **Gauges** (callbacks stored and not applied yet, the oldest one's age, those whose
  application failed; deliveries pending, the oldest one's age, disabled subscribers, tasks in
  flight) are read from the database at scrape time by :class:`DatabaseCollector` as well.

The metric objects are process-wide on purpose: in multiprocess mode each process's values
live in files named after its pid, so there must be exactly one object per metric per process.
They are made on first use, not at import (:func:`_metrics`): importing this module reads no
environment and writes no file.
Incrementing one is a lock and an addition (no I/O beyond a memory map), cheap enough for the
callback path.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
)
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from receiver.clock import utcnow
from receiver.domain.delivery import AttemptOutcome
from receiver.domain.events import TASK_EVENT_TYPES
from receiver.domain.tasks import LIVE_STATUSES, Outcome
from receiver.store.uow import UnitOfWork

log = logging.getLogger(__name__)

PREFIX = "runway_relay"

#: Callback outcomes once applied (``receiver.domain.tasks.Outcome``; ``queued`` is the web's
#: outcome of every accepted callback) and refusal reasons.
APPLIED_OUTCOMES = tuple(o.value for o in Outcome if o is not Outcome.QUEUED)
REFUSED_REASONS = (
    "request_entity_too_large",
    "invalid_body",
    "reply_ref_missing",
    "reply_ref_invalid",
    "reply_ref_expired",
    "invalid_task",
    "unknown_job",
    "task_id_mismatch",
)
#: Delivery attempt outcomes (``receiver.domain.delivery.AttemptOutcome``).
ATTEMPT_OUTCOMES: tuple[str, ...] = get_args(AttemptOutcome)
#: Seconds from callback received to subscriber 2xx: sub-second when all is well, minutes to
#: a day when a subscriber was down and retries carried the event.
LATENCY_BUCKETS = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    1800.0,
    7200.0,
    86400.0,
)
#: The task states counted as in flight.
LIVE_STATES = tuple(status.value for status in LIVE_STATUSES)

# ``*_created`` series (a timestamp per label set) only double the scrape; multiprocess mode
# has none either, so both modes expose the same names.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: The process's own metrics (what per-process mode exposes); filled on first use
#: (:func:`_metrics`).
REGISTRY = CollectorRegistry(auto_describe=True)

#: Names and help of the worker's families, which the web also serves from the database.
ATTEMPTS_NAME = f"{PREFIX}_delivery_attempts"
ATTEMPTS_HELP = "Delivery attempts made by relay worker, by outcome."
LATENCY_NAME = f"{PREFIX}_delivery_latency_seconds"
LATENCY_HELP = "End to end: from the callback that caused an event to a subscriber's 2xx for it."
APPLIED_NAME = f"{PREFIX}_callbacks_applied"
APPLIED_HELP = "Stored callbacks applied by relay worker, by outcome (what each did to its task)."
TRANSITIONS_NAME = f"{PREFIX}_task_transitions"
TRANSITIONS_HELP = "Task status changes applied from callbacks, by the state entered."
EVENTS_NAME = f"{PREFIX}_events_emitted"
EVENTS_HELP = "Task webhook events written to the outbox by callbacks, by type."


@dataclass(frozen=True)
class _Metrics:
    """The process-wide metric objects (one per metric per process: multiprocess mode keeps
    each process's values in files named after its pid)."""

    callbacks: Counter
    applied: Counter
    transitions: Counter
    events: Counter
    attempts: Counter
    latency: Histogram


_built: _Metrics | None = None
_build_lock = threading.Lock()


def _metrics() -> _Metrics:
    """The metric objects, made on first use (not at import) with every known label set at
    zero. In multiprocess mode, making one writes a file into ``PROMETHEUS_MULTIPROC_DIR``,
    so that directory is made first if missing (a PaaS config var may name it on every dyno,
    even where nothing made it)."""
    global _built
    if _built is not None:
        return _built
    with _build_lock:
        if _built is not None:
            return _built
        path = _multiprocess_dir_setting()
        if path:
            os.makedirs(path, exist_ok=True)
        built = _Metrics(
            callbacks=Counter(
                f"{PREFIX}_callbacks_received",
                "Vendor callbacks received, by result (accepted or refused) and outcome "
                "(queued: stored, to be applied; or why one was refused).",
                ["result", "outcome"],
                registry=REGISTRY,
            ),
            applied=Counter(APPLIED_NAME, APPLIED_HELP, ["outcome"], registry=REGISTRY),
            transitions=Counter(TRANSITIONS_NAME, TRANSITIONS_HELP, ["state"], registry=REGISTRY),
            events=Counter(EVENTS_NAME, EVENTS_HELP, ["type"], registry=REGISTRY),
            attempts=Counter(ATTEMPTS_NAME, ATTEMPTS_HELP, ["outcome"], registry=REGISTRY),
            latency=Histogram(
                LATENCY_NAME, LATENCY_HELP, buckets=LATENCY_BUCKETS, registry=REGISTRY
            ),
        )
        built.callbacks.labels("accepted", Outcome.QUEUED.value)
        for outcome in APPLIED_OUTCOMES:
            built.applied.labels(outcome)
        for reason in REFUSED_REASONS:
            built.callbacks.labels("refused", reason)
        for outcome in ATTEMPT_OUTCOMES:
            built.attempts.labels(outcome)
        for event_type in TASK_EVENT_TYPES:
            built.events.labels(event_type)
        _built = built
    return built


def callback_stored() -> None:
    """Count one accepted callback (stored, to be applied: outcome ``queued``)."""
    _metrics().callbacks.labels("accepted", Outcome.QUEUED.value).inc()


def callback_applied(outcome: str, new_status: str | None, event_types: Iterable[str]) -> None:
    """Count one applied callback (this process's own counters; the web shows every
    worker's from the database: :func:`applier_increments`), the status it moved its task to
    (if any), its events."""
    m = _metrics()
    m.applied.labels(outcome).inc()
    if new_status:
        m.transitions.labels(new_status).inc()
    for event_type in event_types:
        m.events.labels(event_type).inc()


def callback_refused(reason: str) -> None:
    """Count one refused callback by its reason code (``reply_ref_invalid``, …)."""
    _metrics().callbacks.labels("refused", reason).inc()


def delivery_attempted(outcome: str, latency_seconds: float | None = None) -> None:
    """Count one delivery attempt; on success, observe the end-to-end latency (seconds)."""
    m = _metrics()
    m.attempts.labels(outcome).inc()
    if latency_seconds is not None:
        m.latency.observe(max(0.0, latency_seconds))


#: ``worker_metrics`` rows (receiver/store/tables.py): attempts by outcome, the latency
#: histogram's bucket counts (by upper bound, not cumulative), its sum (seconds) and count.
ATTEMPTS_ROW = "attempts"
BUCKET_ROW = "latency_bucket"
SUM_ROW = "latency_sum"
COUNT_ROW = "latency_count"
#: ``worker_metrics`` rows of the applier: callbacks applied by outcome, transitions by the
#: state entered, events by type.
APPLIED_ROW = "callback_applied"
TRANSITION_ROW = "transition"
EVENT_ROW = "event"
_BUCKET_LABELS = [floatToGoString(b) for b in LATENCY_BUCKETS]  # type: ignore[no-untyped-call]
_BUCKET_LABELS.append("+Inf")


def worker_increments(
    attempts: Iterable[tuple[str, float | None]],
) -> dict[tuple[str, str], float]:
    """What ``attempts`` add to the ``worker_metrics`` table, ``(name, label)`` → amount.

    :param attempts: ``(outcome, latency)`` per recorded attempt; latency in seconds from the
        callback to the subscriber's 2xx, None for an attempt that did not succeed.
    """
    out: dict[tuple[str, str], float] = {}

    def add(key: tuple[str, str], amount: float) -> None:
        out[key] = out.get(key, 0.0) + amount

    for outcome, latency in attempts:
        add((ATTEMPTS_ROW, outcome), 1)
        if latency is None:
            continue
        latency = max(0.0, latency)
        index = next((i for i, b in enumerate(LATENCY_BUCKETS) if latency <= b), -1)
        add((BUCKET_ROW, _BUCKET_LABELS[index]), 1)
        add((SUM_ROW, ""), latency)
        add((COUNT_ROW, ""), 1)
    return out


def applier_increments(
    applied: Iterable[tuple[str, str | None, Iterable[str]]],
) -> dict[tuple[str, str], float]:
    """What applied callbacks add to the ``worker_metrics`` table, ``(name, label)`` → amount.

    :param applied: ``(outcome, new status or None, event types)`` per applied callback.
    """
    out: dict[tuple[str, str], float] = {}
    for outcome, new_status, event_types in applied:
        for key in (
            [(APPLIED_ROW, outcome)]
            + ([(TRANSITION_ROW, new_status)] if new_status else [])
            + [(EVENT_ROW, t) for t in event_types]
        ):
            out[key] = out.get(key, 0.0) + 1
    return out


def _labelled(
    rows: dict[tuple[str, str], float],
    row: str,
    family: CounterMetricFamily,
    known: Iterable[str],
) -> CounterMetricFamily:
    """``family`` with one sample per label of ``row`` (``known`` ones shown at zero)."""
    known = list(known)
    extra = sorted({label for name, label in rows if name == row} - set(known))
    for label in known + extra:
        family.add_metric([label], rows.get((row, label), 0.0))
    return family


def worker_families(rows: dict[tuple[str, str], float]) -> list[Metric]:
    """The worker's counters and histogram, from ``worker_metrics`` rows (every known label
    and bucket shown, zero when absent), under the names the worker's own registry uses."""
    applier: list[Metric] = [
        _labelled(
            rows,
            APPLIED_ROW,
            CounterMetricFamily(APPLIED_NAME, APPLIED_HELP, labels=["outcome"]),
            APPLIED_OUTCOMES,
        ),
        _labelled(
            rows,
            TRANSITION_ROW,
            CounterMetricFamily(TRANSITIONS_NAME, TRANSITIONS_HELP, labels=["state"]),
            (),
        ),
        _labelled(
            rows,
            EVENT_ROW,
            CounterMetricFamily(EVENTS_NAME, EVENTS_HELP, labels=["type"]),
            TASK_EVENT_TYPES,
        ),
    ]
    attempts = _labelled(
        rows,
        ATTEMPTS_ROW,
        CounterMetricFamily(ATTEMPTS_NAME, ATTEMPTS_HELP, labels=["outcome"]),
        ATTEMPT_OUTCOMES,
    )
    cumulative, buckets = 0.0, []
    for label in _BUCKET_LABELS:
        cumulative += rows.get((BUCKET_ROW, label), 0.0)
        buckets.append((label, cumulative))
    latency = HistogramMetricFamily(
        LATENCY_NAME,
        LATENCY_HELP,
        buckets=buckets,
        sum_value=rows.get((SUM_ROW, ""), 0.0),
    )
    return [*applier, attempts, latency]


# -- exposition -----------------------------------------------------------------------------


def multiprocess_dir() -> str | None:
    """The directory of prometheus_client's multiprocess mode, or None in per-process mode.

    This is the library's own variable, which it reads when it is first imported (before any
    :class:`~receiver.settings.Settings` exists); we read the same value so as to agree with it.
    """
    path = _multiprocess_dir_setting()
    return path if path and os.path.isdir(path) else None


def _multiprocess_dir_setting() -> str | None:
    """``PROMETHEUS_MULTIPROC_DIR`` as set, or None: the one read of it here, at call time."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class DatabaseCollector:
    """Gauges, and the delivery workers' counters, read from the database at scrape time
    (right across processes, machines and databases).

    ``runway_relay_database_up`` is 0 (and the other gauges absent) when the queries fail, so a
    scrape never turns into an error while the database is away.
    """

    def __init__(
        self, engine: Engine, now: datetime | None = None, *, worker_counters: bool = True
    ) -> None:
        self.engine = engine
        self.now = now
        self.worker_counters = worker_counters

    def collect(self) -> Iterator[Metric]:
        now = self.now or utcnow()
        up = GaugeMetricFamily(
            f"{PREFIX}_database_up", "1 when the scrape-time database queries succeeded."
        )
        try:
            with UnitOfWork(self.engine, read_only=True) as uow:
                queued, oldest_queued, failing = uow.repo.queued_stats()
                pending = uow.repo.count_pending_deliveries()
                oldest = uow.repo.oldest_pending_delivery()
                disabled = uow.repo.count_disabled_subscribers()
                live = uow.repo.count_live_jobs_by_status()
                worker = uow.repo.read_worker_metrics() if self.worker_counters else {}
        except SQLAlchemyError:
            log.warning("metrics: database queries failed")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        gauges: list[tuple[str, str, float]] = [
            (
                "callbacks_queued",
                "Callbacks stored and not applied yet (relay worker applies them).",
                queued,
            ),
            (
                "callback_oldest_queued_age_seconds",
                "Age of the oldest callback not applied yet, seconds (0 when none).",
                _age_seconds(now, oldest_queued),
            ),
            (
                "callbacks_failing",
                "Stored callbacks whose application failed at least once (kept, tried again).",
                failing,
            ),
            (
                "deliveries_pending",
                "Deliveries waiting for a first or next attempt (or in flight).",
                pending,
            ),
            (
                "delivery_oldest_pending_age_seconds",
                "Age of the oldest pending delivery, seconds (0 when none is pending).",
                _age_seconds(now, oldest),
            ),
            (
                "subscribers_disabled",
                "Subscribers disabled (by an operator, a 410 Gone, or failing too long).",
                disabled,
            ),
        ]
        for name, documentation, value in gauges:
            yield GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)
        tasks = GaugeMetricFamily(
            f"{PREFIX}_tasks_in_flight",
            "Tasks not finished yet, by state.",
            labels=["state"],
        )
        for state in LIVE_STATES:
            tasks.add_metric([state], live.get(state, 0))
        yield tasks
        if self.worker_counters:
            yield from worker_families(worker)


def _age_seconds(now: datetime, oldest: datetime | None) -> float:
    """Seconds from ``oldest`` to ``now`` (never below 0); 0.0 when there is no ``oldest``."""
    return max(0.0, (now - oldest).total_seconds()) if oldest else 0.0


class _Chain:
    """A collector that yields what each of ``sources`` (collectors or registries) collects,
    less the families named in ``skip``."""

    def __init__(
        self,
        *sources: CollectorRegistry | DatabaseCollector | _Chain,
        skip: frozenset[str] = frozenset(),
    ) -> None:
        self.sources = sources
        self.skip = skip

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            for family in source.collect():
                if family.name not in self.skip:
                    yield family


def process_registry() -> CollectorRegistry:
    """This process's counters and histogram, or every process's in multiprocess mode."""
    _metrics()  # this process's series exist (at zero) before any scrape
    path = multiprocess_dir()
    if path is None:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


#: Families the web serves from the database, never from process files (a worker sharing the
#: web's PROMETHEUS_MULTIPROC_DIR would otherwise show them twice).
_WORKER_FAMILIES = frozenset(
    {ATTEMPTS_NAME, LATENCY_NAME, APPLIED_NAME, TRANSITIONS_NAME, EVENTS_NAME}
)


def render(engine: Engine | None) -> bytes:
    """The text exposition.

    :param engine: the web's: its counters (this process or all of them) plus the database's
        gauges and worker counters. None (the worker's own endpoint): this process's counters.
    """
    registry = CollectorRegistry()
    if engine is None:
        registry.register(_Chain(process_registry()))
    else:
        own = _Chain(process_registry(), skip=_WORKER_FAMILIES)
        registry.register(_Chain(own, DatabaseCollector(engine)))
    return _generate_latest(registry)
