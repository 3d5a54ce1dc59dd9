"""What the repository's queries return: one frozen dataclass per kind of row (never a dict), so
that what travels further is typed; and the two helpers that move a row in and out of one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar

from receiver.domain.statuses import DeliveryStatus
from receiver.ids import new_id

T = TypeVar("T")


def from_row(cls: type[T], row: Any) -> T:
    """An instance of the dataclass ``cls`` from a result row with (at least) its fields."""
    mapping = row._mapping
    return cls(**{f.name: mapping[f.name] for f in fields(cls)})  # type: ignore[arg-type]


def as_values(obj: Any) -> dict[str, Any]:
    """A dataclass row as ``{column: value}``, for an insert."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


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

    @classmethod
    def new(
        cls,
        *,
        model: str,
        request: dict[str, Any],
        metadata: Mapping[str, Any],
        status: str,
        task_id: str | None,
        now: datetime,
        job_id: str | None = None,
        last_callback_at: datetime | None = None,
    ) -> Job:
        """A new job with no progress, artifacts or error yet, at sequence 0.

        Args:
            model: the model name.
            request: the request to store (not copied).
            metadata: the caller's metadata (copied).
            status: the job's status (a ``TaskStatus`` value).
            task_id: the vendor's task id, or None (not submitted yet).
            now: when the job was made (aware UTC); its ``created_at``, and its
                ``updated_at`` unless ``last_callback_at`` is given.
            job_id: the job's id; a new ``job_…`` id when None.
            last_callback_at: when its last callback came, or None (never).
        """
        return cls(
            id=job_id or new_id("job"),
            model=model,
            request=request,
            metadata=dict(metadata),
            status=status,
            task_id=task_id,
            progress=None,
            progress_text=None,
            artifacts=[],
            error=None,
            submit_error=None,
            sequence=0,
            created_at=now,
            updated_at=last_callback_at or now,
            last_callback_at=last_callback_at,
            finished_at=None,
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

    @classmethod
    def new(
        cls,
        *,
        url: str,
        description: str | None,
        event_types: list[str],
        secret: str,
        max_in_flight: int,
        now: datetime,
    ) -> Subscriber:
        """A new enabled subscriber with a new ``sub_…`` id and no history (made at ``now``)."""
        return cls(
            id=new_id("sub"),
            url=url,
            description=description,
            event_types=event_types,
            secret=secret,
            previous_secret=None,
            previous_secret_expires_at=None,
            enabled=True,
            disabled_reason=None,
            disabled_at=None,
            max_in_flight=max_in_flight,
            failing_since=None,
            last_success_at=None,
            last_failure_at=None,
            last_error=None,
            created_at=now,
            deleted_at=None,
        )


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
            status=DeliveryStatus.PENDING.value,
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
class AttemptFields:
    """What one HTTP attempt of a delivery was, as both :class:`Attempt` (read back) and
    :class:`AttemptRecord` (to write) carry it; ``duration_ms`` in milliseconds."""

    delivery_id: str
    number: int
    started_at: datetime
    duration_ms: float
    status_code: int | None
    outcome: str
    error: str | None
    response_body: str | None


@dataclass(frozen=True)
class Attempt(AttemptFields):
    """One HTTP attempt of a delivery (table ``attempts``), with its row id and the worker
    that made it; ``duration_ms`` in milliseconds."""

    id: int
    worker: str | None


@dataclass(frozen=True)
class CallbackRecord:
    """One accepted callback as received (``body`` keeps unknown vendor fields; None for a
    callback that changed nothing, whose hash and metadata only are kept). ``unsafe_urls``:
    how many artifact or preview URLs were dropped as unsafe (None: none).
    ``apply_attempts``: failed applications so far; ``apply_error``: why the last one failed
    (None once applied; the applier tries again with backoff)."""

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
    apply_attempts: int
    apply_error: str | None


@dataclass(frozen=True)
class QueuedCallback:
    """A stored callback not applied yet (``outcome = 'queued'``): what the applier needs.

    ``body`` is the callback as received; ``apply_task`` the task object to apply instead
    (``VERIFY_WITH_VENDOR``'s), or None; ``confirmed`` False applies it to nothing;
    ``apply_attempts`` counts failed applications so far."""

    id: int
    job_id: str
    received_at: datetime
    body: dict[str, Any] | None
    body_sha256: str
    source_ip: str | None
    apply_task: dict[str, Any] | None
    confirmed: bool
    apply_attempts: int


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
class AttemptRecord(AttemptFields):
    """One finished attempt and its delivery's next step, for :meth:`Repository.record_attempts`.

    ``number`` counts attempts from 1 (it becomes the delivery's ``attempts``); ``duration_ms``
    in milliseconds. ``status`` is the delivery's next status: ``pending`` to try again at
    ``next_attempt_at``, or final (``succeeded``, ``failed``) with ``completed_at`` set. A None
    ``next_attempt_at`` or ``completed_at`` leaves the column as it is.
    """

    status: str
    next_attempt_at: datetime | None
    completed_at: datetime | None
