"""The delivery worker's hot path: claim due deliveries under a lease, record finished
attempts, give leases back. Its statements are prebuilt: compiled once, run with parameters.

Lock order. Several workers write in parallel on PostgreSQL, so every transaction of a worker
takes its row locks in one order, or two of them can wait on each other (a deadlock costs a
second of ``deadlock_timeout`` and a retried transaction): deliveries first, in id order
(attempt rows are inserted and kept leases locked and finished sorted by delivery id; leases
given back are locked in id order too), then subscribers, in id order (the worker's health
updates: ``set_subscriber_health``), then the claim, whose ``FOR UPDATE SKIP LOCKED`` never
waits for a lock at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update

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

_busy = deliveries.alias("busy")
_NOW = bindparam("now_", type_=UTCDateTime())
_ROOMS = select(
    subscribers.c.id,
    subscribers.c.max_in_flight
    - select(func.count())
    .select_from(_busy)
    .where(
        _busy.c.subscriber_id == subscribers.c.id,
        _busy.c.status == _PENDING,
        _busy.c.lease_expires_at > _NOW,
    )
    .correlate(subscribers)
    .scalar_subquery(),
).where(subscribers.c.enabled.is_(True), subscribers.c.deleted_at.is_(None))
_DUE = (
    select(deliveries.c.id, deliveries.c.subscriber_id)
    .where(
        deliveries.c.subscriber_id.in_(bindparam("subs_", expanding=True)),
        deliveries.c.status == _PENDING,
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
        deliveries.c.status == _PENDING,
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

_ATTEMPT_FIELDS = tuple(f.name for f in fields(AttemptFields))


def _attempt_row(record: AttemptRecord, worker: str) -> dict[str, Any]:
    """The ``attempts`` row of a finished attempt made by ``worker``."""
    return {**{name: getattr(record, name) for name in _ATTEMPT_FIELDS}, "worker": worker}


class ClaimQueries(RepositoryBase):
    """The repository's queries of the delivery worker's hot path."""

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
            [_attempt_row(r, worker) for r in records],
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
