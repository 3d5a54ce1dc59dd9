"""Load generators: wrk for the closed-loop ingest runs, a Python open-loop sender for latency.

wrk (C, event loop) drives the ingest benchmark: one thread, N keep-alive connections, each
request the next line of a file of callback bodies (a Lua script), statistics printed as one
JSON line by the script's ``done``. Its CPU time is measured around each run, so a report can
show that the load generator was not the bottleneck (it uses a fraction of one core while the
bare endpoint saturates).
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import queue
import random
import resource
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

WRK_SCRIPT = r"""
-- bench/loadgen.py: POST the lines of a file in turn (thread t of T takes lines t, t+T, ...,
-- after the first args[4] lines).
local bodies = {}
local nthreads = 1
local index = 0
local counter = 0
local path = "/callbacks/useapi"

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
  nthreads = tonumber(args[2]) or 1
  path = args[3] or "/callbacks/useapi"
  index = (tid or 0) + (tonumber(args[4]) or 0)
end

local headers = {["Content-Type"] = "application/json"}

function request()
  local body = bodies[(index % #bodies) + 1]
  index = index + nthreads
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,' ..
    '"connect_errors":%.0f,"read_errors":%.0f,"write_errors":%.0f,"status_errors":%.0f,' ..
    '"timeouts":%.0f,"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,"p999_us":%.0f,' ..
    '"mean_us":%.1f,"max_us":%.0f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
  -- every distinct latency (microseconds) with its count, so that runs can be merged
  local parts = {}
  for i = 1, #latency do
    local value, count = latency(i)
    parts[#parts + 1] = string.format("%.0f:%.0f", value, count)
  end
  io.write("BENCHHIST " .. table.concat(parts, ",") .. "\n")
end
"""


def wrk_path() -> str | None:
    return shutil.which("wrk")


@dataclass(frozen=True)
class WrkResult:
    """One wrk run. Latencies in milliseconds; ``cpu_s`` is wrk's own CPU time."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    non_2xx: int
    cpu_s: float
    #: ``(latency in microseconds, requests)`` for every distinct latency, ascending.
    histogram: tuple[tuple[int, int], ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p90_ms": round(self.p90_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "max_ms": round(self.max_ms, 2),
            "errors": self.errors,
            "non_2xx": self.non_2xx,
            "wrk_cpu_s": round(self.cpu_s, 3),
        }


def run_wrk(
    url: str,
    bodies: Path,
    *,
    script: Path,
    connections: int,
    seconds: float,
    threads: int = 1,
    path: str = "/callbacks/useapi",
    skip: int = 0,
    until: threading.Event | None = None,
) -> WrkResult:
    """POST the lines of ``bodies`` to ``url`` + ``path`` for ``seconds`` over ``connections``.

    :param skip: start after the first ``skip`` lines of ``bodies``.
    :param until: when given, stop wrk (SIGINT: it reports what it did so far) as soon as the
        event is set, or after ``seconds`` if that comes first.
    :raises RuntimeError: wrk failed or printed no statistics.
    """
    if not script.exists():
        script.write_text(WRK_SCRIPT)
    exe = wrk_path()
    if exe is None:
        raise RuntimeError("wrk is not installed (make bench installs it: apt-get install wrk)")
    argv = [
        exe,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
        "--",
        str(bodies),
        str(threads),
        path,
        str(skip),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        if until is not None:
            until.wait(seconds)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        try:
            stdout, stderr = proc.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = stdout.splitlines()
    line = next((ln for ln in lines if ln.startswith("BENCHJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{stdout}\n{stderr}")
    stats = json.loads(line.removeprefix("BENCHJSON "))
    hist = next((ln for ln in lines if ln.startswith("BENCHHIST ")), "BENCHHIST ")
    pairs = [item.split(":") for item in hist.removeprefix("BENCHHIST ").split(",") if item]
    secs = stats["duration_us"] / 1e6
    errors = int(
        stats["connect_errors"] + stats["read_errors"] + stats["write_errors"] + stats["timeouts"]
    )
    return WrkResult(
        requests=int(stats["requests"]),
        seconds=secs,
        rps=stats["requests"] / secs if secs else 0.0,
        p50_ms=stats["p50_us"] / 1000,
        p90_ms=stats["p90_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        max_ms=stats["max_us"] / 1000,
        errors=errors,
        non_2xx=int(stats["status_errors"]),
        cpu_s=cpu,
        histogram=tuple((int(value), int(count)) for value, count in pairs),
    )


def merged(runs: Sequence[WrkResult]) -> dict[str, Any]:
    """Several wrk runs taken as one: requests/s over their summed durations, and p50/p90/p99
    (nearest rank) and max of all their requests together, from their histograms.

    :returns: ``{"requests", "seconds", "rps", "p50_ms", "p90_ms", "p99_ms", "max_ms",
        "errors", "non_2xx"}`` (latencies in milliseconds; NaN when there was no request).
    """
    counts: dict[int, int] = {}
    for run in runs:
        for value, count in run.histogram:
            counts[value] = counts.get(value, 0) + count
    ordered = sorted(counts.items())
    total = sum(count for _, count in ordered)

    def pct(p: float) -> float:
        if not total:
            return math.nan
        rank, seen = max(1, math.ceil(p / 100 * total)), 0
        for value, count in ordered:
            seen += count
            if seen >= rank:
                return value / 1000
        return ordered[-1][0] / 1000

    seconds = sum(r.seconds for r in runs)
    requests_done = sum(r.requests for r in runs)
    return {
        "requests": requests_done,
        "seconds": round(seconds, 3),
        "rps": round(requests_done / seconds, 1) if seconds else math.nan,
        "p50_ms": round(pct(50), 2),
        "p90_ms": round(pct(90), 2),
        "p99_ms": round(pct(99), 2),
        "max_ms": round(ordered[-1][0] / 1000, 2) if ordered else math.nan,
        "errors": sum(r.errors for r in runs),
        "non_2xx": sum(r.non_2xx for r in runs),
    }


@dataclass(frozen=True)
class Sent:
    """One request of :func:`open_loop`: key, Unix send time, status (None: failed), seconds
    from send to answer (``elapsed``) and from the time it was due to the answer
    (``since_due``: counts the wait for a free sender, so a stall shows in every request it
    delayed, not only in the ones that were in flight)."""

    key: Any
    sent_at: float
    status: int | None
    elapsed: float
    since_due: float = 0.0


def open_loop(
    url: str,
    items: Sequence[tuple[Any, str]],
    *,
    rate: float,
    senders: int = 8,
    timeout: float = 10.0,
    until: threading.Event | None = None,
) -> list[Sent]:
    """POST ``items`` (key, JSON body) to ``url`` at ``rate`` per second on a fixed timetable.

    Open loop: request i is due at ``start + i / rate`` whether or not earlier ones have been
    answered (a pool of ``senders`` threads; a late sender starts at once). Bounded by
    ``len(items)``; every request has a timeout.

    :param until: when given, no request due after the event is set is sent (the run ends
        then, or when ``items`` run out if that comes first).
    """
    work: queue.Queue[tuple[float, Any, str] | None] = queue.Queue()
    results: list[Sent] = []
    lock = threading.Lock()

    def sender() -> None:
        with requests.Session() as session:
            session.trust_env = False
            while True:
                item = work.get()
                if item is None:
                    return
                due, key, body = item
                wait = due - time.monotonic()
                if until is not None:
                    if until.wait(max(0.0, wait)):
                        continue  # drain the queue without sending
                elif wait > 0:
                    time.sleep(wait)
                sent = time.time()
                t0 = time.monotonic()
                status: int | None
                try:
                    response = session.post(
                        url,
                        data=body.encode(),
                        headers={"Content-Type": "application/json"},
                        timeout=timeout,
                    )
                    status = response.status_code
                except requests.RequestException:
                    status = None
                done = time.monotonic()
                with lock:
                    results.append(Sent(key, sent, status, done - t0, done - due))

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(senders)]
    for thread in threads:
        thread.start()
    start = time.monotonic() + 0.05
    for index, (key, body) in enumerate(items):
        work.put((start + index / rate, key, body))
    for _ in threads:
        work.put(None)
    for thread in threads:
        thread.join(timeout=len(items) / rate + timeout + 30)
    return results


def paced_summary(sent: Sequence[Sent], rate: float) -> dict[str, Any]:
    """Latency of an :func:`open_loop` run measured from each request's due time.

    :returns: ``{"offered_per_s", "requests", "seconds", "rps", "p50_ms", "p90_ms", "p99_ms",
        "max_ms", "errors", "non_2xx"}`` (latencies in milliseconds, nearest rank; NaN when
        nothing was sent); ``seconds`` from the first send to the last answer.
    """
    answered = sorted(s.since_due * 1000 for s in sent if s.status is not None)

    def pct(p: float) -> float:
        if not answered:
            return math.nan
        return round(answered[max(1, math.ceil(p / 100 * len(answered))) - 1], 2)

    first = min((s.sent_at for s in sent), default=0.0)
    last = max((s.sent_at + s.elapsed for s in sent), default=0.0)
    seconds = last - first
    return {
        "offered_per_s": rate,
        "requests": len(sent),
        "seconds": round(seconds, 3),
        "rps": round(len(sent) / seconds, 1) if seconds > 0 else math.nan,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": round(answered[-1], 2) if answered else math.nan,
        "errors": sum(1 for s in sent if s.status is None),
        "non_2xx": sum(1 for s in sent if s.status is not None and not 200 <= s.status < 300),
    }


def due_at(sent: Sent) -> float:
    """The Unix time ``sent`` was due: its send time less its wait for a free sender."""
    return sent.sent_at - (sent.since_due - sent.elapsed)


#: The latency buckets of :func:`p99_shift_test`: each 1% wider than the one below, from
#: 0.01 ms (so a bucket's p99 is within 1% of the exact one).
BUCKET_GROWTH = 1.01
BUCKET_FLOOR_MS = 0.01


def latency_slices(
    sent: Sequence[Sent], windows: Sequence[tuple[bool, float, float]], seconds: float
) -> list[tuple[bool, list[float]]]:
    """Cut each window ``(label, begin, end)`` (Unix seconds) into whole ``seconds``-long
    slices, in the windows' order: each slice's label and the latencies (ms, from the due
    time: :func:`due_at`) of the requests due in it that were answered. A window's remainder
    shorter than ``seconds`` is left out, and so is a slice in which nothing was answered.

    :raises ValueError: ``seconds`` is not positive.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, not {seconds!r}")
    out: list[tuple[bool, list[float]]] = []
    for label, begin, end in windows:
        count = int((end - begin) // seconds)
        parts: list[list[float]] = [[] for _ in range(count)]
        for s in sent:
            index = math.floor((due_at(s) - begin) / seconds)
            if 0 <= index < count and s.status is not None:
                parts[index].append(s.since_due * 1000)
        out += [(label, part) for part in parts if part]
    return out


def _bucket(ms: float) -> int:
    return max(0, math.floor(math.log(max(ms, BUCKET_FLOOR_MS) / BUCKET_FLOOR_MS, BUCKET_GROWTH)))


def p99_shift_test(
    slices: Sequence[tuple[bool, Sequence[float]]], *, rounds: int = 2000, seed: int = 17
) -> dict[str, Any]:
    """Is the p99 of the slices labelled True (a purge ran) higher than that of the slices
    labelled False by more than chance? A one-sided block permutation test.

    The statistic is the pooled p99 of the True slices less that of the False slices (ms, each
    the upper edge of its :data:`BUCKET_GROWTH` bucket). The labels are then shuffled among the
    slices ``rounds`` times (as many True as before; each slice keeps its requests together,
    so a stall inside a slice moves as one) and the statistic taken again: where the windows
    with and without alternate through one run, the shuffled statistics are what the machine's
    own noise makes of the same requests. ``p_value`` is ``(1 + shuffles at or above the
    observed) / (rounds + 1)``, ``noise_ms`` the 95th percentile of the shuffled statistics.

    :param slices: ``(label, latencies in ms)``, as :func:`latency_slices` gives.
    :param seed: of the shuffles (the same slices give the same answer).
    :returns: ``{"difference_ms", "noise_ms", "p_value", "rounds", "slices": [True, False]}``
        (the counts of slices); NaNs when either label has no slice.
    :raises ValueError: ``rounds`` is not positive.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be positive, not {rounds!r}")
    labels = [label for label, latencies in slices if latencies]
    hists = [Counter(map(_bucket, latencies)) for _, latencies in slices if latencies]
    marked = sum(labels)
    out: dict[str, Any] = {"rounds": rounds, "slices": [marked, len(labels) - marked]}
    if not 0 < marked < len(labels):
        return {**out, "difference_ms": math.nan, "noise_ms": math.nan, "p_value": math.nan}
    low = min(min(h) for h in hists)
    high = max(max(h) for h in hists)
    dense = [[h.get(b, 0) for b in range(low, high + 1)] for h in hists]
    total = [sum(column) for column in zip(*dense, strict=True)]
    # Sum the fewer slices; the rest is the total less them.
    few = min(marked, len(labels) - marked)
    few_is_true = few == marked

    def p99(counts: Sequence[int]) -> float:
        cumulative = list(itertools.accumulate(counts))
        rank = max(1, math.ceil(0.99 * cumulative[-1]))
        return BUCKET_FLOOR_MS * BUCKET_GROWTH ** (low + bisect.bisect_left(cumulative, rank) + 1)

    def statistic(chosen: Sequence[int]) -> float:
        part = [sum(column) for column in zip(*(dense[i] for i in chosen), strict=True)]
        rest = [t - p for t, p in zip(total, part, strict=True)]
        marked_counts, other = (part, rest) if few_is_true else (rest, part)
        return p99(marked_counts) - p99(other)

    indices = range(len(labels))
    observed = statistic([i for i in indices if labels[i] == few_is_true])
    shuffle = random.Random(seed)
    shuffled = sorted(statistic(shuffle.sample(indices, few)) for _ in range(rounds))
    at_or_above = len(shuffled) - bisect.bisect_left(shuffled, observed - 1e-9)
    return {
        **out,
        "difference_ms": round(observed, 2),
        "noise_ms": round(shuffled[max(0, math.ceil(0.95 * rounds) - 1)], 2),
        "p_value": round((1 + at_or_above) / (rounds + 1), 4),
    }
