"""The SQL of idempotency keys (table ``idempotency_keys``); the rules are in
:mod:`receiver.idempotency`.

A key is claimed by inserting its row: the primary key makes the database the referee, so of
several requests that carry one key at the same moment, in one process or several, exactly
one insert succeeds (PostgreSQL makes the others wait for its commit, then refuses them;
SQLite runs writers one at a time).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update

from receiver.store.tables import idempotency_keys

IN_FLIGHT = "in_flight"
COMPLETED = "completed"


@dataclass(frozen=True)
class StoredKey:
    """One idempotency key as stored.

    ``request_hash`` is the hex SHA-256 fingerprint of the request that claimed it; ``state``
    :data:`IN_FLIGHT` or :data:`COMPLETED`; once completed, ``response_status`` is the HTTP
    status of the first answer, ``job_id`` its job (if any) and ``response_body`` the JSON
    text of an error answer (None for a success, which is re-read from the job).
    """

    key: str
    request_hash: str
    state: str
    job_id: str | None
    response_status: int | None
    response_body: str | None
    created_at: datetime
    completed_at: datetime | None


_T = idempotency_keys


def insert_key(conn: Connection, key: str, request_hash: str, now: datetime) -> None:
    """Claim ``key`` (state in flight).

    :raises sqlalchemy.exc.IntegrityError: the key exists already (the transaction is then
        unusable on PostgreSQL: roll it back).
    """
    conn.execute(
        insert(_T).values(
            idempotency_key=key, request_hash=request_hash, state=IN_FLIGHT, created_at=now
        )
    )


def get_key(conn: Connection, key: str) -> StoredKey | None:
    """The row of Idempotency-Key ``key`` (its request hash, state, job and recorded answer),
    or None when no request claimed it (or retention removed it)."""
    row = conn.execute(select(_T).where(_T.c.idempotency_key == key)).first()
    if row is None:
        return None
    m = row._mapping
    return StoredKey(
        key=m["idempotency_key"],
        request_hash=m["request_hash"],
        state=m["state"],
        job_id=m["job_id"],
        response_status=m["response_status"],
        response_body=m["response_body"],
        created_at=m["created_at"],
        completed_at=m["completed_at"],
    )


def complete_key(
    conn: Connection,
    key: str,
    *,
    job_id: str | None,
    response_status: int,
    response_body: str | None,
    now: datetime,
) -> bool:
    """Record the first answer of an in-flight key. :returns: False when it was not in flight."""
    result = conn.execute(
        update(_T)
        .where(_T.c.idempotency_key == key, _T.c.state == IN_FLIGHT)
        .values(
            state=COMPLETED,
            job_id=job_id,
            response_status=response_status,
            response_body=response_body,
            completed_at=now,
        )
    )
    return result.rowcount == 1


def delete_in_flight_key(conn: Connection, key: str) -> bool:
    """Free an in-flight key (its request changed nothing). :returns: whether it was deleted."""
    result = conn.execute(delete(_T).where(_T.c.idempotency_key == key, _T.c.state == IN_FLIGHT))
    return result.rowcount == 1
