"""The delivery worker's hot path: claim due deliveries under a lease, record finished
attempts, give leases back. Its statements are prebuilt: compiled once, run with parameters.

Lock order. Several workers write in parallel on PostgreSQL, so every transaction of a worker
takes its row locks in one order, or two of them can wait on each other (a deadlock costs a
second of ``deadlock_timeout`` and a retried transaction): deliveries first, in id order
(leases given back, then the leases kept by the recording, each locked sorted by delivery id),
then subscribers, in id order (the worker's health updates: ``set_subscriber_health``), then
the claim, whose locks (its subscribers, then its deliveries) are all taken ``SKIP LOCKED`` and
so never wait. Rows are locked ``FOR NO KEY UPDATE``, which the ``FOR KEY SHARE`` of a
foreign-key check (an attempt row inserted for a delivery, a delivery for a subscriber) does
not wait for, nor make wait.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    Boolean,
    Float,
    Integer,
    String,
    Text,
    any_,
    bindparam,
    column,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from receiver.domain.statuses import DeliveryStatus
from receiver.store.repositories.base import RepositoryBase
from receiver.store.repositories.rows import (
    AttemptFields,
    AttemptRecord,
    ClaimedDelivery,
    Delivery,
    Event,
    Subscriber,
)
from receiver.store.tables import UTCDateTime, attempts, deliveries, events, subscribers

_PENDING = DeliveryStatus.PENDING.value

_NOW = bindparam("now_", type_=UTCDateTime())


def _in_flight(sub_id: Any) -> Any:
    """The number of live leases of the subscriber ``sub_id`` (a correlated count)."""
    busy = deliveries.alias("busy")
    return (
        select(func.count())
        .select_from(busy)
        .where(
            busy.c.subscriber_id == sub_id,
            busy.c.status == _PENDING,
            busy.c.lease_expires_at > _NOW,
        )
        .scalar_subquery()
    )


def _due(d: Any) -> list[Any]:
    """The conditions under which the delivery ``d`` (the table or an alias) may be leased."""
    return [
        d.c.status == _PENDING,
        d.c.next_attempt_at <= _NOW,
        or_(d.c.lease_expires_at.is_(None), d.c.lease_expires_at <= _NOW),
    ]


# -- SQLite: the claim and the recording (one writer at a time: ``BEGIN IMMEDIATE``) ----------

_ROOMS = select(subscribers.c.id, subscribers.c.max_in_flight - _in_flight(subscribers.c.id)).where(
    subscribers.c.enabled.is_(True), subscribers.c.deleted_at.is_(None)
)
_DUE = (
    select(deliveries.c.id, deliveries.c.subscriber_id)
    .where(
        deliveries.c.subscriber_id.in_(bindparam("subs_", expanding=True)),
        *_due(deliveries),
    )
    .order_by(deliveries.c.next_attempt_at)  # the index's order: no sort of the backlog
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
        deliveries.c.status == _PENDING,
    )
    .order_by(deliveries.c.id)
)
# Both databases: giving leases back.
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
        deliveries.c.status == _PENDING,
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


# -- PostgreSQL: the claim in two statements, the recording in one ---------------------------
#
# Row locks are FOR NO KEY UPDATE (what an UPDATE of non-key columns takes anyway): they do not
# conflict with the FOR KEY SHARE locks that foreign-key checks take (an attempt row inserted
# for a delivery, a delivery inserted for a subscriber), so those never wait on a worker.


_waiting = deliveries.alias("waiting")
#: The subscribers that may get work, locked (skipping those another transaction holds), so
#: that no other worker leases their deliveries until this transaction ends: the claim that
#: follows counts their live leases in a snapshot taken after the lock, which makes the cap
#: exact however many workers claim at once.
_PG_LOCK_SUBSCRIBERS = (
    select(subscribers.c.id)
    .where(
        subscribers.c.enabled.is_(True),
        subscribers.c.deleted_at.is_(None),
        subscribers.c.max_in_flight > _in_flight(subscribers.c.id),
        exists().where(_waiting.c.subscriber_id == subscribers.c.id, *_due(_waiting)),
    )
    .order_by(subscribers.c.id)
    .with_for_update(key_share=True, skip_locked=True)
)


def _pg_claim() -> Any:
    """``UPDATE … RETURNING``: lease the chosen due deliveries of the locked subscribers and
    return each with its event and subscriber, in one statement.

    The room under each cap is counted first; the due deliveries of the subscribers with room
    are taken oldest first (``scan_`` of them at most, ``FOR NO KEY UPDATE SKIP LOCKED``),
    numbered within their subscriber, and those within its room leased (``limit_`` at most).
    """
    room = (subscribers.c.max_in_flight - _in_flight(subscribers.c.id)).label("room")
    subs = (
        select(subscribers.c.id, room)
        .where(
            subscribers.c.id == any_(bindparam("subs_", type_=ARRAY(String))),
            subscribers.c.enabled.is_(True),
            subscribers.c.deleted_at.is_(None),
        )
        .cte("subs")
    )
    d = deliveries.alias("cand_d")
    cand = (
        select(d.c.id, d.c.subscriber_id, d.c.next_attempt_at)
        .where(d.c.subscriber_id == any_(bindparam("subs_", type_=ARRAY(String))), *_due(d))
        .order_by(d.c.next_attempt_at)
        .limit(bindparam("scan_", type_=Integer()))
        .with_for_update(of=d, key_share=True, skip_locked=True)
        .cte("cand")
    )
    rank = (
        func.row_number()
        .over(partition_by=cand.c.subscriber_id, order_by=(cand.c.next_attempt_at, cand.c.id))
        .label("rank")
    )
    ranked = (
        select(cand.c.id, cand.c.next_attempt_at, rank, subs.c.room)
        .join(subs, subs.c.id == cand.c.subscriber_id)
        .cte("ranked")
    )
    chosen = (
        select(ranked.c.id)
        .where(ranked.c.rank <= ranked.c.room)
        .order_by(ranked.c.next_attempt_at, ranked.c.id)
        .limit(bindparam("limit_", type_=Integer()))
        .cte("chosen")
    )
    return (
        update(deliveries)
        .where(
            deliveries.c.id == chosen.c.id,
            events.c.id == deliveries.c.event_id,
            subscribers.c.id == deliveries.c.subscriber_id,
        )
        .values(
            lease_owner=bindparam("worker_"),
            lease_expires_at=bindparam("expires_", type_=UTCDateTime()),
            updated_at=_NOW,
        )
        .returning(
            *deliveries.c,
            *events.c,
            *subscribers.c,
            # for when the claim comes back short (the worker then sleeps until then)
            _next_due(deliveries.alias("pending")).limit(1).scalar_subquery().label("next_due"),
        )
    )


def _next_due(d: Any) -> Any:
    """The earliest ``next_attempt_at`` of a pending delivery (``d``: the table or an alias)."""
    return select(d.c.next_attempt_at).where(d.c.status == _PENDING).order_by(d.c.next_attempt_at)


_PG_CLAIM = _pg_claim()
_NEXT_DUE = _next_due(deliveries).limit(1)

#: The arrays that carry a batch of finished attempts into :data:`_PG_RECORD` (``unnest``).
_RECORD_ARRAYS: tuple[tuple[str, Any], ...] = (
    ("delivery_id", String()),
    ("number", Integer()),
    ("started_at", UTCDateTime()),
    ("duration_ms", Float()),
    ("status_code", Integer()),
    ("outcome", String()),
    ("error", Text()),
    ("response_body", Text()),
    ("status", String()),
    ("next_attempt_at", UTCDateTime()),
    ("completed_at", UTCDateTime()),
    ("applies", Boolean()),
)


def _pg_record() -> Any:
    """One statement for a batch of finished attempts: insert every attempt row, lock the
    deliveries whose lease the worker still holds (in id order), and update those; returns
    the ids of the deliveries updated.

    ``applies`` marks the record that sets a delivery's next step (the first of its records,
    as when each was updated in turn with the lease guard).
    """
    v = (
        func.unnest(*(bindparam(f"{name}_", type_=ARRAY(t)) for name, t in _RECORD_ARRAYS))
        .table_valued(*(column(name, t) for name, t in _RECORD_ARRAYS))
        .render_derived(name="v")
    )
    batch = select(v).cte("batch")
    add = (
        insert(attempts)
        .from_select(
            [*_ATTEMPT_FIELDS, "worker"],
            select(
                *(batch.c[name] for name in _ATTEMPT_FIELDS),
                bindparam("worker_", type_=String()),
            ).order_by(batch.c.delivery_id, batch.c.number),
        )
        .cte("added")
    )
    kept = (
        select(deliveries.c.id)
        .where(
            deliveries.c.id == any_(bindparam("ids_", type_=ARRAY(String))),
            deliveries.c.lease_owner == bindparam("worker_"),
            deliveries.c.status == _PENDING,
        )
        .order_by(deliveries.c.id)
        .with_for_update(key_share=True)
        .cte("kept")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    return (
        update(deliveries)
        .where(
            deliveries.c.id == kept.c.id,
            batch.c.delivery_id == kept.c.id,
            batch.c.applies.is_(True),
        )
        .values(
            lease_owner=None,
            lease_expires_at=None,
            status=batch.c.status,
            attempts=batch.c.number,
            last_status_code=batch.c.status_code,
            last_error=batch.c.error,
            updated_at=_NOW,
            next_attempt_at=func.coalesce(batch.c.next_attempt_at, deliveries.c.next_attempt_at),
            completed_at=func.coalesce(batch.c.completed_at, deliveries.c.completed_at),
        )
        .add_cte(add)
        .returning(deliveries.c.id)
    )


_ATTEMPT_FIELDS = tuple(f.name for f in fields(AttemptFields))
_PG_RECORD = _pg_record()


def _attempt_row(record: AttemptRecord, worker: str) -> dict[str, Any]:
    """The ``attempts`` row of a finished attempt made by ``worker``."""
    return {**{name: getattr(record, name) for name in _ATTEMPT_FIELDS}, "worker": worker}


_WIDTHS = (len(deliveries.columns), len(events.columns), len(subscribers.columns))


def _claimed_from(row: Any) -> ClaimedDelivery:
    """A :class:`ClaimedDelivery` from a row of every column of ``deliveries``, ``events`` and
    ``subscribers``, in this order."""
    values = tuple(row)
    nd, ne, ns = _WIDTHS
    return ClaimedDelivery(
        delivery=Delivery(**dict(zip(deliveries.columns.keys(), values[:nd], strict=True))),
        event=Event(**dict(zip(events.columns.keys(), values[nd : nd + ne], strict=True))),
        subscriber=Subscriber(
            **dict(zip(subscribers.columns.keys(), values[nd + ne : nd + ne + ns], strict=True))
        ),
    )


class Claim(NamedTuple):
    """What :meth:`ClaimQueries.claim` gives: the leased deliveries, oldest due first, and, when
    they are fewer than asked for, the earliest ``next_attempt_at`` of a pending delivery (aware
    UTC; None when nothing is pending, or when the claim was not short)."""

    claimed: list[ClaimedDelivery]
    next_due: datetime | None


class ClaimQueries(RepositoryBase):
    """The repository's queries of the delivery worker's hot path."""

    def claim_due(
        self, *, worker: str, now: datetime, lease_seconds: float, limit: int
    ) -> list[ClaimedDelivery]:
        """The deliveries that :meth:`claim` leases (see there)."""
        return self.claim(worker=worker, now=now, lease_seconds=lease_seconds, limit=limit)[0]

    def claim(self, *, worker: str, now: datetime, lease_seconds: float, limit: int) -> Claim:
        """Lease up to ``limit`` due deliveries to ``worker`` until ``now + lease_seconds``; when
        fewer came, also read when the next pending delivery is due (for the worker's sleep).

        A delivery is due when pending, its ``next_attempt_at`` has come, no live lease holds it,
        and its subscriber is enabled and below its ``max_in_flight`` cap (live leases count as
        in flight). The room under each cap is read first, so a subscriber at its cap costs one
        count, not a scan of its backlog, and nothing at all is read further when no subscriber
        has room.

        PostgreSQL: two statements. The first locks the subscribers with room and due work
        (``FOR NO KEY UPDATE SKIP LOCKED``: one that another worker's transaction holds is left
        to that worker); the second (``UPDATE … RETURNING``) counts their room again in its own
        snapshot, taken after the lock, picks their due deliveries (``SKIP LOCKED`` too), leases
        them and returns them with their events and subscribers. As no two transactions hold a
        subscriber at once and each sees every lease committed before it took it, concurrent
        workers take disjoint sets and never exceed a cap together. SQLite: ``BEGIN IMMEDIATE``
        makes the whole claim one writer at a time; it reads the rooms, the candidates, leases
        and reads the chosen rows back (four statements, in-process), then ``next_due_at``
        when short. PostgreSQL reads the next due time in the claim's own statement when that
        leased anything, else with ``next_due_at``.

        :param now: aware UTC time of the claim.
        :param lease_seconds: how long the lease lasts, seconds.
        :returns: the leased deliveries with their events and subscribers, oldest due first
            (empty when ``limit`` is 0 or less), and the next due time (see :class:`Claim`).
        """
        if limit <= 0:
            return Claim([], None)
        expires = now + timedelta(seconds=lease_seconds)
        scan = max(limit * 4, 50)  # over-fetch: a subscriber's candidates beyond its room skip
        if self.dialect == "postgresql":
            claimed, next_due = self._claim_postgresql(worker, now, expires, limit, scan)
        else:
            claimed = self._claim_sqlite(worker, now, expires, limit, scan)
            next_due = None
        if len(claimed) >= limit:
            return Claim(claimed, None)
        return Claim(claimed, next_due if next_due is not None else self.next_due_at())

    def _claim_sqlite(
        self, worker: str, now: datetime, expires: datetime, limit: int, scan: int
    ) -> list[ClaimedDelivery]:
        """:meth:`claim` on SQLite: rooms, candidates, lease, read back."""
        rooms = {sid: room for sid, room in self.conn.execute(_ROOMS, {"now_": now}) if room > 0}
        if not rooms:
            return []
        params = {"subs_": list(rooms), "now_": now}
        chosen: list[str] = []
        for delivery_id, subscriber_id in self.conn.execute(_DUE.limit(scan), params):
            if rooms[subscriber_id] <= 0:
                continue
            rooms[subscriber_id] -= 1
            chosen.append(delivery_id)
            if len(chosen) >= limit:
                break
        if not chosen:
            return []
        self.conn.execute(
            _LEASE, {"ids_": chosen, "worker_": worker, "expires_": expires, "now_": now}
        )
        return self._load_claimed(chosen)

    def _claim_postgresql(
        self, worker: str, now: datetime, expires: datetime, limit: int, scan: int
    ) -> tuple[list[ClaimedDelivery], datetime | None]:
        """:meth:`claim` on PostgreSQL: lock the subscribers, then one ``UPDATE … RETURNING``
        (which also returns the next due time: None when it leased nothing)."""
        subs = list(self.conn.execute(_PG_LOCK_SUBSCRIBERS, {"now_": now}).scalars())
        if not subs:
            return [], None
        params = {
            "subs_": subs,
            "now_": now,
            "worker_": worker,
            "expires_": expires,
            "scan_": scan,
            "limit_": limit,
        }
        rows = self.conn.execute(_PG_CLAIM, params).all()
        claimed = sorted(
            (_claimed_from(row) for row in rows),
            key=lambda c: (c.delivery.next_attempt_at, c.delivery.id),
        )
        return claimed, (rows[0].next_due if rows else None)

    def next_due_at(self) -> datetime | None:
        """The earliest ``next_attempt_at`` of a pending delivery, aware UTC (None when nothing is
        pending): when the worker looks again."""
        row = self.conn.execute(_NEXT_DUE).first()
        return row[0] if row else None

    def _load_claimed(self, ids: Sequence[str]) -> list[ClaimedDelivery]:
        d, e, s = deliveries, events, subscribers
        stmt = (
            select(d, e, s)
            .join(e, e.c.id == d.c.event_id)
            .join(s, s.c.id == d.c.subscriber_id)
            .where(d.c.id.in_(ids))
            .order_by(d.c.next_attempt_at)
        )
        return [_claimed_from(row) for row in self.conn.execute(stmt)]

    def record_attempts(
        self, *, worker: str, now: datetime, records: Sequence[AttemptRecord]
    ) -> set[str]:
        """Write a batch of finished attempts: every attempt row, then each delivery's next
        step where ``worker`` still holds its lease.

        An attempt whose lease was lost (it expired and another worker took the delivery, or
        the delivery was cancelled) keeps its attempt row but leaves the delivery untouched.
        Should a batch hold two attempts of one delivery, the first (by number) sets its next
        step. PostgreSQL: one statement (the rows come in as arrays), which locks the
        deliveries still held in delivery id order (the lock order above) and updates them;
        they stay locked until commit, so none is taken in between. SQLite: a multi-row insert,
        a read of the leases still held and one executemany.

        :param now: aware UTC time of the recording (the deliveries' ``updated_at``).
        :returns: the ids of the deliveries whose lease was still held (and so were updated).
        """
        if not records:
            return set()
        records = sorted(records, key=lambda r: (r.delivery_id, r.number))  # the lock order
        ids = list(dict.fromkeys(r.delivery_id for r in records))
        if self.dialect == "postgresql":
            return self._record_postgresql(worker, now, records, ids)
        self.conn.execute(
            _ADD_ATTEMPT,
            [_attempt_row(r, worker) for r in records],
        )
        kept = set(self.conn.execute(_KEPT, {"ids_": ids, "worker_": worker}).scalars())
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

    def _record_postgresql(
        self, worker: str, now: datetime, records: Sequence[AttemptRecord], ids: list[str]
    ) -> set[str]:
        """:meth:`record_attempts` on PostgreSQL: one statement (``records`` sorted)."""
        params: dict[str, Any] = {f"{name}_": [] for name, _ in _RECORD_ARRAYS}
        previous = None
        for r in records:
            for name, _ in _RECORD_ARRAYS[:-1]:
                params[f"{name}_"].append(getattr(r, name))
            params["applies_"].append(r.delivery_id != previous)
            previous = r.delivery_id
        params.update({"ids_": ids, "worker_": worker, "now_": now})
        return set(self.conn.execute(_PG_RECORD, params).scalars())

    def release_leases(self, delivery_ids: Sequence[str], worker: str, now: datetime) -> int:
        """Give claimed but unsent deliveries back (SIGTERM before they were sent); only those
        whose lease ``worker`` still holds.

        :returns: how many leases were given back.
        """
        if not delivery_ids:
            return 0
        ids = sorted(set(delivery_ids))
        if self.dialect == "postgresql":  # lock them in id order first (the lock order)
            self.conn.execute(
                _HELD.with_for_update(key_share=True), {"ids_": ids, "worker_": worker}
            )
        result = self.conn.execute(_RELEASE, {"ids_": ids, "worker_": worker, "now_": now})
        return int(result.rowcount)
