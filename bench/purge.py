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
   sender waiting) runs while windows without and with a purge of another :data:`SEED_ROWS`
   seeded rows alternate (:data:`FIXED_GAP_SECONDS` without, :data:`FIXED_PURGE_SECONDS` with,
   …, after :data:`FIXED_WARMUP_SECONDS` of load that no window counts) until the purge has
   removed them all. The purge is the worker's purge function in a process started before the
   load, as the worker is (:mod:`bench.purger`), stopped at the end of each purge window and
   taken up again in the next. The machine's own stalls and drift (other work on it) then fall
   on both alike, every two minutes through the run, and the p99 during the purge is
   "unchanged" when it is no higher than that without by more than chance: a block permutation
   test over the run's 30 s slices (:func:`bench.loadgen.p99_shift_test`).

   An earlier design (to 2026-12-02) ran a whole purge of a quarter of the rows in each purge
   window, 10-16 minutes each, between 30 s windows without, and judged the p99 of the minutes
   with against the highest p99 of the 30 s windows without: a long window catches more of the
   machine's rare stalls than a short one, which on a noisy 2-core machine counted against
   the purge (a 60 s window without, right after a purge, had a p99 of 99 ms against the
   purge window's 73).

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
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from bench import data, loadgen
from bench.procs import log
from bench.purger import Purger
from bench.report import percentile
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
#: The fixed-rate runs' windows: without a purge, seconds (also the length of the slices that
#: "unchanged" is judged on: thousands of requests each, enough for a p99), and with the purge
#: (at most: it stops after the batch in progress, and the last ends when the rows run out).
#: They alternate through the run, so a purge of 100,000 rows that takes 57 minutes beside the
#: load on PostgreSQL (90/s, 2026-12-02) takes 76 minutes of load.
FIXED_GAP_SECONDS = 30.0
FIXED_PURGE_SECONDS = 90.0
#: The p-value of :func:`bench.loadgen.p99_shift_test` at or above which the p99 during the
#: purge is "unchanged": a rise that shuffled labels give in more than one run in twenty is the
#: machine's noise.
UNCHANGED_P = 0.05
#: The start of each fixed-rate run, seconds, sent but counted in no window: the first requests
#: meet cold connections, caches and sender threads (a p99 of 47 ms at 340/s and 329 ms at
#: 680/s in the first 3 s, against 3–5 ms after), which used to inflate the first window
#: without a purge, and with it the spread that "unchanged" is judged against.
FIXED_WARMUP_SECONDS = 10.0
#: Bodies prepared for a fixed-rate run, in seconds of its rate (it ends after the window
#: that follows the purge's last, or when they run out, unfinished: the result says so).
#: PostgreSQL's purge of 100,000 rows took 57 minutes of purge windows beside 90/s and 76 of
#: load in all (2026-12-02); more load, a slower purge.
FIXED_BODY_SECONDS = 7200.0
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
    stack: RelayStack, subscriber_id: str, rate: float, seed_rows: int
) -> dict[str, Any]:
    """Open-loop ingest at ``rate`` callbacks/s while a purge of ``seed_rows`` seeded rows runs
    in alternate windows: no purge for :data:`FIXED_GAP_SECONDS`, the purge for
    :data:`FIXED_PURGE_SECONDS`, no purge, … until the purge has removed every seeded row, then
    a last window without. The purge is the worker's :func:`receiver.store.retention.purge`, in
    a :class:`bench.purger.Purger` process started before the load, as the worker is (``relay
    purge``'s own start-up is not counted); each purge window stops it after the batch in
    progress, the next goes on from there. Each request is counted in the window it was due in;
    the first :data:`FIXED_WARMUP_SECONDS` of the load, before the first window, in none.

    The windows with and without alternate every two minutes through the whole run, so the
    machine's own stalls and drift fall on both alike, and the pooled p99s compare like for
    like. "Unchanged" is judged by :func:`bench.loadgen.p99_shift_test` on the windows cut into
    :data:`FIXED_GAP_SECONDS` slices: the p99 during the purge is no higher than that without
    by more than shuffling the slices' labels makes of the same requests (p ≥
    :data:`UNCHANGED_P`).

    :returns: ``{"rate", "baseline", "during_purge", "before", "after", "windows", …}``:
        ``baseline`` and ``during_purge`` are :func:`bench.loadgen.paced_summary` of every
        window without and with the purge taken together, ``before`` and ``after`` the first
        and last windows without; ``windows`` one summary per window in time order (with
        ``purge``: bool); ``no_purge_p99_ms`` the lowest and highest p99 of the windows
        without; ``slices``: their p99s and medians with and without; ``test``:
        :func:`bench.loadgen.p99_shift_test`'s answer, and ``unchanged`` from it; the p50 and
        p99 ratios; ``purge``: rows, whether it finished, seconds, CPU, overlap.
    :raises RuntimeError: the purge failed.
    """
    seeded = _seed_expired(stack, subscriber_id, seed_rows, [SEEDED_AGE_DAYS])
    created = datetime.now(UTC)
    bodies = _bodies(stack, f"fixed{rate:g}-{stack.kind}", rate * FIXED_BODY_SECONDS, created)
    until = threading.Event()  # the load stops when it is set
    load_over = threading.Event()  # the bodies ran out
    windows: list[tuple[bool, float, float]] = []  # (purge, Unix start, end)
    removed = dict.fromkeys(seeded, 0)
    finished: list[bool] = [False]
    failure: list[BaseException] = []

    def gap() -> None:
        begin = time.time()
        load_over.wait(FIXED_GAP_SECONDS)
        windows.append((False, begin, time.time()))

    def timetable() -> None:
        try:
            load_over.wait(FIXED_WARMUP_SECONDS)  # sent, counted in no window
            gap()
            while not (finished[0] or load_over.is_set()):
                begin = time.time()
                got, finished[0] = purger.purge_for(
                    RETENTION_DAYS, FIXED_PURGE_SECONDS, FIXED_PURGE_SECONDS + PURGE_TIMEOUT
                )
                windows.append((True, begin, time.time()))
                for table, n in got.items():
                    if table in removed:
                        removed[table] += n
                gap()
        except BaseException as exc:  # reported by the caller
            failure.append(exc)
        finally:
            until.set()

    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Up before the load, as the worker is (see bench.purger).
    purger = Purger({**stack.env, "RETENTION_DAYS": str(RETENTION_DAYS)}, stack.dir)
    try:
        load_start = time.monotonic()
        controller = threading.Thread(target=timetable, daemon=True)
        controller.start()
        sent = loadgen.open_loop(
            stack.reply_url, list(enumerate(bodies)), rate=rate, senders=FIXED_SENDERS, until=until
        )
        load_end = time.monotonic()
        load_over.set()
        controller.join(FIXED_PURGE_SECONDS + PURGE_TIMEOUT + FIXED_GAP_SECONDS + 30)
    finally:
        purger.close()
    # No other child process ended meanwhile: RUSAGE_CHILDREN counts the purger's CPU alone
    # (its start-up included).
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if failure:
        raise failure[0]
    if not finished[0]:
        log(
            f"purge {stack.kind} at {rate:g}/s: the load's bodies ran out before the purge "
            f"finished ({sum(removed.values())} of {sum(seeded.values())} rows removed)"
        )
    summaries: list[dict[str, Any]] = []
    pooled: dict[bool, list[loadgen.Sent]] = {False: [], True: []}
    for purging, begin, end in windows:
        mine = [s for s in sent if begin <= loadgen.due_at(s) < end]
        pooled[purging].extend(mine)
        summaries.append(
            {
                "purge": purging,
                "seconds": round(end - begin, 2),
                **loadgen.paced_summary(mine, rate),
            }
        )
    baseline = loadgen.paced_summary(pooled[False], rate)
    under = loadgen.paced_summary(pooled[True], rate)
    for summary, purging in ((baseline, False), (under, True)):
        summary["seconds"] = round(sum(w["seconds"] for w in summaries if w["purge"] == purging), 2)
        summary["rps"] = round(summary["requests"] / summary["seconds"], 1)
    quiet = [w["p99_ms"] for w in summaries if not w["purge"] and w["requests"]]
    spread = [min(quiet), max(quiet)] if quiet else [math.nan, math.nan]
    purge_seconds = sum(end - begin for purging, begin, end in windows if purging)
    slices = loadgen.latency_slices(sent, windows, FIXED_GAP_SECONDS)
    test = loadgen.p99_shift_test(slices)
    sliced = {
        purging: [
            round(percentile(latencies, 99), 2) for label, latencies in slices if label == purging
        ]
        for purging in (False, True)
    }
    gaps = [w for w in summaries if not w["purge"]]
    item: dict[str, Any] = {
        "rate": rate,
        "senders": FIXED_SENDERS,
        "gap_seconds": FIXED_GAP_SECONDS,
        "purge_window_seconds": FIXED_PURGE_SECONDS,
        "warmup_seconds": FIXED_WARMUP_SECONDS,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "baseline": baseline,
        "before": gaps[0],
        "after": gaps[-1],
        "during_purge": under,
        "windows": summaries,
        "no_purge_p99_ms": spread,
        "test": test,
        "unchanged": bool(test["p_value"] >= UNCHANGED_P),
        "slices": {
            "seconds": FIXED_GAP_SECONDS,
            "without_p99_ms": sliced[False],
            "purge_p99_ms": sliced[True],
            "without_median_p99_ms": _median(sliced[False]),
            "purge_median_p99_ms": _median(sliced[True]),
        },
        "p50_ratio": _ratio(under["p50_ms"], baseline["p50_ms"]),
        "p99_ratio": _ratio(under["p99_ms"], baseline["p99_ms"]),
        "after_before_p99_ratio": _ratio(gaps[-1]["p99_ms"], gaps[0]["p99_ms"]),
        "purge": {
            "seeded_rows": sum(seeded.values()),
            "removed_rows": sum(removed.values()),
            "finished": finished[0],
            "windows": sum(1 for purging, _, _ in windows if purging),
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
        f"purge {stack.kind} at {rate:g}/s: removed {item['purge']['removed_rows']} of "
        f"{item['purge']['seeded_rows']} rows in {item['purge']['windows']} windows, "
        f"{item['purge']['seconds']} s; p50/p99 without {baseline['p50_ms']}/"
        f"{baseline['p99_ms']} ms (windows' p99 {spread[0]}-{spread[1]}), during "
        f"{under['p50_ms']}/{under['p99_ms']} ms; errors {under['errors']}, non-2xx "
        f"{under['non_2xx']}; p99 shift {test['difference_ms']} ms against shuffled slices' "
        f"{test['noise_ms']} ms (p = {test['p_value']}); load average {item['load_average']}"
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
