"""``make bench``: how fast and how light runway-relay is, as ratios against the bare stack.

Every figure that has a target is a ratio of two things measured side by side in one run, in
alternating rounds (A, B, A, B, …; the order turns each round) and reported as the median, so
that the noise of a shared machine falls on both sides alike. Absolute figures are printed for
context. Sections (``--help`` lists the knobs, ``--quick`` shortens every one):

1. ingest: valid, state-changing callbacks/s through the Procfile's ``web:`` command, against a
   bare Flask app under the same gunicorn command (wrk, closed loop, N connections);
2. fan-out: deliveries/s of one ``relay worker`` to a sink that answers 204 at once, against a
   plain ``requests.Session`` loop with the same concurrency posting the same signed bodies;
3. end to end: callback sent → event received by the subscriber, at a light and a heavy rate;
4. vendor: requests to the vendor per completed task, and completion → notification delay,
   beside the AI/ML API documentation's polling loop (run against the simulator, time scaled);
5. memory: peak RSS (``VmHWM``) of the gunicorn workers and of the relay worker;
6. purge: the ingest load without a purge, and while ``relay purge`` removes 100,000 rows of
   expired work (:mod:`bench.purge`; section name ``purge``, run after ingest).

All load goes to 127.0.0.1, every loop is bounded by a count and a time, and every process
started here is stopped by its pid at the end (a PostgreSQL database made for the run is dropped).
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import platform
import queue
import sqlite3
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import Engine, create_engine, text
from standardwebhooks.webhooks import Webhook

from bench import data, loadgen, purge
from bench.procs import cpu_seconds, log, vm_hwm_mb
from bench.profile import Profiler, summary
from bench.report import TARGETS, markdown, median, percentile
from bench.stack import (
    BARE_APP,
    DEFAULT_PG_URL,
    ROOT,
    RelayStack,
    Secrets,
    WebServer,
    base_env,
    start_simulator,
    start_subscriber,
)
from receiver.ingest.applier import BATCH_SIZE, apply_pending
from receiver.services.callbacks import ApplyOptions
from simulator.processes import Process

ALL_EVENTS = ["task.progress", "task.succeeded", "task.failed"]
#: The simulator's task timetable for the vendor section: 2.5 s to start, two progress steps
#: 2 s apart, so a task completes 6.5 s after its create: the documented example's 65 s, scaled
#: by 1/10. The polling loop polls every 1 s (10 s scaled) against the same kind of tasks.
TIME_SCALE = 10.0
SIM_TIMINGS = {"progress_steps": 2, "start_delay": 2.5, "step_delay": 2.0}
DOC_TASK_SECONDS = 65.0
DOC_POLL_INTERVAL = 10.0


@dataclass(frozen=True)
class Plan:
    """The sizes of one run (seconds, counts)."""

    rounds: int
    ingest_seconds: float
    warmup_seconds: float
    connections: int
    fanout_count: int
    e2e_seconds: float
    light_rate: float
    heavy_fraction: float
    vendor_tasks: int
    #: The purge section's fixed rates, as fractions of its saturating rate.
    purge_fractions: tuple[float, ...]

    @classmethod
    def make(cls, quick: bool, args: argparse.Namespace) -> Plan:
        return cls(
            rounds=args.rounds or (1 if quick else 3),
            ingest_seconds=args.seconds or (3.0 if quick else 8.0),
            warmup_seconds=1.0 if quick else 2.0,
            connections=args.connections,
            fanout_count=args.fanout_count or (300 if quick else 1500),
            e2e_seconds=4.0 if quick else 12.0,
            light_rate=args.light_rate,
            heavy_fraction=args.heavy_fraction,
            vendor_tasks=5 if quick else 20,
            purge_fractions=args.purge_fractions,
        )


# -- machine ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures came from: CPU, cores, memory, versions, load at start."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load_average_start": list(os.getloadavg()),
    }


def postgres_available(url: str) -> str | None:
    """None when PostgreSQL answers at ``url``, else the reason it does not."""
    try:
        engine = create_engine(
            url.replace("postgresql://", "postgresql+psycopg://", 1),
            connect_args={"connect_timeout": 3},
        )
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure means: skip PostgreSQL, say why
        return f"PostgreSQL not reachable at {url}: {type(exc).__name__}"
    return None


# -- 1. ingest ----------------------------------------------------------------------------------


def _rotate(items: Sequence[Any], by: int) -> list[Any]:
    by %= len(items)
    return list(items[by:]) + list(items[:by])


def ingest(
    plan: Plan,
    bare: WebServer,
    stacks: dict[str, RelayStack],
    work: Path,
    profile_dir: Path | None = None,
) -> dict[str, Any]:
    """Closed-loop wrk rounds: bare, then each backend, in turn; fresh jobs every round."""
    script = work / "bodies.lua"
    created = datetime.now(UTC)
    files: dict[tuple[str, int], Path] = {}
    # Warm-up (also sizes the rounds): 1000 fresh jobs per backend.
    estimate: dict[str, float] = {}
    for name, stack in stacks.items():
        made = data.create_jobs(stack.engine, stack.signer, 1000, label="warm", now=created)
        path = work / f"ingest-{name}-warm.txt"
        data.write_bodies(path, _bodies(made, stack, created))
        files[(name, -1)] = path
    first = next(iter(stacks))
    loadgen.run_wrk(
        bare.url,
        files[(first, -1)],
        script=script,
        connections=plan.connections,
        seconds=plan.warmup_seconds,
    )
    for name, stack in stacks.items():
        assert stack.web is not None
        warm = loadgen.run_wrk(
            stack.web.url,
            files[(name, -1)],
            script=script,
            connections=plan.connections,
            seconds=plan.warmup_seconds,
        )
        estimate[name] = warm.rps
        log(f"ingest warm-up {name}: {warm.rps:.0f}/s")
    # Size each round at 4x the warm-up rate (the warm-up runs cold), at least 300/s.
    for name, stack in stacks.items():
        per_round = math.ceil(max(300.0, estimate[name] * 4) * plan.ingest_seconds)
        for round_no in range(plan.rounds):
            jobs_needed = math.ceil(per_round / len(data.STAGES))
            made = data.create_jobs(
                stack.engine, stack.signer, jobs_needed, label=f"r{round_no}", now=created
            )
            path = work / f"ingest-{name}-{round_no}.txt"
            data.write_bodies(path, _bodies(made, stack, created))
            files[(name, round_no)] = path
    runs: dict[str, list[loadgen.WrkResult]] = {"bare": [], **{name: [] for name in stacks}}
    pairs: dict[str, list[float]] = {name: [] for name in stacks}
    targets: dict[str, str] = {"bare": bare.url}
    for name, stack in stacks.items():
        assert stack.web is not None
        targets[name] = stack.web.url
    order = ["bare", *stacks]
    for round_no in range(plan.rounds):
        this_round: dict[str, loadgen.WrkResult] = {}
        for name in _rotate(order, round_no):
            body_file = files[(first if name == "bare" else name, round_no)]
            profiler = None
            if profile_dir is not None and round_no == 0 and name != "bare":
                web = stacks[name].web
                assert web is not None
                profiler = Profiler(profile_dir, f"ingest-{name}", web.worker_pids())
            result = loadgen.run_wrk(
                targets[name],
                body_file,
                script=script,
                connections=plan.connections,
                seconds=plan.ingest_seconds,
            )
            if profiler is not None and profile_dir is not None:
                _write_profile(profile_dir, f"ingest-{name}", profiler.stop(), "useapi_callback")
            runs[name].append(result)
            this_round[name] = result
        for name in stacks:
            pairs[name].append(this_round[name].rps / this_round["bare"].rps)
        log(
            f"ingest round {round_no + 1}/{plan.rounds}: "
            + ", ".join(f"{k} {v.rps:.0f}/s p99 {v.p99_ms:.1f} ms" for k, v in this_round.items())
        )
    out: dict[str, Any] = {}
    bare_summary = _wrk_summary(runs["bare"])
    for name, stack in stacks.items():
        stored = _callback_outcomes(stack.engine)
        applied = _apply_stored(stack.engine)
        log(f"apply {name}: {applied['callbacks']} stored callbacks at {applied['rate']:.0f}/s")
        check = _callback_outcomes(stack.engine)
        out[name] = {
            "connections": plan.connections,
            "rounds": plan.rounds,
            "seconds_per_round": plan.ingest_seconds,
            "relay": _wrk_summary(runs[name]),
            "bare": bare_summary,
            "ratio": round(median(pairs[name]), 3),
            "ratio_per_round": [round(x, 3) for x in pairs[name]],
            "stored_outcomes": stored,
            "apply": applied,
            "callback_outcomes": check,
            "all_state_changing": set(check) <= {"applied"},
        }
    bare_cpu = [r.cpu_s / r.seconds for r in runs["bare"] if r.seconds]
    out["load_generator"] = {
        "tool": "wrk (1 thread)",
        "wrk_core_fraction_during_bare_runs": round(median(bare_cpu), 3),
        "note": "fraction of one core used by wrk while the bare endpoint ran flat out",
    }
    return out


def _write_profile(out: Path, name: str, files: Sequence[Path], under: str | None) -> None:
    text_out = summary(files) if under is None else summary(files, only_requests=under)
    if under is not None:
        text_out += "\n\nall threads, idle included:\n" + summary(files)
    (out / f"profile-{name}-summary.txt").write_text(text_out + "\n")
    log(f"profile of {name}: {out / f'profile-{name}-summary.txt'}")


def _bodies(made: Sequence[data.BenchJob], stack: RelayStack, created: datetime) -> Iterator[str]:
    return (b for _, _, b in data.stage_major(made, reply_url=stack.reply_url, created=created))


def _wrk_summary(runs: Sequence[loadgen.WrkResult]) -> dict[str, Any]:
    return {
        "rps": round(median([r.rps for r in runs]), 1),
        "p50_ms": round(median([r.p50_ms for r in runs]), 2),
        "p99_ms": round(median([r.p99_ms for r in runs]), 2),
        "requests": sum(r.requests for r in runs),
        "errors": sum(r.errors for r in runs),
        "non_2xx": sum(r.non_2xx for r in runs),
        "runs": [r.as_json() for r in runs],
    }


def _apply_stored(engine: Engine) -> dict[str, Any]:
    """Apply every callback the ingest rounds stored (no worker runs during them), as one
    ``relay worker``'s applier does, here in the bench process: how many, how fast (per
    second of wall time), in how many transactions."""
    started = time.perf_counter()
    report = apply_pending(engine, ApplyOptions(), max_batches=100_000)
    seconds = time.perf_counter() - started
    done = len(report.applied)
    return {
        "callbacks": done,
        "deferred": len(report.deferred),
        "seconds": round(seconds, 2),
        "rate": round(done / seconds, 1) if seconds > 0 else 0.0,
        "batch_size": BATCH_SIZE,
    }


def _callback_outcomes(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT outcome, count(*) FROM callbacks GROUP BY outcome"))
        found = {str(outcome): int(count) for outcome, count in rows}
        refused = conn.execute(text("SELECT count(*) FROM refused_callbacks")).scalar_one()
        conn.rollback()
    if refused:
        found["refused"] = int(refused)
    return found


# -- 2. fan-out ---------------------------------------------------------------------------------


def _reader(url: str) -> Engine:
    """An engine for polling counts: plain deferred transactions, which never take SQLite's
    write lock (the relay's own engine begins every transaction IMMEDIATE)."""
    if url.startswith("sqlite"):
        return create_engine(url, connect_args={"timeout": 30})
    return create_engine(url, pool_size=1, max_overflow=0)


def _count_succeeded(reader: Engine, subscriber_id: str) -> int:
    with reader.connect() as conn:
        value = conn.execute(
            text(
                "SELECT count(*) FROM deliveries WHERE subscriber_id = :s AND status = 'succeeded'"
            ),
            {"s": subscriber_id},
        ).scalar_one()
        conn.rollback()
    return int(value)


def _sink(sink_url: str, path: str, method: str = "GET") -> Any:
    response = requests.request(method, sink_url + path, timeout=30)
    response.raise_for_status()
    return response.json()


def plain_loop(
    url: str,
    items: Sequence[tuple[str, str]],
    secret: str,
    concurrency: int,
    timeout: float,
    min_seconds: float = 0.0,
) -> tuple[float, int, int]:
    """The reference: ``concurrency`` threads, one ``requests.Session`` each, signing every body
    with standardwebhooks and POSTing it; returns (seconds, requests sent, 2xx count).

    Every item is sent once; then the items are sent again, in turn, until ``min_seconds`` have
    passed (at most 20 passes), so that both sides of a comparison run about as long and meet
    the same share of the machine's noise.
    """
    passes = 20
    work: queue.Queue[tuple[str, str]] = queue.Queue()
    for item in items:
        work.put(item)
    ok = [0] * concurrency
    sent = [0] * concurrency
    signer = Webhook(secret)
    start = time.monotonic()
    refill = threading.Lock()
    refills = [0]

    def next_item() -> tuple[str, str] | None:
        while True:
            try:
                return work.get_nowait()
            except queue.Empty:
                with refill:
                    if not work.empty():
                        continue
                    if time.monotonic() - start >= min_seconds or refills[0] >= passes - 1:
                        return None
                    refills[0] += 1
                    for again in items:
                        work.put(again)

    def run(slot: int) -> None:
        with requests.Session() as session:
            session.trust_env = False
            while True:
                item = next_item()
                if item is None:
                    return
                event_id, body = item
                now = datetime.now(UTC)
                headers = {
                    "content-type": "application/json",
                    "webhook-id": event_id,
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": signer.sign(event_id, now, body),
                }
                response = session.post(
                    url,
                    data=body.encode(),
                    headers=headers,
                    timeout=timeout,
                    allow_redirects=False,
                )
                response.close()
                sent[slot] += 1
                if 200 <= response.status_code < 300:
                    ok[slot] += 1

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=len(items) * passes * timeout)
    return time.monotonic() - start, sum(sent), sum(ok)


def fanout(
    plan: Plan,
    stack: RelayStack,
    sink_url: str,
    subscriber: dict[str, Any],
    fanout_job: str,
    profile_dir: Path | None = None,
) -> dict[str, Any]:
    """Rounds of: a backlog of N due deliveries drained by the running worker, and the same N
    bodies posted by the plain loop for about as long (order turning each round)."""
    senders = int(stack.env.get("DELIVERY_CONCURRENCY", "16"))
    concurrency = min(int(subscriber["max_in_flight"]), senders)
    reader = _reader(stack.db.url)
    relay_rates: list[float] = []
    plain_rates: list[float] = []
    pairs: list[float] = []
    done_total = _count_succeeded(reader, subscriber["id"])
    sequence = 1
    try:
        for round_no in range(plan.rounds):
            rates: dict[str, float] = {}
            # Later rounds last about 10 s at the rate the first one measured, at most
            # fanout_count deliveries, so that a loaded machine does not stretch the run.
            count = plan.fanout_count
            if relay_rates:
                count = max(200, min(count, int(relay_rates[-1] * 10)))
            backlog = data.backlog_payloads(
                count, job_id=fanout_job, now=datetime.now(UTC), first_sequence=sequence
            )
            items = backlog.items
            for side in _rotate(["relay", "plain"], round_no):
                _sink(sink_url, "/_reset", "POST")
                if side == "relay":
                    profiler = None
                    if profile_dir is not None and round_no == 0 and stack.worker is not None:
                        profiler = Profiler(profile_dir, f"fanout-{stack.kind}", [stack.worker.pid])
                    data.insert_backlog(
                        stack.engine, subscriber["id"], backlog, now=datetime.now(UTC)
                    )
                    start = time.monotonic()
                    done_total += len(items)
                    deadline = start + 120
                    while _count_succeeded(reader, subscriber["id"]) < done_total:
                        if time.monotonic() > deadline:
                            raise TimeoutError("the worker did not drain the backlog in 120 s")
                        time.sleep(0.01)
                    seconds = time.monotonic() - start
                    if profiler is not None and profile_dir is not None:
                        _write_profile(
                            profile_dir, f"fanout-{stack.kind}", profiler.stop(), "Worker._deliver"
                        )
                    received = int(_sink(sink_url, "/_stats")["count"])
                    if received < len(items):
                        raise RuntimeError(f"sink got {received} of {len(items)}")
                    rates["relay"] = len(items) / seconds
                else:
                    # As long as the relay's side took (this round's, or the last one's).
                    match = len(items) / rates.get("relay", relay_rates[-1] if relay_rates else 1e9)
                    seconds, count, ok = plain_loop(
                        sink_url + "/hook",
                        items,
                        subscriber["secret"],
                        concurrency,
                        timeout=15,
                        min_seconds=min(match, 120.0),
                    )
                    if ok < count:
                        raise RuntimeError(f"plain loop: {ok} of {count} answered 2xx")
                    rates["plain"] = count / seconds
            sequence += len(items)
            relay_rates.append(rates["relay"])
            plain_rates.append(rates["plain"])
            pairs.append(rates["relay"] / rates["plain"])
            log(
                f"fan-out {stack.kind} round {round_no + 1}/{plan.rounds}: relay "
                f"{rates['relay']:.0f}/s, plain loop {rates['plain']:.0f}/s"
            )
    finally:
        reader.dispose()
    return {
        "concurrency": concurrency,
        "deliveries_first_round": plan.fanout_count,
        "relay": {"dps": round(median(relay_rates), 1), "runs": [round(x, 1) for x in relay_rates]},
        "plain": {"dps": round(median(plain_rates), 1), "runs": [round(x, 1) for x in plain_rates]},
        "ratio": round(median(pairs), 3),
        "ratio_per_round": [round(x, 3) for x in pairs],
    }


def sink_capacity(sink_url: str, work: Path, seconds: float, connections: int) -> dict[str, Any]:
    """wrk against the sink itself: how many hooks/s it can take (to show it is not the limit)."""
    body = work / "sink-body.txt"
    body.write_text(json.dumps({"type": "task.progress", "data": {"x": "y" * 600}}) + "\n")
    result = loadgen.run_wrk(
        sink_url,
        body,
        script=work / "sink.lua",
        connections=connections,
        seconds=seconds,
        path="/hook",
    )
    _sink(sink_url, "/_reset", "POST")
    return {"rps": round(result.rps, 1), "p99_ms": round(result.p99_ms, 2)}


# -- 3. end to end ------------------------------------------------------------------------------


def end_to_end(
    stack: RelayStack, sink_url: str, *, rate: float, seconds: float, label: str
) -> dict[str, Any]:
    """Open-loop callbacks at ``rate``/s for ``seconds``; latency = sink arrival − send time."""
    count = max(len(data.STAGES), int(rate * seconds))
    created = datetime.now(UTC)
    made = data.create_jobs(
        stack.engine, stack.signer, math.ceil(count / len(data.STAGES)), label=label, now=created
    )
    items = [
        ((job.job_id, stage + 1), body)
        for job, stage, body in data.stage_major(made, reply_url=stack.reply_url, created=created)
    ][:count]
    _sink(sink_url, "/_reset", "POST")
    sent = loadgen.open_loop(stack.reply_url, items, rate=rate, senders=8)
    stored = [s for s in sent if s.status is not None and 200 <= s.status < 300]  # 202: stored
    sent_at = {s.key: s.sent_at for s in stored}
    failed = len(sent) - len(stored)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if int(_sink(sink_url, "/_stats")["count"]) >= len(sent_at):
            break
        time.sleep(0.05)
    records: list[list[Any]] = _sink(sink_url, "/_records")
    arrivals = {str(r[0]): float(r[1]) for r in records}
    latencies: list[float] = []
    with stack.engine.connect() as conn:
        ids = list(arrivals)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            params = {f"i{n}": v for n, v in enumerate(chunk)}
            marks = ", ".join(f":i{n}" for n in range(len(chunk)))
            rows = conn.execute(
                text(f"SELECT id, job_id, sequence FROM events WHERE id IN ({marks})"), params
            )
            for event_id, job_id, sequence in rows:
                key = (str(job_id), int(sequence))
                if key in sent_at:
                    latencies.append((arrivals[str(event_id)] - sent_at[key]) * 1000)
        conn.rollback()
    return {
        "rate": rate,
        "seconds": seconds,
        "callbacks": len(items),
        "callback_failures": failed,
        "events_received": len(latencies),
        "missing": len(sent_at) - len(latencies),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p90_ms": round(percentile(latencies, 90), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies), 2) if latencies else None,
    }


def heavy_rate_for(
    plan: Plan,
    *,
    ingest_rps: float | None,
    fanout_dps: float | None,
    apply_rps: float | None = None,
) -> float:
    """The heavy end-to-end rate: ``heavy_fraction`` of what the whole pipeline can sustain.

    One callback costs the stack ``1/ingest`` seconds of its capacity (the door), ``1/apply``
    more (the applier) and its delivery ``1/fan-out`` more (they share the database and the
    CPU), so the pipeline saturates near ``1 / (1/ingest + 1/apply + 1/fan-out)`` callbacks per
    second; with none measured, 4x the light rate.
    """
    parts = [x for x in (ingest_rps, apply_rps, fanout_dps) if x]
    if not parts:
        return plan.light_rate * 4
    capacity = 1 / sum(1 / x for x in parts)
    return float(max(plan.light_rate * 1.5, round(plan.heavy_fraction * capacity)))


# -- 4. vendor requests per task ------------------------------------------------------------------


def tiny_png(width: int = 64, height: int = 40) -> bytes:
    """A valid grey PNG made here (no file, no download)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _parse_iso(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def vendor_requests(plan: Plan, stack: RelayStack, sim_url: str, sink_url: str) -> dict[str, Any]:
    """runway-relay's vendor traffic per task (measured) beside the documented polling loop
    (measured against the same simulator with its timetable scaled by 1/100, and computed)."""
    requests.post(sim_url + "/_sim/reset", timeout=10).raise_for_status()
    _sink(sink_url, "/_reset", "POST")
    image = "data:image/png;base64," + base64.b64encode(tiny_png()).decode()
    job_ids: list[str] = []
    for index in range(plan.vendor_tasks):
        response = stack.api(
            "POST",
            "/api/tasks",
            json={"image": image, "prompt": f"bench task {index}", "metadata": {"n": index}},
        )
        response.raise_for_status()
        job_ids.append(str(response.json()["job_id"]))
    reader = _reader(stack.db.url)
    marks = ", ".join(f":j{n}" for n in range(len(job_ids)))
    params = {f"j{n}": v for n, v in enumerate(job_ids)}
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            with reader.connect() as conn:
                finished = conn.execute(
                    text(
                        "SELECT count(*) FROM deliveries d JOIN events e ON e.id = d.event_id "
                        f"WHERE e.type = 'task.succeeded' AND d.status = 'succeeded' "
                        f"AND e.job_id IN ({marks})"
                    ),
                    params,
                ).scalar_one()
                conn.rollback()
            if int(finished) >= len(job_ids):
                break
            time.sleep(0.05)
        with reader.connect() as conn:
            succeeded = {
                str(event_id): str(task_id)
                for event_id, task_id in conn.execute(
                    text(
                        "SELECT e.id, j.task_id FROM events e JOIN jobs j ON j.id = e.job_id "
                        f"WHERE e.type = 'task.succeeded' AND e.job_id IN ({marks})"
                    ),
                    params,
                )
            }
            conn.rollback()
    finally:
        reader.dispose()
    stats = requests.get(sim_url + "/_sim/stats", timeout=10).json()
    attempts = requests.get(sim_url + "/_sim/callbacks", timeout=10).json()
    completed_at = {
        a["task_id"]: _parse_iso(a["at"])
        for a in attempts
        if a.get("task_status") == "SUCCEEDED" and a.get("attempt") == 1
    }
    arrivals = {str(r[0]): float(r[1]) for r in _sink(sink_url, "/_records")}
    delays = [
        (arrivals[event_id] - completed_at[task_id]) * 1000
        for event_id, task_id in succeeded.items()
        if event_id in arrivals and task_id in completed_at
    ]
    tasks = len(succeeded)
    vendor_calls = (
        stats["creates"] + stats["uploads"] + stats["status_requests"] + stats["scheduler_requests"]
    )
    relay = {
        "tasks_completed": tasks,
        "creates": stats["creates"],
        "uploads": stats["uploads"],
        "status_requests": stats["status_requests"],
        "scheduler_requests": stats["scheduler_requests"],
        "requests_per_task": round(vendor_calls / tasks, 2) if tasks else None,
        "status_per_task": round(stats["status_requests"] / tasks, 2) if tasks else None,
        "mean_delay_ms": round(sum(delays) / len(delays), 1) if delays else None,
        "p99_delay_ms": round(percentile(delays, 99), 1) if delays else None,
    }
    polling = polling_baseline(sim_url, plan.vendor_tasks)
    return {"relay": relay, "polling": polling}


def polling_baseline(sim_url: str, tasks: int) -> dict[str, Any]:
    """The documented loop (create, then a status request at once and every 10 s until the task
    is done), run against the simulator at 1/10 time: 6.5 s tasks polled every 1 s, on a fixed
    timetable (poll k at create + k seconds), so that request times do not stretch it."""
    interval = DOC_POLL_INTERVAL / TIME_SCALE
    headers = {"Authorization": "Bearer sim-token"}
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        with requests.Session() as session:
            session.trust_env = False
            created = session.post(
                sim_url + "/gen3turbo/create",
                json={"text_prompt": f"polling baseline {index}"},
                headers=headers,
                timeout=10,
            )
            created.raise_for_status()
            task_id = created.json()["taskId"]
            calls = 1
            start = time.monotonic()
            for poll in range(int(60 / interval)):
                wait = start + poll * interval - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                task = session.get(sim_url + f"/tasks/{task_id}", headers=headers, timeout=10)
                calls += 1
                seen = time.time()
                body = task.json()
                if body.get("status") in ("SUCCEEDED", "FAILED"):
                    delay = seen - _parse_iso(body["updatedAt"])
                    with lock:
                        results.append((calls, delay))
                    return

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(tasks)]
    for thread in threads:
        thread.start()
        time.sleep(interval / max(1, tasks))  # spread the starts over one poll interval
    for thread in threads:
        thread.join(timeout=90)
    calls = [c for c, _ in results]
    delays = [d * TIME_SCALE for _, d in results]
    # Polls at 0, 10, ..., the first at or after completion: 0..70 s for 65 s (8 polls, as the
    # documented output shows: seven "Still waiting" lines, then "Generation complete").
    doc_polls = math.ceil(DOC_TASK_SECONDS / DOC_POLL_INTERVAL) + 1
    return {
        "tasks_completed": len(results),
        "time_scale": f"1/{TIME_SCALE:g} (6.5 s tasks, polled every 1 s; delays scaled back)",
        "requests_per_task": round(sum(calls) / len(calls), 2) if calls else None,
        "status_per_task": round(sum(calls) / len(calls) - 1, 2) if calls else None,
        "mean_delay_s": round(sum(delays) / len(delays), 2) if delays else None,
        "documented": {
            "task_seconds": DOC_TASK_SECONDS,
            "poll_interval_s": DOC_POLL_INTERVAL,
            "requests_per_task": 1 + doc_polls,
            "status_requests": doc_polls,
            "mean_delay_s": DOC_POLL_INTERVAL / 2,
        },
    }


# -- 5. memory ----------------------------------------------------------------------------------


def memory_of(web: WebServer | None, worker: Process | None) -> dict[str, Any]:
    pids = web.worker_pids() if web else []
    web_mb = [m for m in (vm_hwm_mb(pid) for pid in pids) if m is not None]
    return {
        "web_mb": [round(m, 1) for m in web_mb],
        "worker_mb": round(vm_hwm_mb(worker.pid) or math.nan, 1) if worker else None,
        "worker_cpu_s": round(cpu_seconds(worker.pid) or math.nan, 2) if worker else None,
    }


# -- the run ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="runway-relay benchmarks (see bench/run.py)."
    )
    parser.add_argument("--quick", action="store_true", help="short run (about 2 minutes)")
    parser.add_argument(
        "--backends", default="sqlite,postgres", help="comma-separated: sqlite, postgres"
    )
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL))
    parser.add_argument("--web-concurrency", type=int, default=2, help="WEB_CONCURRENCY")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (ingest)")
    parser.add_argument("--rounds", type=int, default=0, help="rounds per comparison")
    parser.add_argument("--seconds", type=float, default=0, help="seconds per ingest run")
    parser.add_argument("--fanout-count", type=int, default=0, help="deliveries per round")
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=None,
        help="the fan-out subscriber's max_in_flight (default: SUBSCRIBER_MAX_IN_FLIGHT, 4)",
    )
    parser.add_argument("--light-rate", type=float, default=20.0, help="callbacks/s, light")
    parser.add_argument(
        "--heavy-fraction",
        type=float,
        default=0.5,
        help="heavy rate as a fraction of the pipeline capacity measured in this run",
    )
    parser.add_argument(
        "--purge-fractions",
        type=_fractions,
        default=purge.FIXED_FRACTIONS,
        help="the purge section's fixed rates as fractions of its saturating rate, "
        "comma-separated (default: 0.2,0.4; each takes an hour or more on PostgreSQL)",
    )
    parser.add_argument(
        "--sections",
        default="ingest,purge,fanout,e2e,vendor",
        help="which sections to run (comma-separated; purge: ingest during a 100k-row purge)",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "latest.json", help="JSON file"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the whole work folder (else only its logs: latency files and SQLite go)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the relay's web workers (ingest) and worker (fan-out) in round 1; "
        "those rounds run slower (figures are marked profiled)",
    )
    return parser.parse_args(argv)


def _fractions(text: str) -> tuple[float, ...]:
    """``"0.2,0.4"`` as ``(0.2, 0.4)``; each in (0, 1].

    :raises argparse.ArgumentTypeError: not such a list.
    """
    try:
        fractions = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated numbers: {text!r}") from None
    if not all(0 < f <= 1 for f in fractions):
        raise argparse.ArgumentTypeError(f"each fraction must be in (0, 1]: {text!r}")
    return fractions


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan.make(args.quick, args)
    sections = set(args.sections.split(","))
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if loadgen.wrk_path() is None:
        print("wrk is not installed: `make bench` installs it (apt-get install wrk)")
        return 2
    result: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "plan": plan.__dict__,
        "web_concurrency": args.web_concurrency,
        "targets": TARGETS,
        "skipped": {},
    }
    if "postgres" in backends:
        reason = postgres_available(args.pg_url)
        if reason:
            result["skipped"]["postgres"] = reason
            backends.remove("postgres")
            log(reason + "; skipping PostgreSQL")
    work = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    profile_dir = args.out.parent if args.profile else None
    result["profiled"] = bool(args.profile)
    env = base_env(args.web_concurrency)
    keys = Secrets()
    started: list[Callable[[], Any]] = []
    stacks: dict[str, RelayStack] = {}
    t0 = time.monotonic()
    try:
        sim, sim_url = start_simulator(work, env, SIM_TIMINGS)
        started.append(sim.stop)
        sink, sink_url = start_subscriber(work, env)
        started.append(sink.stop)
        # gunicorn.conf.py checks the relay's settings in the master, even for the bare app.
        bare_env = {**env, "RELAY_ENV": "development"}
        bare = WebServer("web-bare", bare_env, work, app=BARE_APP)
        started.append(bare.stop)
        for kind in backends:
            stack = RelayStack(
                kind, run_dir=work, env=env, keys=keys, pg_url=args.pg_url, simulator_url=sim_url
            )
            stacks[kind] = stack
            started.append(stack.stop)
            stack.start_web()
        bare.wait_ready()
        log(f"started: bare and {', '.join(stacks)} (WEB_CONCURRENCY={args.web_concurrency})")
        # Ingest writes the outbox too: a subscriber to every event type, no worker running.
        ingest_subs = {
            k: s.add_subscriber(sink_url + "/hook", ALL_EVENTS) for k, s in stacks.items()
        }
        if "ingest" in sections:
            result["ingest"] = ingest(plan, bare, stacks, work, profile_dir)
        if "purge" in sections:
            result["purge"] = purge.ingest_during_purge(
                plan, stacks, {k: str(s["id"]) for k, s in ingest_subs.items()}, work
            )
            if sections & {"fanout", "e2e"}:  # what that ingest stored, applied before them
                for stack in stacks.values():
                    _apply_stored(stack.engine)
        result["memory"] = {"bare": memory_of(bare, None)}
        bare.stop()
        for kind, stack in stacks.items():
            stack.remove_subscriber(ingest_subs[kind]["id"])  # cancels the ingest backlog
        result["sink_capacity"] = sink_capacity(sink_url, work, 2.0, 8)
        capacity: dict[str, float] = {}
        for kind, stack in stacks.items():
            sub = stack.add_subscriber(sink_url + "/hook", ALL_EVENTS, args.max_in_flight)
            fan_job = data.create_jobs(
                stack.engine, stack.signer, 1, label="fan", now=datetime.now(UTC)
            )
            stack.start_worker()
            if "fanout" in sections:
                item = fanout(plan, stack, sink_url, sub, fan_job[0].job_id, profile_dir)
                result.setdefault("fanout", {})[kind] = item
                capacity[kind] = item["relay"]["dps"]
            if "e2e" in sections:
                light = end_to_end(
                    stack, sink_url, rate=plan.light_rate, seconds=plan.e2e_seconds, label="light"
                )
                log(f"e2e {kind} light: p50 {light['p50_ms']} ms, p99 {light['p99_ms']} ms")
                measured = result.get("ingest", {}).get(kind, {})
                heavy_rate = heavy_rate_for(
                    plan,
                    ingest_rps=measured.get("relay", {}).get("rps"),
                    fanout_dps=capacity.get(kind),
                    apply_rps=measured.get("apply", {}).get("rate"),
                )
                heavy = end_to_end(
                    stack, sink_url, rate=heavy_rate, seconds=plan.e2e_seconds, label="heavy"
                )
                log(
                    f"e2e {kind} heavy {heavy_rate}/s: "
                    f"p50 {heavy['p50_ms']} ms, p99 {heavy['p99_ms']} ms"
                )
                result.setdefault("e2e", {})[kind] = {"light": light, "heavy": heavy}
            if "vendor" in sections and "vendor" not in result:
                result["vendor"] = vendor_requests(plan, stack, sim_url, sink_url)
            result["memory"][kind] = memory_of(stack.web, stack.worker)
    finally:
        for stop in reversed(started):
            try:
                stop()
            except Exception as exc:  # keep stopping the others
                log(f"stopping: {type(exc).__name__}: {exc}")
        if not args.keep:  # the logs stay; the latency files and the SQLite files go
            for path in sorted(work.rglob("*"), reverse=True):
                if path.is_file() and (path.suffix in (".txt", ".lua") or ".sqlite3" in path.name):
                    path.unlink()
    result["machine"]["load_average_end"] = list(os.getloadavg())
    result["duration_s"] = round(time.monotonic() - t0, 1)
    result["work_dir"] = str(work)
    table = markdown(result)
    result["table_markdown"] = table
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table)
    print(f"\nJSON: {args.out}  (logs: {work})  {result['duration_s']} s", flush=True)
    return 0
