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
from typing import Annotated, Any, Literal

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
        return cls.model_validate(_job_fields(job))


def _job_fields(job: store.Job) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "task_id": job.task_id,
        "model": job.model,
        "status": job.status,
        "progress": job.progress,
        "progress_text": job.progress_text,
        "artifacts": job.artifacts,
        "error": job.error,
        "submit_error": job.submit_error,
        "metadata": job.metadata,
        "request": job.request,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "last_callback_at": job.last_callback_at,
        "finished_at": job.finished_at,
    }


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
        return cls.model_validate(
            {
                "id": event.id,
                "type": event.type,
                "sequence": event.sequence,
                "created_at": event.created_at,
                "data": event_data(event),
            }
        )


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

    @classmethod
    def of(cls, c: store.CallbackRecord) -> Callback:
        """The shape of the accepted callback ``c``."""
        return cls.model_validate(
            {
                "received_at": c.received_at,
                "status": c.status,
                "progress": c.progress,
                "outcome": c.outcome,
                "body_sha256": c.body_sha256,
                "unsafe_urls": c.unsafe_urls or 0,
            }
        )


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
        return cls.model_validate(
            {
                "number": a.number,
                "started_at": a.started_at,
                "duration_ms": round(a.duration_ms, 1),
                "status_code": a.status_code,
                "outcome": a.outcome,
                "error": a.error,
                "response_body": a.response_body,
            }
        )


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
        return cls.model_validate(_delivery_fields(d))


def _delivery_fields(d: store.Delivery) -> dict[str, Any]:
    pending = d.status == DeliveryStatus.PENDING
    return {
        "id": d.id,
        "event_id": d.event_id,
        "subscriber_id": d.subscriber_id,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at if pending else None,
        "leased": d.lease_owner is not None,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
        "completed_at": d.completed_at,
    }


class DeliveryDetail(Delivery):
    """A delivery with its attempt log, oldest first."""

    attempt_log: list[Attempt]

    @classmethod
    def with_attempts(cls, d: store.Delivery, attempts: Sequence[store.Attempt]) -> DeliveryDetail:
        """The shape of ``d`` with ``attempts`` (its attempt rows)."""
        return cls.model_validate(
            {**_delivery_fields(d), "attempt_log": [Attempt.of(a) for a in attempts]}
        )


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
        return cls.model_validate(
            {
                **_job_fields(job),
                "events": [Event.of(e) for e in events],
                "callbacks": [Callback.of(c) for c in callbacks],
                "deliveries": [Delivery.of(d) for d in deliveries],
            }
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
        return cls.model_validate(_subscriber_fields(sub))


def _subscriber_fields(sub: store.Subscriber) -> dict[str, Any]:
    return {
        "id": sub.id,
        "url": sub.url,
        "description": sub.description,
        "event_types": sub.event_types,
        "enabled": sub.enabled,
        "disabled_reason": sub.disabled_reason,
        "disabled_at": sub.disabled_at,
        "max_in_flight": sub.max_in_flight,
        "failing_since": sub.failing_since,
        "last_success_at": sub.last_success_at,
        "last_failure_at": sub.last_failure_at,
        "last_error": sub.last_error,
        "created_at": sub.created_at,
        "previous_secret_expires_at": sub.previous_secret_expires_at,
    }


class SubscriberCreated(Subscriber):
    """A subscriber just created or given a new secret: the secret, shown this once."""

    secret: str = Field(pattern="^whsec_", description="shown only when created or rotated")

    @classmethod
    def with_secret(cls, sub: store.Subscriber) -> SubscriberCreated:
        """The shape of ``sub`` with its (new) secret."""
        return cls.model_validate({**_subscriber_fields(sub), "secret": sub.secret})


class SubscriberListed(Subscriber):
    """A subscriber in a list, with its deliveries counted by status."""

    deliveries: dict[str, int] = Field(description="this subscriber's deliveries by status")

    @classmethod
    def with_stats(cls, sub: store.Subscriber, stats: Mapping[str, int]) -> SubscriberListed:
        """The shape of ``sub`` with ``stats`` (``{status: count}``)."""
        return cls.model_validate({**_subscriber_fields(sub), "deliveries": dict(stats)})


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
        return cls.model_validate(
            {
                "id": r.id,
                "received_at": r.received_at,
                "reason": r.reason,
                "detail": r.detail,
                "http_status": r.http_status,
                "source_ip": r.source_ip,
                "body_sha256": r.body_sha256,
                "body_size": r.body_size,
                "job_id": r.job_id,
            }
        )


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
