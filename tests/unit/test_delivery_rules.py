"""Pure delivery rules (receiver/domain/delivery.py): a delivery's next step after an attempt,
a subscriber's health and auto-disable, and which secrets sign. No threads, no database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from receiver.delivery.sender import SendResult
from receiver.domain.delivery import (
    MAX_LAST_ERROR,
    NextStep,
    RetryPolicy,
    health_after,
    next_step,
    signing_secrets,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy((10.0, 100.0))  # three attempts in all

OK = SendResult("success", 204, 12.0)
ERROR = SendResult("http_error", 500, 30.0, "HTTP 500")
GONE = SendResult("gone", 410, 8.0, "HTTP 410")


class Rand:
    """Counts its calls: the jitter is drawn only for a retry."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.value


def test_a_success_completes_the_delivery_without_drawing_jitter() -> None:
    rand = Rand(0.5)
    assert next_step(POLICY, OK, 1, NOW, rand) == NextStep("succeeded", completed_at=NOW)
    assert rand.calls == 0


def test_410_is_a_dead_letter_at_once_even_with_retries_left() -> None:
    rand = Rand(0.5)
    assert next_step(POLICY, GONE, 1, NOW, rand) == NextStep("failed", completed_at=NOW)
    assert rand.calls == 0


def test_a_failure_is_retried_on_the_schedule_with_jitter() -> None:
    rand = Rand(0.5)
    step = next_step(POLICY, ERROR, 1, NOW, rand)
    assert step == NextStep("pending", next_attempt_at=NOW + timedelta(seconds=10))
    assert rand.calls == 1
    low = next_step(POLICY, ERROR, 2, NOW, Rand(0.0))
    assert low.next_attempt_at == NOW + timedelta(seconds=80)  # 100 s - 20 %


def test_the_last_failure_is_a_dead_letter() -> None:
    assert next_step(POLICY, ERROR, 3, NOW, Rand(0.5)) == NextStep("failed", completed_at=NOW)


def test_retry_after_and_429_and_timeouts_slow_down() -> None:
    slow = RetryPolicy((5.0, 300.0))
    busy = SendResult("http_error", 429, 5.0, "HTTP 429")
    assert next_step(slow, busy, 1, NOW, Rand(0.5)).next_attempt_at == NOW + timedelta(seconds=60)
    timeout = SendResult("timeout", None, 5000.0, "timed out")
    assert next_step(slow, timeout, 1, NOW, Rand(0.5)).next_attempt_at == NOW + timedelta(
        seconds=60
    )
    later = SendResult("http_error", 503, 5.0, "HTTP 503", retry_after=120.0)
    assert next_step(slow, later, 1, NOW, Rand(0.5)).next_attempt_at == NOW + timedelta(seconds=120)


@dataclass(frozen=True)
class Health:
    enabled: bool
    failing_since: datetime | None


def test_a_success_clears_failing_since() -> None:
    health = health_after(Health(True, NOW - timedelta(hours=1)), [OK], NOW, 3600.0)
    assert health == {"failing_since": None, "last_success_at": NOW}


def test_a_first_failure_marks_failing_and_keeps_the_subscriber() -> None:
    health = health_after(Health(True, None), [ERROR], NOW, 3600.0)
    assert health == {"failing_since": NOW, "last_failure_at": NOW, "last_error": "HTTP 500"}


def test_failing_longer_than_disable_after_disables_once() -> None:
    since = NOW - timedelta(seconds=3601)
    health = health_after(Health(True, since), [ERROR, ERROR], NOW, 3600.0)
    assert health["enabled"] is False and health["disabled_at"] == NOW
    assert health["failing_since"] == since
    assert health["disabled_reason"] == (
        f"only failures since {since.isoformat()} (more than 3600 s)"
    )
    # exactly at the limit it is not yet too long
    edge = health_after(Health(True, NOW - timedelta(seconds=3600)), [ERROR], NOW, 3600.0)
    assert "enabled" not in edge


def test_410_disables_at_once_and_a_disabled_one_is_not_disabled_again() -> None:
    health = health_after(Health(True, None), [GONE], NOW, 3600.0)
    assert health["enabled"] is False
    assert health["disabled_reason"] == "the endpoint answered 410 Gone"
    again = health_after(Health(False, NOW), [GONE], NOW, 3600.0)
    assert "enabled" not in again and again["last_failure_at"] == NOW


def test_order_within_a_batch_decides_the_health() -> None:
    after_failure = health_after(Health(True, None), [ERROR, OK], NOW, 3600.0)
    assert after_failure["failing_since"] is None and after_failure["last_error"] == "HTTP 500"
    after_success = health_after(Health(True, None), [OK, ERROR], NOW, 3600.0)
    assert after_success["failing_since"] == NOW and after_success["last_success_at"] == NOW


def test_a_removed_subscriber_is_never_disabled_and_errors_are_cut() -> None:
    long = SendResult("gone", 410, 1.0, "x" * (MAX_LAST_ERROR + 100))
    health = health_after(None, [long], NOW, 0.0)
    assert "enabled" not in health and len(health["last_error"]) == MAX_LAST_ERROR


LATER = NOW + timedelta(seconds=1)


@pytest.mark.parametrize(
    ("previous", "expires_at", "expected"),
    [
        (None, None, ["whsec_new"]),
        ("whsec_old", LATER, ["whsec_new", "whsec_old"]),
        ("whsec_old", NOW, ["whsec_new"]),  # the grace period has ended
        (None, LATER, ["whsec_new"]),
        ("whsec_old", None, ["whsec_new"]),
    ],
)
def test_which_secrets_sign(
    previous: str | None, expires_at: datetime | None, expected: list[str]
) -> None:
    assert signing_secrets("whsec_new", previous, expires_at, NOW) == expected
