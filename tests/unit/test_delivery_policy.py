"""Pure delivery rules: the retry schedule, Retry-After, and the SSRF address classes."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest

from receiver.delivery.urls import UnsafeUrl, check_subscriber_url, forbidden_reason
from receiver.domain.delivery import RetryPolicy
from receiver.settings import DEFAULT_RETRY_SCHEDULE

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DEFAULT = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)


def seconds_until(when: datetime | None) -> float:
    assert when is not None
    return (when - NOW).total_seconds()


@pytest.mark.parametrize("attempt", range(1, 10))
@pytest.mark.parametrize("rand", [0.0, 0.5, 0.999999])
def test_each_delay_is_the_schedule_within_20_percent(attempt: int, rand: float) -> None:
    policy = RetryPolicy(DEFAULT)
    delay = seconds_until(policy.next_attempt_at(attempt, NOW, rand=rand))
    base = DEFAULT[attempt - 1]
    assert base * 0.8 - 1e-6 <= delay <= base * 1.2 + 1e-6


def test_retries_end_in_a_dead_letter_after_the_schedule() -> None:
    policy = RetryPolicy(DEFAULT)
    assert policy.max_attempts == 10
    assert policy.next_attempt_at(10, NOW, rand=0.5) is None
    assert 3 <= sum(DEFAULT_RETRY_SCHEDULE) / 86400 < 3.5  # the default spans about three days


def test_retry_after_is_honoured_within_bounds() -> None:
    policy = RetryPolicy(DEFAULT)
    assert seconds_until(policy.next_attempt_at(1, NOW, rand=0.5, retry_after=120)) == 120
    capped = policy.next_attempt_at(1, NOW, rand=0.5, retry_after=10 * 86400)
    assert seconds_until(capped) == 86400
    # a Retry-After shorter than the schedule does not hurry us
    assert seconds_until(policy.next_attempt_at(2, NOW, rand=0.5, retry_after=1)) == 300


def test_429_or_timeout_waits_at_least_a_minute() -> None:
    policy = RetryPolicy(DEFAULT)
    assert seconds_until(policy.next_attempt_at(1, NOW, rand=0.5, slow_down=True)) == 60
    compressed = RetryPolicy((0.2, 0.2))
    assert seconds_until(compressed.next_attempt_at(1, NOW, rand=0.5, slow_down=True)) == 0.2


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "CGNAT"),
        ("100.127.255.254", "CGNAT"),
        ("fd12:3456::1", "private"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("::ffff:10.0.0.1", "embeds 10.0.0.1"),
        ("2002:a00:1::", "embeds 10.0.0.1"),  # 6to4
        ("2002:7f00:1::", "embeds 127.0.0.1"),
        ("64:ff9b::a00:1", "embeds 10.0.0.1"),  # NAT64
        ("64:ff9b::a9fe:a9fe", "embeds 169.254.169.254"),
    ],
)
def test_forbidden_address_classes(address: str, fragment: str) -> None:
    reason = forbidden_reason(ipaddress.ip_address(address))
    assert reason is not None and fragment in reason


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "2606:2800:220:1::", "2002:5db8:d822::", "64:ff9b::5db8:d822"]
)
def test_public_addresses_pass(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://93.184.216.34/hook", "scheme must be https"),
        ("ftp://93.184.216.34/hook", "scheme"),
        ("https://user:pw@93.184.216.34/", "credentials"),
        ("https:///nohost", "no host"),
        ("https://[::1/", "malformed"),
        ("https://localhost/hook", "loopback"),
        ("https://api.localhost/hook", "loopback"),
        ("https://10.0.0.1/hook", "private"),
        ("https://" + "a" * 2100 + ".com/", "longer than"),
    ],
)
def test_registration_refuses(url: str, fragment: str) -> None:
    with pytest.raises(UnsafeUrl, match=fragment):
        check_subscriber_url(url, allow_private=False, resolve=False)


def test_allow_private_lifts_the_guard() -> None:
    check_subscriber_url("http://127.0.0.1:8080/hook", allow_private=True)
    with pytest.raises(UnsafeUrl):
        check_subscriber_url("ftp://127.0.0.1/", allow_private=True)


def test_naive_now_is_never_produced() -> None:
    when = RetryPolicy((1,)).next_attempt_at(1, NOW, rand=0.5)
    assert when is not None and when.tzinfo is not None and when - NOW <= timedelta(seconds=1.2)
