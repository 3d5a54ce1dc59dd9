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
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    select,
)

from receiver.store.repositories.base import RepositoryBase
from receiver.store.repositories.claims_sql import (
    _ADD_ATTEMPT,
    _DUE,
    _FINISH,
    _HELD,
    _KEPT,
    _LEASE,
    _NEXT_DUE,
    _PG_CLAIM,
    _PG_LOCK_SUBSCRIBERS,
    _PG_RECORD,
    _RECORD_ARRAYS,
    _RELEASE,
    _ROOMS,
    _attempt_row,
    _claimed_from,
)
from receiver.store.repositories.rows import (
    AttemptRecord,
    ClaimedDelivery,
)
from receiver.store.tables import deliveries, events, subscribers


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
