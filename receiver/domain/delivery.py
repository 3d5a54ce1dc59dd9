"""The delivery rules, pure: what an attempt's outcome means for its delivery and its subscriber.

- :func:`next_step`: after an attempt, the delivery succeeded, is retried at a time
  (:class:`RetryPolicy`: a schedule with jitter, ``Retry-After`` honoured within bounds, a slower
  pace after a 429 or a timeout), or is a dead letter (retries exhausted, or 410 Gone).
- :func:`health_after`: a subscriber's health after a run of attempts, and whether it is
  disabled (at once for 410 Gone, or after only failures for longer than ``disable_after``).
- :func:`signing_secrets`: the secrets that sign a webhook (the previous one too while a
  rotation's grace period lasts).

Follows the Standard Webhooks recommendations ("Deliverability and reliability", "Delivery
success and failure"). No I/O and no clock: time comes in as ``now`` (aware UTC), randomness
as a function; rows come in as anything with the fields named by the protocols below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

#: How one attempt ended.
AttemptOutcome = Literal[
    "success", "http_error", "redirect", "gone", "timeout", "connection_error", "blocked"
]
#: What a delivery is after an attempt: still to be tried, or done one way or the other.
DeliveryStep = Literal["pending", "succeeded", "failed"]

#: The longest ``Retry-After`` we honour, seconds (a day).
MAX_RETRY_AFTER = 86400.0
#: After a 429 or a timeout, wait at least this long, seconds (capped by the schedule's largest
#: delay, so that a compressed test schedule stays compressed).
SLOW_DOWN_FLOOR = 60.0
#: The longest ``last_error`` kept on a subscriber, characters.
MAX_LAST_ERROR = 500


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a failed delivery again.

    :param schedule: seconds to wait after attempt 1, 2, …; ``len(schedule) + 1`` attempts in all.
    :param jitter: the fraction by which each delay is spread, both ways (0.2 = ±20 %).
    """

    schedule: Sequence[float]
    jitter: float = 0.2

    @property
    def max_attempts(self) -> int:
        return len(self.schedule) + 1

    def next_attempt_at(
        self,
        attempts_done: int,
        now: datetime,
        *,
        rand: float,
        retry_after: float | None = None,
        slow_down: bool = False,
    ) -> datetime | None:
        """The time of the next attempt, or None when retries are exhausted (dead letter).

        :param attempts_done: attempts made so far, this one included (1 after the first).
        :param rand: a number in [0, 1) that picks the jitter (tests pass a fixed one).
        :param retry_after: the subscriber's ``Retry-After``, seconds, if any.
        :param slow_down: the attempt hit a 429 or a timeout.
        """
        if attempts_done >= self.max_attempts:
            return None
        base = float(self.schedule[attempts_done - 1])
        delay = base * (1 + self.jitter * (2 * rand - 1))
        if slow_down:
            delay = max(delay, min(SLOW_DOWN_FLOOR, max(self.schedule)))
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
        return now + timedelta(seconds=max(0.0, delay))


class AttemptResult(Protocol):
    """What the rules read of one attempt (``receiver.delivery.sender.SendResult`` has it)."""

    @property
    def outcome(self) -> AttemptOutcome: ...
    @property
    def status_code(self) -> int | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def retry_after(self) -> float | None:
        """The answer's ``Retry-After``, seconds (read by the sender), if any."""
        ...


@dataclass(frozen=True)
class NextStep:
    """A delivery after an attempt: ``status`` with ``next_attempt_at`` (pending) or
    ``completed_at`` (succeeded, or failed: a dead letter); aware UTC datetimes."""

    status: DeliveryStep
    next_attempt_at: datetime | None = None
    completed_at: datetime | None = None


def next_step(
    policy: RetryPolicy,
    result: AttemptResult,
    attempts_done: int,
    now: datetime,
    rand: Callable[[], float],
) -> NextStep:
    """What a delivery becomes after an attempt that ended in ``result``.

    A success completes it; 410 Gone fails it at once (the endpoint said it is gone for good);
    any other failure is retried at the time ``policy`` gives, or fails (dead letter) when
    retries are exhausted.

    :param attempts_done: attempts made so far, this one included (1 after the first).
    :param now: aware UTC time the attempt is recorded at.
    :param rand: gives a number in [0, 1) for the jitter; called only for a retry.
    """
    if result.outcome == "success":
        return NextStep("succeeded", completed_at=now)
    if result.outcome == "gone":
        return NextStep("failed", completed_at=now)
    next_at = policy.next_attempt_at(
        attempts_done,
        now,
        rand=rand(),
        retry_after=result.retry_after,
        slow_down=result.outcome == "timeout" or result.status_code == 429,
    )
    if next_at is None:
        return NextStep("failed", completed_at=now)
    return NextStep("pending", next_attempt_at=next_at)


class SubscriberHealth(Protocol):
    """What the health rule reads of a subscriber (``receiver.store.repositories.Subscriber``)."""

    @property
    def enabled(self) -> bool: ...
    @property
    def failing_since(self) -> datetime | None: ...


def health_after(
    current: SubscriberHealth | None,
    results: Sequence[AttemptResult],
    now: datetime,
    disable_after: float,
) -> dict[str, Any]:
    """A subscriber's health columns after ``results`` (its attempts, in the order they end).

    A success clears ``failing_since`` and sets ``last_success_at``; a failure sets
    ``failing_since`` (unless already set), ``last_failure_at`` and ``last_error`` (at most
    :data:`MAX_LAST_ERROR` characters), and disables an enabled subscriber: at once for 410 Gone,
    or once it has seen only failures for longer than ``disable_after`` seconds. Disabling adds
    ``enabled`` False, ``disabled_reason`` (a sentence) and ``disabled_at``.

    :param current: the subscriber as stored, or None when it was removed (then nothing is
        disabled, as there is nothing to disable).
    :returns: only the columns to write, by name: ``failing_since``, ``last_success_at``,
        ``last_failure_at``, ``last_error``, ``enabled``, ``disabled_reason``, ``disabled_at``.
    """
    failing_since = current.failing_since if current else None
    enabled = bool(current and current.enabled)
    health: dict[str, Any] = {}
    for result in results:
        if result.outcome == "success":
            failing_since = None
            health.update(failing_since=None, last_success_at=now)
            continue
        failing_since = failing_since or now
        health.update(
            failing_since=failing_since,
            last_failure_at=now,
            last_error=(result.error or "")[:MAX_LAST_ERROR],
        )
        reason: str | None = None
        if result.outcome == "gone":
            reason = "the endpoint answered 410 Gone"
        elif now - failing_since > timedelta(seconds=disable_after):
            reason = (
                f"only failures since {failing_since.isoformat()} (more than {disable_after:.0f} s)"
            )
        if reason and enabled:
            health.update(enabled=False, disabled_reason=reason, disabled_at=now)
            enabled = False
    return health


def signing_secrets(
    secret: str, previous: str | None, previous_expires_at: datetime | None, now: datetime
) -> list[str]:
    """The secrets that sign a webhook at ``now`` (aware UTC): the subscriber's ``secret``, and
    its ``previous`` one until ``previous_expires_at``, the end of a rotation's grace period
    (several ``v1,`` signatures, SPEC §2)."""
    out = [secret]
    if previous and previous_expires_at and previous_expires_at > now:
        out.append(previous)
    return out


__all__ = [
    "MAX_LAST_ERROR",
    "MAX_RETRY_AFTER",
    "SLOW_DOWN_FLOOR",
    "AttemptOutcome",
    "AttemptResult",
    "DeliveryStep",
    "NextStep",
    "RetryPolicy",
    "SubscriberHealth",
    "health_after",
    "next_step",
    "signing_secrets",
]
