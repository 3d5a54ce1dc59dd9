"""The prebuilt statements of the delivery worker's hot path (:mod:`.claims`): compiled once,
run with parameters; the PostgreSQL claim and recording as single statements."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from sqlalchemy import (
    Boolean,
    Integer,
    String,
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

_ATTEMPT_FIELDS = tuple(f.name for f in fields(AttemptFields))


def _element_type(col: Any) -> Any:
    """The type of ``col`` without its length (``VARCHAR``, not ``VARCHAR(40)``): the element
    type of an array that carries values of that column."""
    return type(col.type)()


#: The arrays that carry a batch of finished attempts into :data:`_PG_RECORD` (``unnest``):
#: the attempt's fields, the delivery's next step (typed as their columns) and ``applies``.
_RECORD_ARRAYS: tuple[tuple[str, Any], ...] = (
    *((name, _element_type(attempts.c[name])) for name in _ATTEMPT_FIELDS),
    *(
        (name, _element_type(deliveries.c[name]))
        for name in ("status", "next_attempt_at", "completed_at")
    ),
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
