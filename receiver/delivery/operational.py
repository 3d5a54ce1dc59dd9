"""Operational events: a ``webhook.test`` sent on request, and ``subscriber.disabled``.

- :func:`send_test_event` (``relay subscribers test ID``, ``POST /api/subscribers/{id}/test``)
  signs one ``webhook.test`` event with the subscriber's secret(s) and POSTs it at once,
  through the same guarded connection as every delivery (:class:`~receiver.delivery.sender.
  Sender`), and returns the answer. Nothing is stored: it is a probe, not a delivery.
- :func:`record_subscriber_disabled` writes a ``subscriber.disabled`` event, in the transaction
  that disables the subscriber, with one delivery per other enabled subscriber that asked for
  that type: the outbox delivers it like any task event, so that someone hears.

Both bodies have the shape of SPEC §2: ``{"type", "timestamp", "data": {...}}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from receiver.delivery.sender import Sender, SendResult
from receiver.delivery.urls import UnsafeUrl, check_subscriber_url
from receiver.domain.delivery import signing_secrets
from receiver.domain.events import SUBSCRIBER_DISABLED, WEBHOOK_TEST
from receiver.ids import new_id
from receiver.store.repositories import Delivery, Event, Repository, Subscriber

#: How much of the subscriber's answer a test result shows, characters.
TEST_BODY_EXCERPT = 1024


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _new_event(event_type: str, now: datetime, sub: Subscriber, **data: Any) -> tuple[str, str]:
    """A new event id and the webhook body of an ``event_type`` event about ``sub``: its
    ``data`` is ``{"event_id", "subscriber_id"}`` and then ``data``'s keys."""
    event_id = new_id("msg")
    body = {
        "type": event_type,
        "timestamp": _iso(now),
        "data": {"event_id": event_id, "subscriber_id": sub.id, **data},
    }
    return event_id, json.dumps(body, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class WebhookTestResult:
    """The answer to one ``webhook.test``.

    ``outcome`` is the delivery outcome (``success``, ``http_error``, ``gone``, ``redirect``,
    ``timeout``, ``connection_error``, ``blocked``); ``duration_ms`` in milliseconds;
    ``response_body`` the first :data:`TEST_BODY_EXCERPT` characters of the answer.
    """

    subscriber_id: str
    url: str
    enabled: bool
    webhook_id: str
    outcome: str
    status_code: int | None
    duration_ms: float
    response_body: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.outcome == "success"

    def to_json(self) -> dict[str, Any]:
        """The JSON shape printed by the CLI and returned by the API."""
        return {
            "subscriber_id": self.subscriber_id,
            "url": self.url,
            "enabled": self.enabled,
            "webhook_id": self.webhook_id,
            "type": WEBHOOK_TEST,
            "ok": self.ok,
            "outcome": self.outcome,
            "status_code": self.status_code,
            "duration_ms": round(self.duration_ms, 1),
            "response_body": self.response_body,
            "error": self.error,
        }


def send_test_event(
    engine: Engine, subscriber_id: str, *, timeout: float, allow_private: bool, now: datetime
) -> WebhookTestResult:
    """Sign one ``webhook.test`` event and POST it to the subscriber now (synchronously).

    Sent to a disabled subscriber too (a way to see that it is back before enabling it); its
    ``data`` is ``{"event_id", "subscriber_id", "message"}``. Nothing is written.

    :param timeout: seconds for the attempt (``DELIVERY_TIMEOUT_SECONDS``).
    :param allow_private: ``ALLOW_PRIVATE_URLS``.
    :param now: aware UTC time of the attempt (``webhook-timestamp``).
    :raises receiver.services.SubscriberNotFound: no such subscriber (or it was removed).
    """
    from receiver.services import get_subscriber

    sub = get_subscriber(engine, subscriber_id)
    event_id, body = _new_event(
        WEBHOOK_TEST,
        now,
        sub,
        message="a test event sent on request by runway-relay; it changes nothing",
    )
    result: SendResult
    try:
        if not allow_private:  # the scheme and literal-address rules, as at delivery
            check_subscriber_url(sub.url, allow_private=False, resolve=False)
    except UnsafeUrl as exc:
        result = SendResult("blocked", None, 0.0, str(exc))
    else:
        sender = Sender(timeout=timeout, allow_private=allow_private, pool_size=1)
        secrets = signing_secrets(
            sub.secret, sub.previous_secret, sub.previous_secret_expires_at, now
        )
        result = sender.send(sub.url, event_id, body, secrets, now)
    excerpt = result.response_body[:TEST_BODY_EXCERPT] if result.response_body else None
    return WebhookTestResult(
        subscriber_id=sub.id,
        url=sub.url,
        enabled=sub.enabled,
        webhook_id=event_id,
        outcome=result.outcome,
        status_code=result.status_code,
        duration_ms=result.duration_ms,
        response_body=excerpt,
        error=result.error,
    )


def record_subscriber_disabled(
    repo: Repository, sub: Subscriber, health: dict[str, Any], now: datetime
) -> str:
    """In the caller's transaction (the one that disables ``sub``): write a
    ``subscriber.disabled`` event and one delivery per other enabled subscriber that asked
    for that type, and wake the workers.

    ``data``: ``{"event_id", "subscriber_id", "url", "description", "reason", "disabled_at",
    "failing_since", "last_error"}``. The event has no job (``job_id`` None) and sequence 0.

    :param health: the columns just written for ``sub`` (``disabled_reason``, ``failing_since``,
        ``last_error``, …); they win over ``sub``'s older values.
    :returns: the event id (the event is written even when no subscriber asked for it).
    """
    targets = [
        s.id
        for s in repo.list_subscribers()
        if s.enabled and s.id != sub.id and SUBSCRIBER_DISABLED in s.event_types
    ]
    event_id, payload = _new_event(
        SUBSCRIBER_DISABLED,
        now,
        sub,
        url=sub.url,
        description=sub.description,
        reason=health.get("disabled_reason", sub.disabled_reason),
        disabled_at=_iso(health.get("disabled_at", now)),
        failing_since=_iso(health.get("failing_since", sub.failing_since)),
        last_error=health.get("last_error", sub.last_error),
    )
    repo.add_events(
        [
            Event(
                id=event_id,
                job_id=None,
                type=SUBSCRIBER_DISABLED,
                sequence=0,
                payload=payload,
                created_at=now,
            )
        ]
    )
    if not targets:
        return event_id
    repo.add_deliveries([Delivery.new_pending(event_id, target, now) for target in targets])
    repo.notify_deliveries()
    return event_id
