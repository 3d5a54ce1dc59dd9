"""Subscriber administration for the API, the dashboard and the CLI: register, look up,
remove, rotate the secret, enable and disable. Each is one unit of work."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from receiver.delivery.urls import UnsafeUrl, check_subscriber_url
from receiver.domain.events import DEFAULT_EVENT_TYPES, EVENT_TYPES
from receiver.errors import InvalidSubscriber, SubscriberNotFound
from receiver.services.reads import read_one
from receiver.store.repositories import Subscriber
from receiver.store.uow import UnitOfWork

#: The range of a subscriber's cap on deliveries in flight at once.
MAX_IN_FLIGHT_RANGE = (1, 256)


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def create_subscriber(
    engine: Engine,
    *,
    url: str,
    event_types: Sequence[str] | None,
    description: str | None,
    max_in_flight: int,
    allow_private: bool,
    now: datetime,
) -> Subscriber:
    """Register a subscriber with a fresh secret (returned once, in the result).

    :param event_types: what it receives (duplicates dropped); None or empty: the terminal
        events (:data:`receiver.domain.events.DEFAULT_EVENT_TYPES`).
    :param max_in_flight: its cap on deliveries in flight at once, 1..256.
    :param allow_private: ``ALLOW_PRIVATE_URLS``: loopback and private addresses pass.
    :raises InvalidSubscriber: the URL fails the SSRF guard, an event type is unknown, or
        ``max_in_flight`` is out of range.
    """
    types = list(dict.fromkeys(event_types)) if event_types else list(DEFAULT_EVENT_TYPES)
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise InvalidSubscriber(
            f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}"
        )
    low, high = MAX_IN_FLIGHT_RANGE
    if not low <= max_in_flight <= high:
        raise InvalidSubscriber(f"max_in_flight must be between {low} and {high}")
    try:
        check_subscriber_url(url, allow_private=allow_private)
    except UnsafeUrl as exc:
        raise InvalidSubscriber(f"subscriber URL refused: {exc}") from exc
    sub = Subscriber.new(
        url=url,
        description=description,
        event_types=types,
        secret=new_secret(),
        max_in_flight=max_in_flight,
        now=now,
    )
    with UnitOfWork(engine) as uow:
        uow.repo.add_subscriber(sub)
        uow.commit()
    return sub


def get_subscriber(engine: Engine, subscriber_id: str) -> Subscriber:
    """The subscriber ``subscriber_id``. :raises SubscriberNotFound: no such subscriber."""
    return read_one(
        engine,
        lambda repo: repo.get_subscriber(subscriber_id),
        SubscriberNotFound(f"no subscriber {subscriber_id}"),
    )


def remove_subscriber(engine: Engine, subscriber_id: str, now: datetime) -> None:
    """Remove a subscriber (kept as history) and cancel its pending deliveries.

    :raises SubscriberNotFound:
    """
    with UnitOfWork(engine) as uow:
        if not uow.repo.update_subscriber(subscriber_id, deleted_at=now, enabled=False):
            raise SubscriberNotFound(f"no subscriber {subscriber_id}")
        uow.repo.cancel_pending_for(subscriber_id, now)
        uow.commit()


def rotate_secret(
    engine: Engine, subscriber_id: str, grace_seconds: float, now: datetime
) -> Subscriber:
    """Issue a new secret; the old one keeps signing, beside it, for ``grace_seconds``.

    :raises SubscriberNotFound:
    """
    with UnitOfWork(engine) as uow:
        sub = SubscriberNotFound.require(
            uow.repo.get_subscriber(subscriber_id), f"no subscriber {subscriber_id}"
        )
        keep_old = grace_seconds > 0
        rotated = replace(
            sub,
            secret=new_secret(),
            previous_secret=sub.secret if keep_old else None,
            previous_secret_expires_at=now + timedelta(seconds=grace_seconds) if keep_old else None,
        )
        uow.repo.update_subscriber(
            subscriber_id,
            secret=rotated.secret,
            previous_secret=rotated.previous_secret,
            previous_secret_expires_at=rotated.previous_secret_expires_at,
        )
        uow.commit()
    return rotated


def set_subscriber_enabled(
    engine: Engine, subscriber_id: str, enabled: bool, now: datetime, reason: str | None = None
) -> Subscriber:
    """Enable (clearing the failure streak) or disable a subscriber.

    :param reason: why it is disabled (default "disabled by operator"); ignored when enabling.
    :raises SubscriberNotFound:
    """
    values: dict[str, Any] = (
        {"enabled": True, "disabled_reason": None, "disabled_at": None, "failing_since": None}
        if enabled
        else {
            "enabled": False,
            "disabled_reason": reason or "disabled by operator",
            "disabled_at": now,
        }
    )
    with UnitOfWork(engine) as uow:
        if not uow.repo.update_subscriber(subscriber_id, **values):
            raise SubscriberNotFound(f"no subscriber {subscriber_id}")
        if enabled:
            uow.repo.notify_deliveries()
        uow.commit()
    return get_subscriber(engine, subscriber_id)
