"""JSON shapes of jobs, subscribers, deliveries and attempts, shared by the API and the CLI."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from receiver.domain.statuses import DeliveryStatus
from receiver.store.repositories import (
    Attempt,
    CallbackRecord,
    Delivery,
    Event,
    Job,
    RefusedCallback,
    Subscriber,
)


def iso(value: datetime | None) -> str | None:
    """ISO-8601 UTC with a ``Z``, or None."""
    return value.isoformat().replace("+00:00", "Z") if value else None


def job_json(job: Job, *, events: list[Event] | None = None) -> dict[str, Any]:
    """A job as the API returns it; ``events`` adds each event's id, type, sequence, data."""
    out: dict[str, Any] = {
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
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "last_callback_at": iso(job.last_callback_at),
        "finished_at": iso(job.finished_at),
    }
    if events is not None:
        out["events"] = [event_json(e) for e in events]
    return out


def event_json(event: Event) -> dict[str, Any]:
    body = json.loads(event.payload)
    return {
        "id": event.id,
        "type": event.type,
        "sequence": event.sequence,
        "created_at": iso(event.created_at),
        "data": body.get("data"),
    }


def subscriber_json(
    sub: Subscriber, *, include_secret: bool = False, stats: dict[str, int] | None = None
) -> dict[str, Any]:
    """A subscriber; its secret only when just created or rotated."""
    out: dict[str, Any] = {
        "id": sub.id,
        "url": sub.url,
        "description": sub.description,
        "event_types": sub.event_types,
        "enabled": sub.enabled,
        "disabled_reason": sub.disabled_reason,
        "disabled_at": iso(sub.disabled_at),
        "max_in_flight": sub.max_in_flight,
        "failing_since": iso(sub.failing_since),
        "last_success_at": iso(sub.last_success_at),
        "last_failure_at": iso(sub.last_failure_at),
        "last_error": sub.last_error,
        "created_at": iso(sub.created_at),
        "previous_secret_expires_at": iso(sub.previous_secret_expires_at),
    }
    if include_secret:
        out["secret"] = sub.secret
    if stats is not None:
        out["deliveries"] = stats
    return out


def delivery_json(d: Delivery, *, attempts: list[Attempt] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": d.id,
        "event_id": d.event_id,
        "subscriber_id": d.subscriber_id,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": iso(d.next_attempt_at) if d.status == DeliveryStatus.PENDING else None,
        "leased": d.lease_owner is not None,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "created_at": iso(d.created_at),
        "updated_at": iso(d.updated_at),
        "completed_at": iso(d.completed_at),
    }
    if attempts is not None:
        out["attempt_log"] = [attempt_json(a) for a in attempts]
    return out


def attempt_json(a: Attempt) -> dict[str, Any]:
    return {
        "number": a.number,
        "started_at": iso(a.started_at),
        "duration_ms": round(a.duration_ms, 1),
        "status_code": a.status_code,
        "outcome": a.outcome,
        "error": a.error,
        "response_body": a.response_body,
    }


def callback_json(c: CallbackRecord) -> dict[str, Any]:
    return {
        "received_at": iso(c.received_at),
        "status": c.status,
        "progress": c.progress,
        "outcome": c.outcome,
        "body_sha256": c.body_sha256,
        "unsafe_urls": c.unsafe_urls or 0,
    }


def refused_json(r: RefusedCallback) -> dict[str, Any]:
    return {
        "id": r.id,
        "received_at": iso(r.received_at),
        "reason": r.reason,
        "detail": r.detail,
        "http_status": r.http_status,
        "source_ip": r.source_ip,
        "body_sha256": r.body_sha256,
        "body_size": r.body_size,
        "job_id": r.job_id,
    }
