"""Ingest during a purge: callbacks/s and latency while ``relay purge`` removes 100,000 rows.

Per backend (each purge gets its own 100,000 seeded rows):

1. seed :data:`SEED_ROWS` rows of finished work done 60 days ago (older than the default
   ``RETENTION_DAYS=30``, which the run sets explicitly): ``SUCCEEDED`` jobs with their
   callbacks, events, deliveries and attempts (:func:`bench.data.seed_expired`, bulk
   ``INSERT``), and check with ``relay purge --dry-run`` that the purge would take all of them;
2. the ingest load of the ingest section (wrk, one thread, the same connections, fresh jobs,
   valid state-changing callbacks; the ingest subscriber still registered, so each callback
   writes its event and delivery) three times: without purge for ``ingest_seconds``; while
   ``relay purge`` runs, from the command's start to its exit or for
   :data:`PURGE_BODY_SECONDS`, whichever comes first (on SQLite the purge gives way to the
   load and takes longer: its rest runs without load, and the next run waits for its exit);
   without purge again for ``ingest_seconds``. The baseline is the two runs without purge
   taken together (before and after, so that a drift over the run falls on both sides).

3. at a fixed offered load, well below saturation (what a real deployment sees): for each fraction
   of :data:`FIXED_FRACTIONS` of the rate reached in 2 without purge, an open-loop sender
   (:func:`bench.loadgen.open_loop`: requests on a timetable whether or not earlier ones were
   answered, latency measured from each request's due time so that a stall is not hidden by the
   sender waiting) runs while windows without and with a purge alternate: the seeded rows in
   :data:`FIXED_TRANCHES` tranches of different ages, each removed by a purge of its own (the
   worker's purge function, in a process started before the load, as the worker is:
   :mod:`bench.purger`), with :data:`FIXED_GAP_SECONDS` without purge before, between and after them
   (after :data:`FIXED_WARMUP_SECONDS` of load that no window counts). A drift of the machine (other
   work on it) then falls on both sides, and the p99s of the windows without a purge show how much
   the figure moves without one: the p99 during the purges is "unchanged" when it is within that
   spread.

``relay purge`` is what the worker's schedule runs (:func:`receiver.store.retention.purge` with the
same batches, duty cycle and pauses), as a separate process, like a worker beside the web; the
fixed-rate runs call that function in a process that is already up, as the worker does (``relay
purge`` first spends about 1.5 s of a core starting Python, which a short window would count against
the purge). The run checks that each purge removed every seeded row and reports how long it took.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from bench import data, loadgen
from bench.procs import log
from bench.purger import Purger
from bench.stack import RelayStack
from simulator.processes import bin_path

if TYPE_CHECKING:  # bench.run imports this module
    from bench.run import Plan

#: Rows of expired work the purge removes (the issue's "purge of 100k rows").
SEED_ROWS = 100_000
#: ``RETENTION_DAYS`` of the purge, and the age of the seeded work (days).
RETENTION_DAYS = 30
SEEDED_AGE_DAYS = 60
#: The longest one ``relay purge`` may take (seconds); past it, it is killed and the run fails.
#: The purge gives way to the load (on SQLite a three-hundredth of the time while callbacks
#: arrive, a fifth once they stop).
PURGE_TIMEOUT = 1800.0
#: The longest saturating load during a purge, seconds, and the bodies prepared for it (in
#: seconds of the warm-up rate): the load stops when the purge exits or after this long,
#: whichever comes first (a purge beside a saturating load takes minutes: it gives way).
PURGE_BODY_SECONDS = 120.0
#: Offered loads of the fixed-rate runs, as fractions of the callbacks/s that the saturating
#: load reached without purge in the same run (rounded to 10/s): well below saturation. Fixed
#: rates of 100 and 200/s were tried first: on a busy shared machine 200/s was above what the
#: stack could take during the purge, and the open-loop queue grew for the whole run.
FIXED_FRACTIONS = (0.2, 0.4)
#: The fixed-rate runs purge their seeded rows in this many tranches (one ``relay purge`` each),
#: with a window without purge before, between and after them.
FIXED_TRANCHES = 4
#: Length of each window without purge in the fixed-rate runs, seconds (a tranche's purge takes
#: about a minute on PostgreSQL and minutes on SQLite, where it gives way more: a window without
#: still has thousands of requests, enough for a p99).
FIXED_GAP_SECONDS = 30.0
#: The start of each fixed-rate run, seconds, sent but counted in no window: the first requests
#: meet cold connections, caches and sender threads (a p99 of 47 ms at 340/s and 329 ms at
#: 680/s in the first 3 s, against 3–5 ms after), which used to inflate the first window
#: without a purge, and with it the spread that "unchanged" is judged against.
FIXED_WARMUP_SECONDS = 10.0
#: Bodies prepared for a fixed-rate run, in seconds of its rate (it ends after the last window,
#: or when they run out: the overlap says so). SQLite's four purges beside a steady load took
#: 22-26 minutes on a 2-core machine, PostgreSQL's (a three-hundredth too) over 30 minutes.
FIXED_BODY_SECONDS = 3600.0
#: Concurrent senders of the fixed-rate runs (a late request waits for one; measured from its
#: due time all the same).
FIXED_SENDERS = 16


def ingest_during_purge(
    plan: Plan,
    stacks: dict[str, RelayStack],
    subscriber_ids: dict[str, str],
    work: Path,
    seed_rows: int = SEED_ROWS,
) -> dict[str, Any]:
    """The scenario on every stack (see the module's docstring).

    :param subscriber_ids: ``{backend: id}`` of a subscriber that exists (the seeded
        deliveries are its).
    :returns: ``{backend: {...}}`` with ``baseline`` and ``during_purge`` (see
        :func:`bench.loadgen.merged`), their ratios, ``purge`` (rows removed per table,
        seconds, overlap), and ``fixed_rate``: one item per fraction of the plan's
        ``purge_fractions`` (by default :data:`FIXED_FRACTIONS`; see :func:`_fixed_rate`).
    :raises AssertionError: a purge did not remove every seeded row.
    """
    out: dict[str, Any] = {}
    for name, stack in stacks.items():
        item = _one(plan, stack, subscriber_ids[name], work, seed_rows)
        fractions = plan.purge_fractions
        rates = [max(10.0, round(item["baseline"]["rps"] * f, -1)) for f in fractions]
        item["fixed_rate"] = [
            _fixed_rate(stack, subscriber_ids[name], rate, seed_rows) for rate in rates
        ]
        out[name] = item
    return out


def _seed_expired(
    stack: RelayStack, subscriber_id: str, rows: int, ages: Sequence[int]
) -> dict[str, int]:
    """Seed ``rows`` rows of expired work finished ``age`` days ago for each of ``ages`` (one
    tranche each; :func:`bench.data.seed_expired`).

    :returns: the rows inserted per table, all tranches together.
    """
    started = datetime.now(UTC)
    seeded: dict[str, int] = {}
    t0 = time.monotonic()
    for age in ages:
        for table, n in data.seed_expired(
            stack.engine,
            stack.signer,
            subscriber_id,
            rows,
            finished=started - timedelta(days=age),
            reply_url=stack.reply_url,
        ).items():
            seeded[table] = seeded.get(table, 0) + n
    tranches = f" in {len(ages)} tranches" if len(ages) > 1 else ""
    log(
        f"purge {stack.kind}: seeded {sum(seeded.values())} rows{tranches} "
        f"in {time.monotonic() - t0:.1f} s"
    )
    return seeded


def _seed(stack: RelayStack, subscriber_id: str, rows: int, env: dict[str, str]) -> dict[str, int]:
    """Seed ``rows`` rows of expired work and check that ``relay purge --dry-run`` sees them."""
    seeded = _seed_expired(stack, subscriber_id, rows, [SEEDED_AGE_DAYS])
    dry = json.loads(stack.relay("purge", "--dry-run", env=env))["would_remove"]
    for table, n in seeded.items():
        assert dry[table] >= n, f"relay purge --dry-run would not remove {table}: {dry}"
    return seeded


class _Purge:
    """``relay purge`` as a child process; :attr:`ended` is set when it exits."""

    def __init__(self, stack: RelayStack, env: dict[str, str]) -> None:
        self.ended = threading.Event()
        self.outputs: dict[str, str] = {}
        self.start = time.monotonic()
        self.end = math.nan
        self.proc = subprocess.Popen(
            [bin_path("relay"), "purge"],
            env=env,
            cwd=stack.dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        try:
            self.outputs["stdout"], self.outputs["stderr"] = self.proc.communicate(
                timeout=PURGE_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.outputs["stdout"], self.outputs["stderr"] = self.proc.communicate()
        finally:
            self.end = time.monotonic()
            self.ended.set()

    def removed(self) -> dict[str, int]:
        """Wait for the exit; the rows removed per table.

        :raises RuntimeError: the command failed.
        """
        self._watcher.join(PURGE_TIMEOUT + 30)
        if self.proc.returncode != 0:
            raise RuntimeError(
                f"relay purge failed ({self.proc.returncode}): {self.outputs.get('stderr')}"
            )
        removed: dict[str, int] = json.loads(self.outputs["stdout"])["removed"]
        return removed


def _fixed_rate(
    stack: RelayStack,
    subscriber_id: str,
    rate: float,
    seed_rows: int,
    variants: Sequence[Mapping[str, str]] = ({},),
) -> dict[str, Any]:
    """Open-loop ingest at ``rate`` callbacks/s, with a purge running in alternate windows (the
    worker's :func:`receiver.store.retention.purge`, in a :class:`bench.purger.Purger` process
    started before the load, as the worker is: ``relay purge``'s own start-up is not counted): no
    purge for :data:`FIXED_GAP_SECONDS`, a purge of a tranche, no purge, … for
    :data:`FIXED_TRANCHES` tranches of ``seed_rows / FIXED_TRANCHES`` rows, so that ``seed_rows``
    rows go in all and the machine's own drift (other work on it) falls on both sides.

    Tranche ``k`` (of ``0 … FIXED_TRANCHES - 1``) is finished ``SEEDED_AGE_DAYS + 10 *
    (FIXED_TRANCHES - 1 - k)`` days ago, and its purge runs with a ``RETENTION_DAYS`` 5 days
    shorter than that: it removes that tranche alone. Each request is counted in the window it
    was due in; the first :data:`FIXED_WARMUP_SECONDS` of the load, before the first window,
    in none.

    :returns: ``{"rate", "baseline", "during_purge", "before", "after", "windows", …}``:
        ``baseline`` and ``during_purge`` are :func:`bench.loadgen.paced_summary` of every
        window without and with a purge taken together, ``before`` and ``after`` the first
        and last windows without; ``windows`` one summary per window in time order (with
        ``purge``: bool); ``no_purge_p99_ms`` the lowest and highest p99 of the windows without
        a purge (the spread of the machine alone) and ``unchanged`` whether the p99 during the
        purges is within it; ``slices``: every window cut into slices as long as a window
        without (:func:`bench.loadgen.slice_p99s`), their p99s, medians, and the share of the
        purge's slices above the highest window without (a long window catches more of the
        machine's rare stalls than a short one); the p50 and p99 ratios; ``purge``: rows,
        seconds, CPU, overlap.
    :param variants: more environment for the purges, taken in turn (tranche ``k`` gets
        ``variants[k % len(variants)]``, each with a purge process of its own): an A/B
        comparison of two ways to purge in one run, each
        window's ``variant`` says which; ``by_variant`` pools the purge windows of each.
    :raises AssertionError: the purges did not remove every seeded row.
    """
    tranche_rows = math.ceil(seed_rows / FIXED_TRANCHES)
    ages = [SEEDED_AGE_DAYS + 10 * (FIXED_TRANCHES - 1 - k) for k in range(FIXED_TRANCHES)]
    seeded = _seed_expired(stack, subscriber_id, tranche_rows, ages)
    created = datetime.now(UTC)
    bodies = _bodies(stack, f"fixed{rate:g}-{stack.kind}", rate * FIXED_BODY_SECONDS, created)
    until = threading.Event()
    windows: list[tuple[int | None, float, float]] = []  # (variant or None, Unix start, end)
    removed = dict.fromkeys(seeded, 0)
    failure: list[BaseException] = []

    def gap() -> None:
        begin = time.time()
        until.wait(FIXED_GAP_SECONDS)
        windows.append((None, begin, time.time()))

    def timetable() -> None:
        try:
            until.wait(FIXED_WARMUP_SECONDS)  # sent, counted in no window
            gap()
            for k, age in enumerate(ages):
                variant = k % len(variants)
                begin = time.time()
                for table, n in purgers[variant].purge(age - 5, PURGE_TIMEOUT).items():
                    if table in removed:
                        removed[table] += n
                windows.append((variant, begin, time.time()))
                gap()
        except BaseException as exc:  # reported by the caller
            failure.append(exc)
        finally:
            until.set()

    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Up before the load, as the worker is (see bench.purger): one process per variant.
    purgers = [Purger({**stack.env, **variant}, stack.dir) for variant in variants]
    try:
        load_start = time.monotonic()
        controller = threading.Thread(target=timetable, daemon=True)
        controller.start()
        sent = loadgen.open_loop(
            stack.reply_url, list(enumerate(bodies)), rate=rate, senders=FIXED_SENDERS, until=until
        )
        load_end = time.monotonic()
        controller.join(PURGE_TIMEOUT * FIXED_TRANCHES)
    finally:
        for purger in purgers:
            purger.close()
    # No other child process ended meanwhile: RUSAGE_CHILDREN counts the purgers' CPU alone
    # (their start-up included).
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if failure:
        raise failure[0]
    for table, n in seeded.items():
        assert removed[table] >= n, f"relay purge removed less than was seeded: {removed}"
    summaries: list[dict[str, Any]] = []
    pooled: dict[int | None, list[loadgen.Sent]] = {None: []}
    for variant, begin, end in windows:
        mine = [s for s in sent if begin <= loadgen.due_at(s) < end]
        pooled.setdefault(variant, []).extend(mine)
        summaries.append(
            {
                "purge": variant is not None,
                "variant": variant,
                "seconds": round(end - begin, 2),
                **loadgen.paced_summary(mine, rate),
            }
        )
    baseline = loadgen.paced_summary(pooled.pop(None), rate)
    under = loadgen.paced_summary([s for v in pooled.values() for s in v], rate)
    for summary, purging in ((baseline, False), (under, True)):
        summary["seconds"] = round(sum(w["seconds"] for w in summaries if w["purge"] == purging), 2)
        summary["rps"] = round(summary["requests"] / summary["seconds"], 1)
    by_variant = {
        str(v): {"env": dict(variants[v]), **loadgen.paced_summary(pooled[v], rate)}
        for v in range(len(variants))
        if v in pooled
    }
    quiet = [w["p99_ms"] for w in summaries if not w["purge"] and w["requests"]]
    spread = [min(quiet), max(quiet)] if quiet else [math.nan, math.nan]
    purge_seconds = sum(end - begin for variant, begin, end in windows if variant is not None)
    # The purge windows last minutes, those without FIXED_GAP_SECONDS: slice by slice at that
    # length, the purge windows are judged like for like (see loadgen.slice_p99s).
    sliced: dict[bool, list[float]] = {False: [], True: []}
    for variant, begin, end in windows:
        sliced[variant is not None] += loadgen.slice_p99s(sent, begin, end, FIXED_GAP_SECONDS)
    above = [p for p in sliced[True] if p > spread[1]]
    gaps = [w for w in summaries if not w["purge"]]
    item: dict[str, Any] = {
        "rate": rate,
        "senders": FIXED_SENDERS,
        "tranches": FIXED_TRANCHES,
        "gap_seconds": FIXED_GAP_SECONDS,
        "warmup_seconds": FIXED_WARMUP_SECONDS,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "baseline": baseline,
        "before": gaps[0],
        "after": gaps[-1],
        "during_purge": under,
        "windows": summaries,
        "by_variant": by_variant,
        "no_purge_p99_ms": spread,
        "unchanged": bool(under["p99_ms"] <= spread[1]),
        "slices": {
            "seconds": FIXED_GAP_SECONDS,
            "without_p99_ms": sliced[False],
            "purge_p99_ms": sliced[True],
            "without_median_p99_ms": _median(sliced[False]),
            "purge_median_p99_ms": _median(sliced[True]),
            "purge_above_spread": round(len(above) / len(sliced[True]), 3)
            if sliced[True]
            else math.nan,
        },
        "p50_ratio": _ratio(under["p50_ms"], baseline["p50_ms"]),
        "p99_ratio": _ratio(under["p99_ms"], baseline["p99_ms"]),
        "after_before_p99_ratio": _ratio(gaps[-1]["p99_ms"], gaps[0]["p99_ms"]),
        "purge": {
            "removed_rows": sum(removed.values()),
            "seconds": round(purge_seconds, 2),
            "load_seconds": round(load_end - load_start, 2),
            "overlap_fraction_of_load": round(purge_seconds / (load_end - load_start), 3),
            "cpu_s": round(
                (cpu_after.ru_utime - cpu_before.ru_utime)
                + (cpu_after.ru_stime - cpu_before.ru_stime),
                2,
            ),
        },
    }
    log(
        f"purge {stack.kind} at {rate:g}/s: removed {item['purge']['removed_rows']} rows in "
        f"{FIXED_TRANCHES} purges, {item['purge']['seconds']} s; p50/p99 without "
        f"{baseline['p50_ms']}/{baseline['p99_ms']} ms (windows' p99 {spread[0]}-{spread[1]}),"
        f" during {under['p50_ms']}/{under['p99_ms']} ms; errors {under['errors']}, "
        f"non-2xx {under['non_2xx']}; {FIXED_GAP_SECONDS:g} s slices' median p99 without "
        f"{item['slices']['without_median_p99_ms']}, during "
        f"{item['slices']['purge_median_p99_ms']} ms, "
        f"{len(above)} of {len(sliced[True])} purge slices above the windows without; "
        f"load average {item['load_average']}"
    )
    return item


def _bodies(stack: RelayStack, name: str, requests: float, created: datetime) -> list[str]:
    """Fresh jobs for ``requests`` callbacks (rounded up to whole jobs), their bodies in order."""
    made = data.create_jobs(
        stack.engine,
        stack.signer,
        math.ceil(requests / len(data.STAGES)),
        label=name,
        now=created,
    )
    return [
        body for _, _, body in data.stage_major(made, reply_url=stack.reply_url, created=created)
    ]


def _one(
    plan: Plan, stack: RelayStack, subscriber_id: str, work: Path, seed_rows: int
) -> dict[str, Any]:
    assert stack.web is not None
    env = {**stack.env, "RETENTION_DAYS": str(RETENTION_DAYS)}
    started = datetime.now(UTC)
    t0 = time.monotonic()
    seeded = _seed(stack, subscriber_id, seed_rows, env)
    seed_seconds = time.monotonic() - t0

    script = work / "bodies.lua"
    warm = _bodies_file(stack, work, f"purge-{stack.kind}-warm", 1000, started)
    rate = loadgen.run_wrk(
        stack.web.url,
        warm[0],
        script=script,
        connections=plan.connections,
        seconds=plan.warmup_seconds,
    ).rps
    per_second = max(1200.0, rate * 3)
    seconds = plan.ingest_seconds
    before = _bodies_file(stack, work, f"purge-{stack.kind}-before", per_second * seconds, started)
    during = _bodies_file(
        stack, work, f"purge-{stack.kind}-during", per_second * PURGE_BODY_SECONDS, started
    )
    after = _bodies_file(stack, work, f"purge-{stack.kind}-after", per_second * seconds, started)
    load_from = datetime.now(UTC)

    def wrk(bodies: Path, until: threading.Event | None = None) -> loadgen.WrkResult:
        assert stack.web is not None
        return loadgen.run_wrk(
            stack.web.url,
            bodies,
            script=script,
            connections=plan.connections,
            seconds=PURGE_BODY_SECONDS if until is not None else seconds,
            until=until,
        )

    runs = {"before": wrk(before[0])}
    # The purge and, beside it, the same load until the purge exits.
    purge = _Purge(stack, env)
    load_start = time.monotonic()
    runs["during"] = wrk(during[0], until=purge.ended)
    load_end = time.monotonic()
    removed = purge.removed()
    purge_start, purge_end = purge.start, purge.end
    runs["after"] = wrk(after[0])

    for table, rows in seeded.items():
        assert removed[table] >= rows, f"relay purge removed less than was seeded: {removed}"
    with stack.engine.connect() as conn:
        left = conn.execute(
            text("SELECT count(*) FROM jobs WHERE finished_at < :cutoff"),
            {"cutoff": started - timedelta(days=RETENTION_DAYS)},
        ).scalar_one()
        outcomes = {
            str(outcome): int(n)
            for outcome, n in conn.execute(
                text(
                    "SELECT outcome, count(*) FROM callbacks WHERE received_at >= :t "
                    "GROUP BY outcome"
                ),
                {"t": load_from},
            )
        }
        conn.rollback()
    assert left == 0, f"{left} expired jobs left after relay purge"

    baseline = loadgen.merged([runs["before"], runs["after"]])
    under = loadgen.merged([runs["during"]])
    made = {"before": before[1], "during": during[1], "after": after[1]}
    runs_json = {k: v.as_json() for k, v in runs.items()}
    # RUSAGE_CHILDREN: the purge process ended (and was reaped) during that wrk run.
    runs_json["during"]["wrk_and_purge_cpu_s"] = runs_json["during"].pop("wrk_cpu_s")
    item: dict[str, Any] = {
        "connections": plan.connections,
        "seconds_per_baseline_run": seconds,
        "baseline": baseline,
        "during_purge": under,
        "p99_ratio": _ratio(under["p99_ms"], baseline["p99_ms"]),
        "p50_ratio": _ratio(under["p50_ms"], baseline["p50_ms"]),
        "rps_ratio": _ratio(under["rps"], baseline["rps"]),
        "runs": runs_json,
        "callback_outcomes": outcomes,
        "all_state_changing": set(outcomes) <= {"applied"},
        "bodies_repeated": any(runs[k].requests > n for k, n in made.items()),
        "purge": {
            "command": "relay purge",
            "retention_days": RETENTION_DAYS,
            "seeded": seeded,
            "seeded_rows": sum(seeded.values()),
            "seed_seconds": round(seed_seconds, 1),
            "removed": removed,
            **_timing(removed, (purge_start, purge_end), (load_start, load_end)),
        },
    }
    log(
        f"purge {stack.kind}: removed {item['purge']['removed_rows']} rows in "
        f"{item['purge']['seconds']} s; ingest p50/p99 {baseline['p50_ms']}/{baseline['p99_ms']}"
        f" ms without, {under['p50_ms']}/{under['p99_ms']} ms during; "
        f"{baseline['rps']:.0f}/s vs {under['rps']:.0f}/s; outcomes {outcomes}"
    )
    return item


def _timing(
    removed: dict[str, int], purge: tuple[float, float], load: tuple[float, float]
) -> dict[str, Any]:
    """Rows removed, the purge's and the load's seconds and how much of the load overlapped
    the purge (``purge`` and ``load``: monotonic start and end)."""
    overlap = max(0.0, min(load[1], purge[1]) - max(load[0], purge[0]))
    return {
        "removed_rows": sum(removed.values()),
        "seconds": round(purge[1] - purge[0], 2),
        "load_seconds": round(load[1] - load[0], 2),
        "overlap_fraction_of_load": round(overlap / (load[1] - load[0]), 3),
    }


def _median(values: Sequence[float]) -> float:
    return round(statistics.median(values), 2) if values else math.nan


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b and not (math.isnan(a) or math.isnan(b)) else math.nan


def _bodies_file(
    stack: RelayStack, work: Path, name: str, requests: float, created: datetime
) -> tuple[Path, int]:
    """Fresh jobs for ``requests`` callbacks (rounded up to whole jobs) and their bodies in a
    file; returns the file and how many bodies it holds."""
    path = work / f"{name}.txt"
    return path, data.write_bodies(path, iter(_bodies(stack, name, requests, created)))
