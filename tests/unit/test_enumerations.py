"""The enumerations are defined once in receiver/domain and agree with each other and with
what the API documents and the metrics label."""

from __future__ import annotations

from receiver import metrics
from receiver.domain.events import (
    DEFAULT_EVENT_TYPES,
    EVENT_TYPES,
    SUBSCRIBER_DISABLED,
    TASK_EVENT_TYPES,
    TaskFailed,
    TaskProgressed,
    TaskSucceeded,
)
from receiver.domain.statuses import DELIVERY_STATUSES, DeliveryStatus
from receiver.domain.tasks import LIVE_STATUSES, Outcome, TaskStatus
from receiver.web.schemas import SubscriberIn


def test_event_types_are_the_task_events_then_the_operational_one() -> None:
    assert TASK_EVENT_TYPES == (TaskProgressed.type, TaskSucceeded.type, TaskFailed.type)
    assert EVENT_TYPES == (*TASK_EVENT_TYPES, SUBSCRIBER_DISABLED)
    assert set(DEFAULT_EVENT_TYPES) == {"task.succeeded", "task.failed"}


def test_live_statuses_are_exactly_the_non_terminal_ones_in_forward_order() -> None:
    assert set(LIVE_STATUSES) == {s for s in TaskStatus if not s.is_terminal}
    assert [s.rank for s in LIVE_STATUSES] == sorted(s.rank for s in LIVE_STATUSES)
    assert metrics.LIVE_STATES == ("SUBMITTING", "PENDING", "THROTTLED", "RUNNING")


def test_delivery_statuses() -> None:
    assert DELIVERY_STATUSES == ("pending", "succeeded", "failed", "cancelled")
    assert DeliveryStatus.PENDING == "pending"  # compares equal to the stored string


def test_metrics_label_every_outcome() -> None:
    # every outcome but "queued" (the web's, for each stored callback) is one of applying
    assert metrics.APPLIED_OUTCOMES == tuple(o.value for o in Outcome if o != "queued")
    assert "unconfirmed" in metrics.APPLIED_OUTCOMES
    assert "task_id_mismatch" in metrics.APPLIED_OUTCOMES
    assert "queued" not in metrics.APPLIED_OUTCOMES


def test_the_api_accepts_every_event_type_and_no_other() -> None:
    schema = SubscriberIn.model_json_schema()["properties"]["event_types"]["anyOf"][0]
    assert tuple(schema["items"]["enum"]) == EVENT_TYPES
