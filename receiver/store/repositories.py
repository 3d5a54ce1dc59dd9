"""The only place that writes SQL. Every method runs on the unit of work's connection.

Rows come back as frozen dataclasses (:class:`Job`, :class:`Subscriber`, :class:`Delivery`, …),
never as dicts, so that what travels further is typed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    delete,
    func,
    insert,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from receiver.ids import new_id
from receiver.store.tables import (
    UTCDateTime,
    attempts,
    callbacks,
    deliveries,
    events,
    jobs,
    refused_callbacks,
    sessions,
    subscribers,
    worker_metrics,
)

T = TypeVar("T")


def _from_row(cls: type[T], row: Any) -> T:
    mapping = row._mapping
    return cls(**{f.name: mapping[f.name] for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Job:
    """One submission of ours and the state of its vendor task (table ``jobs``)."""

    id: str
    model: str
    request: dict[str, Any]
    metadata: dict[str, Any]
    status: str
    task_id: str | None
    progress: float | None
    progress_text: str | None
    artifacts: list[dict[str, Any]]
    error: dict[str, Any] | None
    submit_error: dict[str, Any] | None
    sequence: int
    created_at: datetime
    updated_at: datetime
    last_callback_at: datetime | None
    finished_at: datetime | None


#: The columns a :class:`Job` is made of (not ``vendor_task``, the last task object as
#: received, which only the dashboard's job page reads): selecting only these spares decoding
#: that JSON on every read.
_JOB_COLUMNS = tuple(jobs.c[f.name] for f in fields(Job))
#: Prebuilt: one statement object, its compiled form cached, the id a bound parameter.
_GET_JOB = select(*_JOB_COLUMNS).where(jobs.c.id == bindparam("job_id"))
_GET_JOB_FOR_UPDATE = _GET_JOB.with_for_update()
_UPDATE_JOB = update(jobs).where(jobs.c.id == bindparam("job_id_"))
#: The job update of a callback whose job was read before the transaction: only if unchanged.
_UPDATE_JOB_IF_UNCHANGED = _UPDATE_JOB.where(
    jobs.c.status == bindparam("status_"), jobs.c.sequence == bindparam("sequence_")
)
_UPDATE_JOB_IF_UNBOUND = _UPDATE_JOB_IF_UNCHANGED.where(jobs.c.task_id.is_(None))
_UPDATE_JOB_IF_BOUND = _UPDATE_JOB_IF_UNCHANGED.where(jobs.c.task_id == bindparam("task_id_"))
_INSERT_CALLBACK = insert(callbacks)
_INSERT_EVENT = insert(events)
_INSERT_DELIVERY = insert(deliveries)
#: The enabled subscribers' routing (id and event types), in id order.
_SUBSCRIBER_ROUTES = (
    select(subscribers.c.id, subscribers.c.event_types)
    .where(subscribers.c.deleted_at.is_(None), subscribers.c.enabled.is_(True))
    .order_by(subscribers.c.id)
)


@dataclass(frozen=True)
class Event:
    """One outbox event; ``id`` is the ``webhook-id``, ``payload`` the exact body (str);
    ``job_id`` is None for an operational event (``subscriber.disabled``)."""

    id: str
    job_id: str | None
    type: str
    sequence: int
    payload: str
    created_at: datetime


@dataclass(frozen=True)
class Subscriber:
    """A webhook endpoint (table ``subscribers``); ``secret`` is ``whsec_…`` (kept out of
    ``repr``, like ``previous_secret``, so that a log line or a traceback shows neither)."""

    id: str
    url: str
    description: str | None
    event_types: list[str]
    secret: str = field(repr=False)
    previous_secret: str | None = field(repr=False)
    previous_secret_expires_at: datetime | None
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    max_in_flight: int
    failing_since: datetime | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None
    created_at: datetime
    deleted_at: datetime | None


@dataclass(frozen=True)
class Delivery:
    """One (event, subscriber) pair and where its delivery stands.

    ``status`` is ``pending`` (waiting or leased), ``succeeded``, ``failed`` (the dead letter:
    retries exhausted, or the subscriber answered 410) or ``cancelled`` (subscriber removed).
    """

    id: str
    event_id: str
    subscriber_id: str
    status: str
    attempts: int
    next_attempt_at: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None

    @classmethod
    def new_pending(cls, event_id: str, subscriber_id: str, now: datetime) -> Delivery:
        """A new ``pending`` delivery of ``event_id`` to ``subscriber_id``, due at ``now``."""
        return cls(
            id=new_id("dlv"),
            event_id=event_id,
            subscriber_id=subscriber_id,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            lease_owner=None,
            lease_expires_at=None,
            last_status_code=None,
            last_error=None,
            created_at=now,
            updated_at=now,
            completed_at=None,
        )


@dataclass(frozen=True)
class Attempt:
    """One HTTP attempt of a delivery; ``duration_ms`` in milliseconds."""

    id: int
    delivery_id: str
    number: int
    started_at: datetime
    duration_ms: float
    status_code: int | None
    outcome: str
    error: str | None
    response_body: str | None
    worker: str | None


@dataclass(frozen=True)
class CallbackRecord:
    """One accepted callback as received (``body`` keeps unknown vendor fields; None for a
    callback that changed nothing, whose hash and metadata only are kept). ``unsafe_urls``:
    how many artifact or preview URLs were dropped as unsafe (None: none)."""

    id: int
    job_id: str
    received_at: datetime
    status: str | None
    progress: float | None
    outcome: str
    body: dict[str, Any] | None
    body_sha256: str
    source_ip: str | None
    unsafe_urls: int | None


@dataclass(frozen=True)
class RefusedCallback:
    """A refused callback: why, from where, and a SHA-256 of its body (never the body)."""

    id: int
    received_at: datetime
    reason: str
    detail: str | None
    http_status: int
    source_ip: str | None
    body_sha256: str | None
    body_size: int
    job_id: str | None


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery leased to a worker, with what is needed to send it."""

    delivery: Delivery
    event: Event
    subscriber: Subscriber


@dataclass(frozen=True)
class AttemptRecord:
    """One finished attempt and its delivery's next step, for :meth:`Repository.record_attempts`.

    ``number`` counts attempts from 1 (it becomes the delivery's ``attempts``); ``duration_ms``
    in milliseconds. ``status`` is the delivery's next status: ``pending`` to try again at
    ``next_attempt_at``, or final (``succeeded``, ``failed``) with ``completed_at`` set. A None
    ``next_attempt_at`` or ``completed_at`` leaves the column as it is.
    """

    delivery_id: str
    number: int
    started_at: datetime
    duration_ms: float
    status_code: int | None
    outcome: str
    error: str | None
    response_body: str | None
    status: str
    next_attempt_at: datetime | None
    completed_at: datetime | None


# Prebuilt statements of the delivery worker's hot path: compiled once, run with parameters.
#
# Lock order. Several workers write in parallel on PostgreSQL, so every transaction of a worker
# takes its row locks in one order, or two of them can wait on each other (a deadlock costs a
# second of ``deadlock_timeout`` and a retried transaction): deliveries first, in id order
# (attempt rows are inserted and kept leases locked and finished sorted by delivery id; leases
# given back are locked in id order too), then subscribers, in id order (the worker's health
# updates), then the claim, whose ``FOR UPDATE SKIP LOCKED`` never waits for a lock at all.
_busy = deliveries.alias("busy")
_NOW = bindparam("now_", type_=UTCDateTime())
_ROOMS = select(
    subscribers.c.id,
    subscribers.c.max_in_flight
    - select(func.count())
    .select_from(_busy)
    .where(
        _busy.c.subscriber_id == subscribers.c.id,
        _busy.c.status == "pending",
        _busy.c.lease_expires_at > _NOW,
    )
    .correlate(subscribers)
    .scalar_subquery(),
).where(subscribers.c.enabled.is_(True), subscribers.c.deleted_at.is_(None))
_DUE = (
    select(deliveries.c.id, deliveries.c.subscriber_id)
    .where(
        deliveries.c.subscriber_id.in_(bindparam("subs_", expanding=True)),
        deliveries.c.status == "pending",
        deliveries.c.next_attempt_at <= _NOW,
        or_(deliveries.c.lease_expires_at.is_(None), deliveries.c.lease_expires_at <= _NOW),
    )
    .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
)
_LEASE = (
    update(deliveries)
    .where(deliveries.c.id.in_(bindparam("ids_", expanding=True)))
    .values(
        lease_owner=bindparam("worker_"),
        lease_expires_at=bindparam("expires_", type_=UTCDateTime()),
        updated_at=_NOW,
    )
)
_KEPT = (
    select(deliveries.c.id)
    .where(
        deliveries.c.id.in_(bindparam("ids_", expanding=True)),
        deliveries.c.lease_owner == bindparam("worker_"),
        deliveries.c.status == "pending",
    )
    .order_by(deliveries.c.id)
)
_HELD = (
    select(deliveries.c.id)
    .where(
        deliveries.c.id.in_(bindparam("ids_", expanding=True)),
        deliveries.c.lease_owner == bindparam("worker_"),
    )
    .order_by(deliveries.c.id)
)
_ADD_ATTEMPT = insert(attempts)
_FINISH = (
    update(deliveries)
    .where(
        deliveries.c.id == bindparam("id_"),
        deliveries.c.lease_owner == bindparam("worker_"),
        deliveries.c.status == "pending",
    )
    .values(
        lease_owner=None,
        lease_expires_at=None,
        status=bindparam("status_"),
        attempts=bindparam("attempts_"),
        last_status_code=bindparam("status_code_"),
        last_error=bindparam("error_"),
        updated_at=_NOW,
        next_attempt_at=func.coalesce(
            bindparam("next_attempt_at_", type_=UTCDateTime()), deliveries.c.next_attempt_at
        ),
        completed_at=func.coalesce(
            bindparam("completed_at_", type_=UTCDateTime()), deliveries.c.completed_at
        ),
    )
)
_RELEASE = (
    update(deliveries)
    .where(
        deliveries.c.id.in_(bindparam("ids_", expanding=True)),
        deliveries.c.lease_owner == bindparam("worker_"),
    )
    .values(lease_owner=None, lease_expires_at=None, updated_at=_NOW)
)
_LIVE_SUBSCRIBERS = select(subscribers).where(
    subscribers.c.id.in_(bindparam("ids_", expanding=True)), subscribers.c.deleted_at.is_(None)
)
_SET_HEALTH = update(subscribers).where(
    subscribers.c.id == bindparam("subscriber_id_"), subscribers.c.deleted_at.is_(None)
)


class Repository:
    """Queries over one connection (see :class:`receiver.store.uow.UnitOfWork`)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._routes: list[tuple[str, list[str]]] | None = None
        self._notified = False

    @property
    def dialect(self) -> str:
        return self.conn.dialect.name

    # -- jobs -------------------------------------------------------------------------------

    def add_job(self, job: Job) -> None:
        self.conn.execute(insert(jobs), _as_values(job))

    def get_job(self, job_id: str, *, for_update: bool = False) -> Job | None:
        """The job, or None. ``for_update`` locks its row until commit (PostgreSQL; SQLite's
        ``BEGIN IMMEDIATE`` already serialises writers)."""
        stmt = _GET_JOB_FOR_UPDATE if for_update else _GET_JOB
        row = self.conn.execute(stmt, {"job_id": job_id}).first()
        return _from_row(Job, row) if row else None

    def find_job_by_task_id(self, task_id: str) -> Job | None:
        row = self.conn.execute(select(*_JOB_COLUMNS).where(jobs.c.task_id == task_id)).first()
        return _from_row(Job, row) if row else None

    def update_job(self, job_id: str, **values: Any) -> None:
        # Values travel as parameters of a prebuilt statement, not as literals of a new one.
        self.conn.execute(_UPDATE_JOB, {"job_id_": job_id, **values})

    def update_job_if_unchanged(
        self,
        job_id: str,
        *,
        expect_status: str,
        expect_sequence: int,
        expect_task_id: str | None,
        **values: Any,
    ) -> bool:
        """Update the job only if its ``status``, ``sequence`` and ``task_id`` are still the
        expected ones (read before this transaction began: optimistic concurrency).

        :returns: False, writing nothing, when the job changed meanwhile (or is gone).
        """
        params = {
            "job_id_": job_id,
            "status_": expect_status,
            "sequence_": expect_sequence,
            **values,
        }
        if expect_task_id is None:
            stmt = _UPDATE_JOB_IF_UNBOUND
        else:
            stmt = _UPDATE_JOB_IF_BOUND
            params["task_id_"] = expect_task_id
        result = self.conn.execute(stmt, params)
        return result.rowcount == 1

    def mark_submitted(self, job_id: str, task_id: str, now: datetime) -> None:
        """Bind the vendor taskId and move SUBMITTING to PENDING, never backwards: a callback may
        have arrived (and moved the job on) before the create's answer did."""
        self.conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.task_id.is_(None))
            .values(task_id=task_id, updated_at=now)
        )
        self.conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status == "SUBMITTING")
            .values(status="PENDING", updated_at=now)
        )

    def list_jobs(
        self,
        *,
        status: str | None = None,
        model: str | None = None,
        since: datetime | None = None,
        before_id: str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Jobs, newest first; ``before_id`` pages backwards."""
        stmt = select(*_JOB_COLUMNS).order_by(jobs.c.id.desc()).limit(limit)
        if status:
            stmt = stmt.where(jobs.c.status == status)
        if model:
            stmt = stmt.where(jobs.c.model == model)
        if since:
            stmt = stmt.where(jobs.c.created_at >= since)
        if before_id:
            stmt = stmt.where(jobs.c.id < before_id)
        return [_from_row(Job, r) for r in self.conn.execute(stmt)]

    def jobs_without_recent_callback(self, older_than: datetime, limit: int = 500) -> list[Job]:
        """Live jobs (submitted, not terminal) whose last sign of life is older than the cutoff."""
        live = ("SUBMITTING", "PENDING", "THROTTLED", "RUNNING")
        last_seen = func.coalesce(jobs.c.last_callback_at, jobs.c.created_at)
        stmt = (
            select(*_JOB_COLUMNS)
            .where(jobs.c.status.in_(live), last_seen < older_than)
            .order_by(jobs.c.created_at)
            .limit(limit)
        )
        return [_from_row(Job, r) for r in self.conn.execute(stmt)]

    def count_jobs_by_status(self) -> dict[str, int]:
        rows = self.conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status))
        return {status: count for status, count in rows}

    # -- callbacks --------------------------------------------------------------------------

    def add_callback(
        self,
        *,
        job_id: str,
        received_at: datetime,
        status: str | None,
        progress: float | None,
        outcome: str,
        body: dict[str, Any] | None,
        body_sha256: str,
        source_ip: str | None,
        unsafe_urls: int | None = None,
    ) -> None:
        """Record one accepted callback; ``body`` None keeps its hash and metadata only."""
        self.conn.execute(
            _INSERT_CALLBACK,
            {
                "job_id": job_id,
                "received_at": received_at,
                "status": status,
                "progress": progress,
                "outcome": outcome,
                "body": null() if body is None else body,
                "body_sha256": body_sha256,
                "source_ip": source_ip,
                "unsafe_urls": unsafe_urls or None,
            },
        )

    def count_callbacks(self, job_id: str) -> int:
        """How many callbacks are stored for ``job_id``."""
        stmt = select(func.count()).select_from(callbacks).where(callbacks.c.job_id == job_id)
        return int(self.conn.execute(stmt).scalar_one())

    def list_callbacks(self, job_id: str) -> list[CallbackRecord]:
        stmt = select(callbacks).where(callbacks.c.job_id == job_id).order_by(callbacks.c.id)
        return [_from_row(CallbackRecord, r) for r in self.conn.execute(stmt)]

    # -- dashboard sessions --------------------------------------------------------------

    def add_session(self, id_sha256: str, created_at: datetime, expires_at: datetime) -> None:
        """Record a signed-in dashboard session (by the SHA-256 hex of its random id) and
        forget the ones that have expired."""
        self.conn.execute(delete(sessions).where(sessions.c.expires_at <= created_at))
        self.conn.execute(
            insert(sessions).values(
                id_sha256=id_sha256, created_at=created_at, expires_at=expires_at
            )
        )

    def session_alive(self, id_sha256: str, now: datetime) -> bool:
        """Whether the session exists (not signed out) and has not expired at ``now``."""
        stmt = select(sessions.c.expires_at).where(sessions.c.id_sha256 == id_sha256)
        expires_at = self.conn.execute(stmt).scalar_one_or_none()
        return expires_at is not None and expires_at > now

    def end_session(self, id_sha256: str) -> None:
        """Sign a session out: its cookie is refused from now on."""
        self.conn.execute(delete(sessions).where(sessions.c.id_sha256 == id_sha256))

    def add_refused(
        self,
        *,
        received_at: datetime,
        reason: str,
        detail: str | None,
        http_status: int,
        source_ip: str | None,
        body_sha256: str | None,
        body_size: int,
        job_id: str | None,
        keep: int,
    ) -> None:
        """Record a refused callback and trim the log to its newest ``keep`` rows."""
        result = self.conn.execute(
            insert(refused_callbacks).values(
                received_at=received_at,
                reason=reason,
                detail=(detail or "")[:500] or None,
                http_status=http_status,
                source_ip=source_ip,
                body_sha256=body_sha256,
                body_size=body_size,
                job_id=job_id,
            )
        )
        new_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
        if new_id is not None and new_id > keep:
            self.conn.execute(
                delete(refused_callbacks).where(refused_callbacks.c.id <= new_id - keep)
            )

    def list_refused(
        self, *, limit: int = 100, before_id: int | None = None
    ) -> list[RefusedCallback]:
        stmt = select(refused_callbacks).order_by(refused_callbacks.c.id.desc()).limit(limit)
        if before_id is not None:
            stmt = stmt.where(refused_callbacks.c.id < before_id)
        return [_from_row(RefusedCallback, r) for r in self.conn.execute(stmt)]

    def count_refused_since(self, since: datetime) -> dict[str, int]:
        rows = self.conn.execute(
            select(refused_callbacks.c.reason, func.count())
            .where(refused_callbacks.c.received_at >= since)
            .group_by(refused_callbacks.c.reason)
        )
        return {reason: count for reason, count in rows}

    def count_callbacks_since(self, since: datetime) -> int:
        return int(
            self.conn.execute(
                select(func.count()).select_from(callbacks).where(callbacks.c.received_at >= since)
            ).scalar_one()
        )

    # -- events and deliveries ---------------------------------------------------------------

    def add_events(self, rows: Sequence[Event]) -> None:
        """Insert several events in one statement (executemany)."""
        if rows:
            self.conn.execute(_INSERT_EVENT, [_as_values(e) for e in rows])

    def get_event(self, event_id: str) -> Event | None:
        row = self.conn.execute(select(events).where(events.c.id == event_id)).first()
        return _from_row(Event, row) if row else None

    def list_events(self, job_id: str) -> list[Event]:
        stmt = select(events).where(events.c.job_id == job_id).order_by(events.c.sequence)
        return [_from_row(Event, r) for r in self.conn.execute(stmt)]

    def add_deliveries(self, rows: Sequence[Delivery]) -> None:
        if rows:
            self.conn.execute(_INSERT_DELIVERY, [_as_values(d) for d in rows])

    def notify_deliveries(self) -> None:
        """Wake idle PostgreSQL workers when this transaction commits (LISTEN/NOTIFY)."""
        if self.dialect == "postgresql" and not self._notified:
            # Once per transaction is enough (PostgreSQL folds identical notifications anyway).
            self.conn.execute(text("SELECT pg_notify('relay_deliveries', '')"))
            self._notified = True

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        row = self.conn.execute(select(deliveries).where(deliveries.c.id == delivery_id)).first()
        return _from_row(Delivery, row) if row else None

    def list_deliveries(
        self,
        *,
        status: str | None = None,
        subscriber_id: str | None = None,
        event_id: str | None = None,
        job_id: str | None = None,
        before_id: str | None = None,
        limit: int = 50,
    ) -> list[Delivery]:
        """Deliveries, newest first; ``before_id`` pages backwards."""
        stmt = select(deliveries).order_by(deliveries.c.id.desc()).limit(limit)
        if status:
            stmt = stmt.where(deliveries.c.status == status)
        if subscriber_id:
            stmt = stmt.where(deliveries.c.subscriber_id == subscriber_id)
        if event_id:
            stmt = stmt.where(deliveries.c.event_id == event_id)
        if job_id:
            stmt = stmt.where(
                deliveries.c.event_id.in_(select(events.c.id).where(events.c.job_id == job_id))
            )
        if before_id:
            stmt = stmt.where(deliveries.c.id < before_id)
        return [_from_row(Delivery, r) for r in self.conn.execute(stmt)]

    def count_deliveries_by_status(self) -> dict[str, int]:
        rows = self.conn.execute(
            select(deliveries.c.status, func.count()).group_by(deliveries.c.status)
        )
        return {status: count for status, count in rows}

    def oldest_pending_delivery(self) -> datetime | None:
        value: datetime | None = self.conn.execute(
            select(func.min(deliveries.c.created_at)).where(deliveries.c.status == "pending")
        ).scalar_one_or_none()
        if value is not None and value.tzinfo is None:  # aggregates bypass the column type
            value = value.replace(tzinfo=UTC)
        return value

    def next_due_at(self) -> datetime | None:
        """The earliest ``next_attempt_at`` of a pending delivery (for the worker's sleep)."""
        stmt = select(deliveries.c.next_attempt_at).where(deliveries.c.status == "pending")
        stmt = stmt.order_by(deliveries.c.next_attempt_at).limit(1)
        row = self.conn.execute(stmt).first()
        return row[0] if row else None

    def claim_due(
        self, *, worker: str, now: datetime, lease_seconds: float, limit: int
    ) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` due deliveries to ``worker`` until ``now + lease_seconds``.

        A delivery is due when pending, its ``next_attempt_at`` has come, no live lease holds it,
        and its subscriber is enabled and below its ``max_in_flight`` cap (live leases count as
        in flight). The room under each cap is read first, so a subscriber at its cap costs one
        count, not a scan of its backlog, and nothing at all is read further when no subscriber
        has room. PostgreSQL locks the candidates ``FOR UPDATE SKIP LOCKED``, so concurrent
        workers take disjoint sets; SQLite's ``BEGIN IMMEDIATE`` makes the whole claim one
        writer at a time.

        :param now: aware UTC time of the claim.
        :param lease_seconds: how long the lease lasts, seconds.
        :returns: the leased deliveries with their events and subscribers, oldest due first
            (empty when ``limit`` is 0 or less).
        """
        if limit <= 0:
            return []
        rooms = {sid: room for sid, room in self.conn.execute(_ROOMS, {"now_": now}) if room > 0}
        if not rooms:
            return []
        # Over-fetch: a subscriber's candidates beyond its room are skipped below.
        stmt = _DUE.limit(max(limit * 4, 50))
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update(of=deliveries, skip_locked=True)
        params = {"subs_": list(rooms), "now_": now}
        chosen: list[str] = []
        for delivery_id, subscriber_id in self.conn.execute(stmt, params):
            if rooms[subscriber_id] <= 0:
                continue
            rooms[subscriber_id] -= 1
            chosen.append(delivery_id)
            if len(chosen) >= limit:
                break
        if not chosen:
            return []
        expires = now + timedelta(seconds=lease_seconds)
        self.conn.execute(
            _LEASE, {"ids_": chosen, "worker_": worker, "expires_": expires, "now_": now}
        )
        return self._load_claimed(chosen)

    def _load_claimed(self, ids: Sequence[str]) -> list[ClaimedDelivery]:
        d, e, s = deliveries, events, subscribers
        stmt = (
            select(d, e, s)
            .join(e, e.c.id == d.c.event_id)
            .join(s, s.c.id == d.c.subscriber_id)
            .where(d.c.id.in_(ids))
            .order_by(d.c.next_attempt_at)
        )
        out: list[ClaimedDelivery] = []
        for row in self.conn.execute(stmt):
            values = list(row)
            nd = len(d.columns)
            ne = len(e.columns)
            dmap = dict(zip(d.columns.keys(), values[:nd], strict=True))
            emap = dict(zip(e.columns.keys(), values[nd : nd + ne], strict=True))
            smap = dict(zip(s.columns.keys(), values[nd + ne :], strict=True))
            out.append(
                ClaimedDelivery(
                    delivery=Delivery(**dmap),
                    event=Event(**emap),
                    subscriber=Subscriber(**smap),
                )
            )
        return out

    def record_attempts(
        self, *, worker: str, now: datetime, records: Sequence[AttemptRecord]
    ) -> set[str]:
        """Write a batch of finished attempts: every attempt row (one multi-row insert), then
        each delivery's next step where ``worker`` still holds its lease (one executemany).

        An attempt whose lease was lost (it expired and another worker took the delivery, or
        the delivery was cancelled) keeps its attempt row but leaves the delivery untouched.
        PostgreSQL locks the deliveries still held until commit, so none is taken in between;
        every row is written and locked in delivery id order (the lock order above).

        :param now: aware UTC time of the recording (the deliveries' ``updated_at``).
        :returns: the ids of the deliveries whose lease was still held (and so were updated).
        """
        if not records:
            return set()
        records = sorted(records, key=lambda r: (r.delivery_id, r.number))  # the lock order
        self.conn.execute(
            _ADD_ATTEMPT,
            [
                {
                    "delivery_id": r.delivery_id,
                    "number": r.number,
                    "started_at": r.started_at,
                    "duration_ms": r.duration_ms,
                    "status_code": r.status_code,
                    "outcome": r.outcome,
                    "error": r.error,
                    "response_body": r.response_body,
                    "worker": worker,
                }
                for r in records
            ],
        )
        stmt = _KEPT
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        ids = list(dict.fromkeys(r.delivery_id for r in records))
        kept = set(self.conn.execute(stmt, {"ids_": ids, "worker_": worker}).scalars())
        rows = [
            {
                "id_": r.delivery_id,
                "worker_": worker,
                "now_": now,
                "status_": r.status,
                "attempts_": r.number,
                "status_code_": r.status_code,
                "error_": r.error,
                "next_attempt_at_": r.next_attempt_at,
                "completed_at_": r.completed_at,
            }
            for r in records
            if r.delivery_id in kept
        ]
        if rows:
            self.conn.execute(_FINISH, rows)
        return kept

    def release_leases(self, delivery_ids: Sequence[str], worker: str, now: datetime) -> int:
        """Give claimed but unsent deliveries back (SIGTERM before they were sent); only those
        whose lease ``worker`` still holds.

        :returns: how many leases were given back.
        """
        if not delivery_ids:
            return 0
        ids = sorted(set(delivery_ids))
        if self.dialect == "postgresql":  # lock them in id order first (the lock order)
            self.conn.execute(_HELD.with_for_update(), {"ids_": ids, "worker_": worker})
        result = self.conn.execute(_RELEASE, {"ids_": ids, "worker_": worker, "now_": now})
        return int(result.rowcount)

    def list_attempts(self, delivery_id: str) -> list[Attempt]:
        stmt = select(attempts).where(attempts.c.delivery_id == delivery_id).order_by(attempts.c.id)
        return [_from_row(Attempt, r) for r in self.conn.execute(stmt)]

    def requeue_delivery(self, delivery_id: str, now: datetime) -> bool:
        """Put a finished delivery (failed, succeeded or cancelled) back to pending, due now.

        Its attempt count restarts so that the whole retry schedule applies again.
        :returns: False when no such delivery exists or it is pending already.
        """
        result = self.conn.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery_id, deliveries.c.status != "pending")
            .values(
                status="pending",
                attempts=0,
                next_attempt_at=now,
                lease_owner=None,
                lease_expires_at=None,
                completed_at=None,
                updated_at=now,
            )
        )
        return result.rowcount == 1

    def requeue_failed_since(
        self, since: datetime, now: datetime, subscriber_id: str | None = None
    ) -> int:
        """Put every failed delivery whose failure came at or after ``since`` back to pending.

        :returns: how many were requeued.
        """
        cond = and_(deliveries.c.status == "failed", deliveries.c.completed_at >= since)
        if subscriber_id:
            cond = and_(cond, deliveries.c.subscriber_id == subscriber_id)
        result = self.conn.execute(
            update(deliveries)
            .where(cond)
            .values(
                status="pending",
                attempts=0,
                next_attempt_at=now,
                lease_owner=None,
                lease_expires_at=None,
                completed_at=None,
                updated_at=now,
            )
        )
        return int(result.rowcount)

    def cancel_pending_for(self, subscriber_id: str, now: datetime) -> int:
        result = self.conn.execute(
            update(deliveries)
            .where(deliveries.c.subscriber_id == subscriber_id, deliveries.c.status == "pending")
            .values(status="cancelled", completed_at=now, updated_at=now, lease_owner=None)
        )
        return int(result.rowcount)

    # -- subscribers --------------------------------------------------------------------------

    def add_subscriber(self, sub: Subscriber) -> None:
        self._routes = None
        self.conn.execute(insert(subscribers).values(**_as_values(sub)))

    def get_subscriber(self, subscriber_id: str) -> Subscriber | None:
        row = self.conn.execute(
            select(subscribers).where(
                subscribers.c.id == subscriber_id, subscribers.c.deleted_at.is_(None)
            )
        ).first()
        return _from_row(Subscriber, row) if row else None

    def subscriber_routes(self) -> list[tuple[str, list[str]]]:
        """``[(subscriber id, event types)]`` of the enabled subscribers, in id order: what a
        new event needs to know to make its deliveries. Read once per repository (that is, per
        transaction) and then remembered, so a batch of callbacks in one transaction reads it
        once; writing a subscriber through this repository forgets it."""
        if self._routes is None:
            self._routes = [
                (sub_id, list(types)) for sub_id, types in self.conn.execute(_SUBSCRIBER_ROUTES)
            ]
        return self._routes

    def list_subscribers(self) -> list[Subscriber]:
        """Every subscriber not removed (enabled or not), in id order."""
        stmt = select(subscribers).where(subscribers.c.deleted_at.is_(None))
        return [
            _from_row(Subscriber, r) for r in self.conn.execute(stmt.order_by(subscribers.c.id))
        ]

    def update_subscriber(self, subscriber_id: str, **values: Any) -> bool:
        self._routes = None
        result = self.conn.execute(
            update(subscribers)
            .where(subscribers.c.id == subscriber_id, subscribers.c.deleted_at.is_(None))
            .values(**values)
        )
        return result.rowcount == 1

    def live_subscribers(self, subscriber_ids: Sequence[str]) -> dict[str, Subscriber]:
        """Subscribers by id, removed ones left out (those :meth:`get_subscriber` finds)."""
        if not subscriber_ids:
            return {}
        rows = self.conn.execute(_LIVE_SUBSCRIBERS, {"ids_": list(subscriber_ids)})
        return {s.id: s for s in (_from_row(Subscriber, r) for r in rows)}

    def set_subscriber_health(self, subscriber_id: str, values: dict[str, Any]) -> bool:
        """Set health columns of a subscriber that is not removed (``failing_since``,
        ``last_success_at``, ``enabled``, …) as parameters of a cached statement.

        :returns: False when no such subscriber exists (or it was removed).
        """
        if not values:
            return False
        result = self.conn.execute(_SET_HEALTH, {"subscriber_id_": subscriber_id, **values})
        return result.rowcount == 1

    def subscriber_stats(self) -> dict[str, dict[str, int]]:
        """Per subscriber: deliveries by status."""
        rows = self.conn.execute(
            select(deliveries.c.subscriber_id, deliveries.c.status, func.count()).group_by(
                deliveries.c.subscriber_id, deliveries.c.status
            )
        )
        out: dict[str, dict[str, int]] = {}
        for sid, status, count in rows:
            out.setdefault(sid, {})[status] = count
        return out

    # -- operator's views: the dashboard and the metrics gauges -----------------------------

    def count_jobs(
        self, *, status: str | None = None, model: str | None = None, since: datetime | None = None
    ) -> int:
        """How many jobs :meth:`list_jobs` would page through with these filters."""
        stmt = select(func.count()).select_from(jobs)
        if status:
            stmt = stmt.where(jobs.c.status == status)
        if model:
            stmt = stmt.where(jobs.c.model == model)
        if since:
            stmt = stmt.where(jobs.c.created_at >= since)
        return int(self.conn.execute(stmt).scalar_one())

    def count_live_jobs_by_status(self) -> dict[str, int]:
        """Jobs not finished yet (SUBMITTING, PENDING, THROTTLED, RUNNING), by status."""
        live = ("SUBMITTING", "PENDING", "THROTTLED", "RUNNING")
        rows = self.conn.execute(
            select(jobs.c.status, func.count())
            .where(jobs.c.status.in_(live))
            .group_by(jobs.c.status)
        )
        return {status: count for status, count in rows}

    def count_callbacks_by_outcome_since(self, since: datetime) -> dict[str, int]:
        """Accepted callbacks received at or after ``since``, by outcome (applied, duplicate…)."""
        rows = self.conn.execute(
            select(callbacks.c.outcome, func.count())
            .where(callbacks.c.received_at >= since)
            .group_by(callbacks.c.outcome)
        )
        return {outcome: count for outcome, count in rows}

    def count_pending_deliveries(self) -> int:
        return int(
            self.conn.execute(
                select(func.count()).select_from(deliveries).where(deliveries.c.status == "pending")
            ).scalar_one()
        )

    def count_disabled_subscribers(self) -> int:
        """Subscribers that exist (not removed) and are disabled."""
        return int(
            self.conn.execute(
                select(func.count())
                .select_from(subscribers)
                .where(subscribers.c.enabled.is_(False), subscribers.c.deleted_at.is_(None))
            ).scalar_one()
        )

    def attempts_by_delivery(self, delivery_ids: Sequence[str]) -> dict[str, list[Attempt]]:
        """Each delivery's attempts, oldest first (deliveries without attempts are absent)."""
        out: dict[str, list[Attempt]] = {}
        if not delivery_ids:
            return out
        stmt = (
            select(attempts)
            .where(attempts.c.delivery_id.in_(list(delivery_ids)))
            .order_by(attempts.c.id)
        )
        for row in self.conn.execute(stmt):
            attempt = _from_row(Attempt, row)
            out.setdefault(attempt.delivery_id, []).append(attempt)
        return out

    def events_by_id(self, event_ids: Sequence[str]) -> dict[str, Event]:
        if not event_ids:
            return {}
        stmt = select(events).where(events.c.id.in_(list(event_ids)))
        return {e.id: e for e in (_from_row(Event, r) for r in self.conn.execute(stmt))}

    def subscribers_by_id(self, subscriber_ids: Sequence[str]) -> dict[str, Subscriber]:
        """Subscribers by id, removed ones included (history shows where a delivery went)."""
        if not subscriber_ids:
            return {}
        stmt = select(subscribers).where(subscribers.c.id.in_(list(subscriber_ids)))
        return {s.id: s for s in (_from_row(Subscriber, r) for r in self.conn.execute(stmt))}

    # -- the delivery worker's counters -----------------------------------------------------

    def add_to_worker_metrics(self, increments: Mapping[tuple[str, str], float]) -> None:
        """Add ``increments`` (``(name, label)`` → amount) to the worker's counters, creating
        the rows that do not exist yet (one upsert; SQLite and PostgreSQL alike).

        Rows are written in sorted order, so that workers recording at once take their row
        locks in one order (PostgreSQL) and wait for each other instead of deadlocking. Call
        it last in a transaction: the rows stay locked until commit.
        """
        if not increments:
            return
        dialect_insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        stmt = dialect_insert(worker_metrics)
        stmt = stmt.on_conflict_do_update(
            index_elements=[worker_metrics.c.name, worker_metrics.c.label],
            set_={"value": worker_metrics.c.value + stmt.excluded.value},
        )
        rows = [
            {"name": name, "label": label, "value": float(value)}
            for (name, label), value in sorted(increments.items())
        ]
        self.conn.execute(stmt, rows)

    def read_worker_metrics(self) -> dict[tuple[str, str], float]:
        """Every worker counter, ``(name, label)`` → value (see ``tables.worker_metrics``)."""
        stmt = select(worker_metrics.c.name, worker_metrics.c.label, worker_metrics.c.value)
        return {(r.name, r.label): float(r.value) for r in self.conn.execute(stmt)}


def _as_values(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}
