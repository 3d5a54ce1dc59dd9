"""The bench's like-for-like comparison of ingest with and without a purge: requests cut into
slices by the window they were due in, and a permutation test of the p99 over those slices."""

from __future__ import annotations

import math
import random

import pytest

from bench.loadgen import Sent, due_at, latency_slices, p99_shift_test
from bench.report import percentile


def _sent(due: float, latency: float, wait: float = 0.0, status: int | None = 202) -> Sent:
    """A request due at ``due`` (Unix s) that waited ``wait`` s for a sender and took the rest."""
    return Sent(None, due + wait, status, latency - wait, latency)


def test_due_at_takes_back_the_wait_for_a_sender() -> None:
    assert due_at(_sent(100.0, 0.5, wait=0.2)) == pytest.approx(100.0)


def test_each_whole_slice_of_each_window_gets_its_own_latencies_and_a_remainder_none() -> None:
    sent = [_sent(1000.0 + i / 100, 0.010) for i in range(3000)]  # 30 s at 100/s, 10 ms
    sent += [_sent(1012.0 + i / 100, 0.500) for i in range(50)]  # half a second of 500 ms
    # A purge window of 25 s (two slices, 5 s left out), then one without of 5 s (none).
    slices = latency_slices(sent, [(True, 1000.0, 1025.0), (False, 1025.0, 1030.0)], 10.0)
    assert [label for label, _ in slices] == [True, True]
    assert [len(latencies) for _, latencies in slices] == [1000, 1050]
    assert [percentile(latencies, 99) for _, latencies in slices] == [10.0, 500.0]


def test_a_request_counts_where_it_was_due_not_where_it_was_sent() -> None:
    # Due at 9.5 s, sent at 10.5 s after waiting for a sender: the first slice's.
    slices = latency_slices([_sent(9.5, 2.0, wait=1.0)], [(False, 0.0, 20.0)], 10.0)
    assert slices == [(False, [2000.0])]


def test_failed_requests_and_empty_slices_are_left_out() -> None:
    sent = [_sent(5.0, 0.020), _sent(6.0, 9.0, status=None), _sent(25.0, 0.040)]
    assert latency_slices(sent, [(False, 0.0, 30.0)], 10.0) == [(False, [20.0]), (False, [40.0])]


def test_a_slice_length_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        latency_slices([], [], 0.0)


def _run(rise: float, stall_every: int = 0) -> list[tuple[bool, list[float]]]:
    """120 slices of 3,000 requests, purge and none alternating 3 to 1, as the bench's windows
    are; latencies lognormal around 5 ms, those of the purge's slices times ``1 + rise``; and
    every ``stall_every``-th slice, whatever its label, with 2% of its requests at 200 ms (the
    machine's own stalls)."""
    draw = random.Random(3)
    slices = []
    for i in range(120):
        purging = i % 4 != 0
        latencies = [draw.lognormvariate(1.6, 0.4) * (1 + rise * purging) for _ in range(3000)]
        if stall_every and i % stall_every == 0:
            latencies[:60] = [200.0] * 60
        slices.append((purging, latencies))
    return slices


def test_no_rise_is_unchanged_and_a_rise_is_found() -> None:
    same = p99_shift_test(_run(0.0), rounds=400)
    assert same["slices"] == [90, 30]
    assert same["p_value"] >= 0.05
    assert abs(same["difference_ms"]) <= same["noise_ms"] + 0.5
    risen = p99_shift_test(_run(0.15), rounds=400)
    assert risen["p_value"] < 0.01
    assert risen["difference_ms"] > risen["noise_ms"] > 0


def test_stalls_that_fall_on_both_alike_do_not_count_against_the_purge() -> None:
    # Every 7th slice stalls; 7 and 4 are coprime, so the stalls fall on labels in proportion.
    slices = _run(0.0, stall_every=7)
    assert any(max(latencies) == 200.0 for purging, latencies in slices if not purging)
    assert p99_shift_test(slices, rounds=400)["p_value"] >= 0.05


def test_the_same_slices_give_the_same_answer_and_one_label_alone_gives_none() -> None:
    slices = _run(0.05)
    assert p99_shift_test(slices, rounds=200) == p99_shift_test(slices, rounds=200)
    alone = p99_shift_test([(True, [1.0, 2.0])], rounds=10)
    assert alone["slices"] == [1, 0] and math.isnan(alone["p_value"])
    with pytest.raises(ValueError, match="positive"):
        p99_shift_test(slices, rounds=0)
