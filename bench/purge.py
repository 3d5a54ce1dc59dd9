"""Ingest during a purge: callbacks/s and latency while ``relay purge`` removes 100,000 rows.

Per backend, once (seeding 100,000 rows again for a second round would double the time):

1. seed :data:`SEED_ROWS` rows of finished work done 60 days ago (older than the default
   ``RETENTION_DAYS=30``, which the run sets explicitly): ``SUCCEEDED`` jobs with their
   callbacks, events, deliveries and attempts (:func:`bench.data.seed_expired`, bulk
   ``INSERT``), and check with ``relay purge --dry-run`` that the purge would take all of them;
2. the ingest load of the ingest section (wrk, one thread, the same connections, fresh jobs,
   valid state-changing callbacks; the ingest subscriber still registered, so each callback
   writes its event and delivery) three times: without purge for ``ingest_seconds``; while
   ``relay purge`` runs, from the command's start to its exit (wrk is stopped when it exits);
   without purge again for ``ingest_seconds``. The baseline is the two runs without purge
   taken together (before and after, so that a drift over the run falls on both sides).

``relay purge`` is what the worker's schedule runs (:func:`receiver.store.retention.purge`
with the same batch size and pause), as a separate process, like a worker beside the web.
The run checks that the purge removed every seeded row and reports how long it took.
"""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import text

from bench import data, loadgen
from bench.procs import log
from bench.stack import RelayStack
from simulator.processes import bin_path

#: Rows of expired work the purge removes (the issue's "purge of 100k rows").
SEED_ROWS = 100_000
#: ``RETENTION_DAYS`` of the purge, and the age of the seeded work (days).
RETENTION_DAYS = 30
SEEDED_AGE_DAYS = 60
#: The longest the purge may take (seconds); wrk stops then and the overlap says so.
PURGE_TIMEOUT = 600.0
#: Bodies prepared for the run during the purge, in seconds of the warm-up rate (a longer purge
#: sends some bodies again: duplicates, which the report flags).
PURGE_BODY_SECONDS = 45.0


class _Plan(Protocol):
    @property
    def ingest_seconds(self) -> float: ...

    @property
    def warmup_seconds(self) -> float: ...

    @property
    def connections(self) -> int: ...


def ingest_during_purge(
    plan: _Plan,
    stacks: dict[str, RelayStack],
    subscriber_ids: dict[str, str],
    work: Path,
    seed_rows: int = SEED_ROWS,
) -> dict[str, Any]:
    """The scenario on every stack (see the module's docstring).

    :param subscriber_ids: ``{backend: id}`` of a subscriber that exists (the seeded
        deliveries are its).
    :returns: ``{backend: {...}}`` with ``baseline`` and ``during_purge`` (see
        :func:`bench.loadgen.merged`), their ratios, and ``purge`` (rows removed per table,
        seconds, overlap).
    :raises AssertionError: the purge did not remove every seeded row.
    """
    return {
        name: _one(plan, stack, subscriber_ids[name], work, seed_rows)
        for name, stack in stacks.items()
    }


def _one(
    plan: _Plan, stack: RelayStack, subscriber_id: str, work: Path, seed_rows: int
) -> dict[str, Any]:
    assert stack.web is not None
    env = {**stack.env, "RETENTION_DAYS": str(RETENTION_DAYS)}
    started = datetime.now(UTC)
    finished = started - timedelta(days=SEEDED_AGE_DAYS)
    t0 = time.monotonic()
    seeded = data.seed_expired(
        stack.engine,
        stack.signer,
        subscriber_id,
        seed_rows,
        finished=finished,
        reply_url=stack.reply_url,
    )
    seed_seconds = time.monotonic() - t0
    log(f"purge {stack.kind}: seeded {sum(seeded.values())} rows in {seed_seconds:.1f} s")
    dry = json.loads(stack.relay("purge", "--dry-run", env=env))["would_remove"]
    for table, rows in seeded.items():
        assert dry[table] >= rows, f"relay purge --dry-run would not remove {table}: {dry}"

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
            seconds=PURGE_TIMEOUT if until is not None else seconds,
            until=until,
        )

    runs = {"before": wrk(before[0])}
    # The purge and, beside it, the same load until the purge exits.
    ended = threading.Event()
    purge_start = time.monotonic()
    proc = subprocess.Popen(
        [bin_path("relay"), "purge"],
        env=env,
        cwd=stack.dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    outputs: dict[str, str] = {}
    stamps: dict[str, float] = {}

    def watch() -> None:
        try:
            outputs["stdout"], outputs["stderr"] = proc.communicate(timeout=PURGE_TIMEOUT)
        finally:
            stamps["purge_end"] = time.monotonic()
            ended.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    load_start = time.monotonic()
    runs["during"] = wrk(during[0], until=ended)
    load_end = time.monotonic()
    watcher.join(PURGE_TIMEOUT + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"relay purge failed ({proc.returncode}): {outputs.get('stderr')}")
    purge_end = stamps["purge_end"]
    removed: dict[str, int] = json.loads(outputs["stdout"])["removed"]
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
    overlap = max(0.0, min(load_end, purge_end) - max(load_start, purge_start))
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
            "removed_rows": sum(removed.values()),
            "seconds": round(purge_end - purge_start, 2),
            "load_seconds": round(load_end - load_start, 2),
            "overlap_fraction_of_load": round(overlap / (load_end - load_start), 3),
        },
    }
    log(
        f"purge {stack.kind}: removed {item['purge']['removed_rows']} rows in "
        f"{item['purge']['seconds']} s; ingest p50/p99 {baseline['p50_ms']}/{baseline['p99_ms']}"
        f" ms without, {under['p50_ms']}/{under['p99_ms']} ms during; "
        f"{baseline['rps']:.0f}/s vs {under['rps']:.0f}/s; outcomes {outcomes}"
    )
    return item


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b and not (math.isnan(a) or math.isnan(b)) else math.nan


def _bodies_file(
    stack: RelayStack, work: Path, name: str, requests: float, created: datetime
) -> tuple[Path, int]:
    """Fresh jobs for ``requests`` callbacks (rounded up to whole jobs) and their bodies in a
    file; returns the file and how many bodies it holds."""
    made = data.create_jobs(
        stack.engine,
        stack.signer,
        math.ceil(requests / len(data.STAGES)),
        label=name,
        now=created,
    )
    path = work / f"{name}.txt"
    stages = data.stage_major(made, reply_url=stack.reply_url, created=created)
    return path, data.write_bodies(path, (body for _, _, body in stages))
