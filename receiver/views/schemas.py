"""The JSON shapes of jobs, events, callbacks, subscribers, deliveries and attempts, as pydantic
models: the admin API answers with them, the CLI prints them, and the OpenAPI document's
``components/schemas`` are generated from them (:mod:`receiver.web.openapi`), so a response and
its documentation cannot drift apart.

Each model is built from a store row by its ``of`` class method; ``model_dump(mode="json")``
is the JSON object (times as ISO-8601 UTC with a ``Z``, see :func:`receiver.times.format_time`).
The class name is the schema's name in the document (``#/components/schemas/Job``, …). Every
model forbids other keys (``additionalProperties: false``) and has no defaults, so every
property is required; an optional part of a shape is a subclass (:class:`JobDetail`,
:class:`SubscriberCreated`, :class:`SubscriberListed`, :class:`DeliveryDetail`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from receiver.domain.events import EventType
from receiver.domain.statuses import DeliveryStatus
from receiver.domain.tasks import TaskStatus
from receiver.store import repositories as store
from receiver.times import format_time

#: An aware time, written as ISO-8601 UTC with a ``Z`` (:func:`receiver.times.format_time`).
Time = Annotated[
    datetime,
    PlainSerializer(format_time, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
#: The same, or null.
OptionalTime = Annotated[
    datetime | None,
    PlainSerializer(format_time, return_type=str | None),
    WithJsonSchema({"type": ["string", "null"], "format": "date-time"}),
]
#: A JSON object as stored (a vendor's error, a job's request, metadata, an artifact).
JsonObject = dict[str, Any]


class Shape(BaseModel):
    """Base of the response models: no other keys, fields in the order they are written."""

    model_config = ConfigDict(extra="forbid", frozen=True)


S = TypeVar("S", bound=Shape)


def _from_row(cls: type[S], row: Any, **given: Any) -> S:
    """A ``cls`` whose fields are ``given``, or else the row's attributes of the same names
    (only the model's fields are read: a row's other attributes, a secret, stay behind).

    :raises pydantic.ValidationError: the row does not fit the model (a bug, not bad input).
    """
    values = {
        name: given[name] if name in given else getattr(row, name) for name in cls.model_fields
    }
    return cls.model_validate(values)


# -- jobs -----------------------------------------------------------------------------------


class Job(Shape):
    """A job: our submission and the state of its vendor task."""

    job_id: str
    task_id: str | None
    model: str
    status: TaskStatus
    progress: float | None = Field(ge=0, le=1)
    progress_text: str | None
    artifacts: list[JsonObject]
    error: JsonObject | None
    submit_error: JsonObject | None
    metadata: JsonObject
    request: JsonObject
    created_at: Time
    updated_at: Time
    last_callback_at: OptionalTime
    finished_at: OptionalTime

    @classmethod
    def of(cls, job: store.Job) -> Job:
        """The shape of the store row ``job``."""
        return _from_row(cls, job, job_id=job.id)


class Event(Shape):
    """One webhook event of a job; ``data`` is the webhook body's ``data``."""

    id: str
    type: EventType
    sequence: int = Field(ge=1)
    created_at: Time
    data: JsonObject = Field(description="the webhook body's data")

    @classmethod
    def of(cls, event: store.Event) -> Event:
        """The shape of ``event``; ``data`` read from its stored body."""
        return _from_row(cls, event, data=event_data(event))


def event_data(event: store.Event) -> JsonObject:
    """The ``data`` object of ``event``'s stored webhook body (``{}`` when it has none)."""
    data = json.loads(event.payload).get("data")
    return data if isinstance(data, dict) else {}


class Callback(Shape):
    """One accepted callback, as received (its body is not shown, only its SHA-256)."""

    received_at: Time
    status: str | None
    progress: float | None
    outcome: str
    body_sha256: str
    unsafe_urls: int = Field(ge=0, description="artifact or preview URLs dropped as unsafe")
    apply_attempts: int = Field(
        ge=0, description="failed applications so far (the worker tries again with backoff)"
    )
    apply_error: str | None = Field(
        description="why the last application failed; null once applied"
    )

    @classmethod
    def of(cls, c: store.CallbackRecord) -> Callback:
        """The shape of the accepted callback ``c``."""
        return _from_row(cls, c, unsafe_urls=c.unsafe_urls or 0)


# -- deliveries -----------------------------------------------------------------------------


class Attempt(Shape):
    """One HTTP attempt of a delivery; ``duration_ms`` in milliseconds (0.1 ms steps)."""

    number: int
    started_at: Time
    duration_ms: float
    status_code: int | None
    outcome: str
    error: str | None
    response_body: str | None

    @classmethod
    def of(cls, a: store.Attempt) -> Attempt:
        """The shape of the attempt ``a``."""
        return _from_row(cls, a, duration_ms=round(a.duration_ms, 1))


class Delivery(Shape):
    """One (event, subscriber) delivery; ``next_attempt_at`` only while it is pending."""

    id: str
    event_id: str
    subscriber_id: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: OptionalTime
    leased: bool
    last_status_code: int | None
    last_error: str | None
    created_at: Time
    updated_at: Time
    completed_at: OptionalTime

    @classmethod
    def of(cls, d: store.Delivery) -> Delivery:
        """The shape of the delivery ``d``."""
        return _from_row(cls, d, **_delivery_state(d))


def _delivery_state(d: store.Delivery) -> dict[str, Any]:
    pending = d.status == DeliveryStatus.PENDING
    return {
        "next_attempt_at": d.next_attempt_at if pending else None,
        "leased": d.lease_owner is not None,
    }


class DeliveryDetail(Delivery):
    """A delivery with its attempt log, oldest first."""

    attempt_log: list[Attempt]

    @classmethod
    def with_attempts(cls, d: store.Delivery, attempts: Sequence[store.Attempt]) -> DeliveryDetail:
        """The shape of ``d`` with ``attempts`` (its attempt rows)."""
        attempt_log = [Attempt.of(a) for a in attempts]
        return _from_row(cls, d, **_delivery_state(d), attempt_log=attempt_log)


class JobDetail(Job):
    """A job with its events, the callbacks received and its deliveries (newest first)."""

    events: list[Event]
    callbacks: list[Callback]
    deliveries: list[Delivery]

    @classmethod
    def with_history(
        cls,
        job: store.Job,
        events: Sequence[store.Event],
        callbacks: Sequence[store.CallbackRecord],
        deliveries: Sequence[store.Delivery],
    ) -> JobDetail:
        """The shape of ``job`` with its event, callback and delivery rows."""
        return _from_row(
            cls,
            job,
            job_id=job.id,
            events=[Event.of(e) for e in events],
            callbacks=[Callback.of(c) for c in callbacks],
            deliveries=[Delivery.of(d) for d in deliveries],
        )


# -- subscribers ----------------------------------------------------------------------------


class Subscriber(Shape):
    """A webhook subscriber; never its secret (see :class:`SubscriberCreated`)."""

    id: str
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    disabled_at: OptionalTime
    max_in_flight: int
    failing_since: OptionalTime
    last_success_at: OptionalTime
    last_failure_at: OptionalTime
    last_error: str | None
    created_at: Time
    previous_secret_expires_at: OptionalTime

    @classmethod
    def of(cls, sub: store.Subscriber) -> Subscriber:
        """The shape of ``sub``, without its secret."""
        return _from_row(cls, sub)


class SubscriberCreated(Subscriber):
    """A subscriber just created or given a new secret: the secret, shown this once."""

    secret: str = Field(pattern="^whsec_", description="shown only when created or rotated")

    @classmethod
    def with_secret(cls, sub: store.Subscriber) -> SubscriberCreated:
        """The shape of ``sub`` with its (new) secret."""
        return _from_row(cls, sub)


class SubscriberListed(Subscriber):
    """A subscriber in a list, with its deliveries counted by status."""

    deliveries: dict[str, int] = Field(description="this subscriber's deliveries by status")

    @classmethod
    def with_stats(cls, sub: store.Subscriber, stats: Mapping[str, int]) -> SubscriberListed:
        """The shape of ``sub`` with ``stats`` (``{status: count}``)."""
        return _from_row(cls, sub, deliveries=dict(stats))


# -- refused callbacks and the subscriber test ---------------------------------------------


class Refused(Shape):
    """A refused callback: why, from where, and a SHA-256 of its body (never the body)."""

    id: int
    received_at: Time
    reason: str
    detail: str | None
    http_status: int
    source_ip: str | None
    body_sha256: str | None
    body_size: int
    job_id: str | None

    @classmethod
    def of(cls, r: store.RefusedCallback) -> Refused:
        """The shape of the refused callback ``r``."""
        return _from_row(cls, r)


class WebhookTest(Shape):
    """What a subscriber answered to one signed ``webhook.test`` event
    (:func:`receiver.delivery.operational.send_test_event`)."""

    subscriber_id: str
    url: str
    enabled: bool
    webhook_id: str = Field(description="the test event's webhook-id")
    type: Literal["webhook.test"]
    ok: bool = Field(description="true when the subscriber answered a 2xx")
    outcome: Literal[
        "success", "http_error", "redirect", "gone", "timeout", "connection_error", "blocked"
    ]
    status_code: int | None
    duration_ms: float = Field(ge=0)
    response_body: str | None = Field(description="the first 1024 characters of the answer")
    error: str | None
