"""Retry policy, pure: attempt count, status and ``Retry-After`` in; next time or dead letter out.

Follows the Standard Webhooks recommendations ("Deliverability and reliability"): a schedule of
growing delays (about three days by default) with jitter, ``Retry-After`` honoured within
bounds, and a slower pace after a sign that the subscriber is overloaded (429, timeout).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

#: The longest ``Retry-After`` we honour, seconds (a day).
MAX_RETRY_AFTER = 86400.0
#: After a 429 or a timeout, wait at least this long, seconds (capped by the schedule's largest
#: delay, so that a compressed test schedule stays compressed).
SLOW_DOWN_FLOOR = 60.0


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date; None if absent
    or unreadable; never negative."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


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
