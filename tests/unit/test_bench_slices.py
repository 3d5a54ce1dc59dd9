"""The bench's like-for-like comparison of long purge windows with short windows without."""

from __future__ import annotations

import math

import pytest

from bench.loadgen import Sent, due_at, paced_summary, slice_p99s


def _sent(due: float, latency: float, wait: float = 0.0, status: int | None = 202) -> Sent:
    """A request due at ``due`` (Unix s) that waited ``wait`` s for a sender and took the rest."""
    return Sent(None, due + wait, status, latency - wait, latency)


def test_due_at_takes_back_the_wait_for_a_sender() -> None:
    assert due_at(_sent(100.0, 0.5, wait=0.2)) == pytest.approx(100.0)


def test_each_whole_slice_gets_its_own_p99_and_a_remainder_none() -> None:
    sent = [_sent(1000.0 + i / 100, 0.010) for i in range(3000)]  # 30 s at 100/s, 10 ms
    sent += [_sent(1012.0 + i / 100, 0.500) for i in range(50)]  # half a second of 500 ms
    p99s = slice_p99s(sent, 1000.0, 1025.0, 10.0)  # 25 s: two slices, 5 s left out
    assert p99s == [10.0, 500.0]


def test_a_stall_that_decides_a_long_window_is_one_slice_among_many() -> None:
    sent = [_sent(i / 100, 0.010) for i in range(60_000)]  # 600 s at 100/s
    sent += [_sent(300 + i / 100, 0.300) for i in range(100)]  # one stall of a second
    assert paced_summary(sent, 100.0)["p99_ms"] == 10.0  # 100 of 60,100: under 1%
    sent += [_sent(400 + i / 100, 0.300) for i in range(600)]  # and one of six seconds
    assert paced_summary(sent, 100.0)["p99_ms"] == 300.0
    p99s = slice_p99s(sent, 0.0, 600.0, 30.0)
    assert len(p99s) == 20
    assert sorted(p99s)[-2:] == [300.0, 300.0] and set(sorted(p99s)[:-2]) == {10.0}


def test_failed_requests_and_empty_slices_are_left_out() -> None:
    sent = [_sent(5.0, 0.020), _sent(6.0, 9.0, status=None), _sent(25.0, 0.040)]
    assert slice_p99s(sent, 0.0, 30.0, 10.0) == [20.0, 40.0]


def test_a_slice_length_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        slice_p99s([], 0.0, 10.0, 0.0)
    assert math.isnan(paced_summary([], 1.0)["p99_ms"])
