"""The results: one JSON document and a Markdown table of ratios, absolute figures and targets."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

#: The targets of the benchmark issue, on the project's 2-core machine.
TARGETS = {
    "ingest_ratio_sqlite": 0.5,
    "ingest_ratio_postgres": 0.35,
    "ingest_p99_ms": 25.0,
    "fanout_ratio": 0.7,
    "e2e_light_p50_ms": 30.0,
    "e2e_light_p99_ms": 150.0,
    "rss_web_mb": 80.0,
    "rss_worker_mb": 120.0,
    # "ingest p99 unchanged while a purge of 100k rows runs": within the run-to-run noise.
    "purge_p99_ratio": 1.25,
}


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return float(ordered[rank - 1])


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _verdict(ok: bool | None) -> str:
    if ok is None:
        return "n/a"
    return "met" if ok else "**missed**"


def _backend_name(backend: str) -> str:
    return "SQLite" if backend == "sqlite" else "PostgreSQL"


def _p50_p99(stats: dict[str, Any]) -> str:
    """``"p50 / p99"`` of a latency summary (``p50_ms``, ``p99_ms``), in ms to 0.1."""
    return f"{_fmt(stats['p50_ms'], 1)} / {_fmt(stats['p99_ms'], 1)}"


#: One row of the table: measure, runway-relay, reference, ratio, target, verdict.
_Row = tuple[str, str, str, str, str, str]


def _floor_row(measure: str, value: float, reference: str, ratio: float, floor: float) -> _Row:
    """A throughput row whose target is a floor on the ratio to the reference (``≥ floor``)."""
    return (measure, _fmt(value), reference, _fmt(ratio, 2), f"≥ {floor}", _verdict(ratio >= floor))


def markdown(result: dict[str, Any]) -> str:
    """The table printed by ``make bench`` (and pasted into the README's Performance section)."""
    rows: list[_Row] = []
    ingest = result.get("ingest", {})
    for backend in ("sqlite", "postgres"):
        item = ingest.get(backend)
        if not item:
            continue
        name = _backend_name(backend)
        rows.append(
            _floor_row(
                f"Ingest, {name}: callbacks/s ({item['connections']} connections)",
                item["relay"]["rps"],
                f"bare Flask {_fmt(item['bare']['rps'])}",
                item["ratio"],
                TARGETS[f"ingest_ratio_{backend}"],
            )
        )
        applied = item.get("apply")
        if applied:
            rows.append(
                (
                    f"Apply, {name}: stored callbacks applied/s (one applier)",
                    _fmt(applied["rate"]),
                    "",
                    "",
                    "",
                    "",
                )
            )
        rows.append(
            (
                f"Ingest, {name}: p50 / p99 latency, ms",
                _p50_p99(item["relay"]),
                _p50_p99(item["bare"]),
                "",
                f"p99 ≤ {TARGETS['ingest_p99_ms']:g}",
                _verdict(item["relay"]["p99_ms"] <= TARGETS["ingest_p99_ms"]),
            )
        )
    for backend, item in result.get("purge", {}).items():
        name = _backend_name(backend)
        under, base = item["during_purge"], item["baseline"]
        limit = TARGETS["purge_p99_ratio"]
        rows.append(
            (
                f"Ingest during a purge of {item['purge']['removed_rows']:,} rows, {name}: "
                "p50 / p99, ms",
                _p50_p99(under),
                f"no purge {_p50_p99(base)}",
                _fmt(item["p99_ratio"], 2),
                f"p99 ≤ {limit:g}×",
                _verdict(item["p99_ratio"] <= limit),
            )
        )
        rows.append(
            (
                f"Ingest during the purge, {name}: callbacks/s",
                _fmt(under["rps"]),
                f"no purge {_fmt(base['rps'])}",
                _fmt(item["rps_ratio"], 2),
                "",
                "",
            )
        )
        for fixed in item.get("fixed_rate", []):
            under, base = fixed["during_purge"], fixed["baseline"]
            rows.append(
                (
                    f"Ingest at {fixed['rate']:g}/s (open loop) during a purge of "
                    f"{fixed['purge']['removed_rows']:,} rows, {name}: p50 / p99, ms",
                    _p50_p99(under),
                    f"no purge {_p50_p99(fixed['before'])} before, "
                    f"{_p50_p99(fixed['after'])} after",
                    _fmt(fixed["p99_ratio"], 2),
                    "p99 no higher than by chance"
                    if "test" in fixed
                    else "p99 within the windows without a purge",
                    # bench/purge.py's rule (UNCHANGED_P; before 2026-12-02 the highest p99 of
                    # a window without); older results lack it
                    _verdict(fixed.get("unchanged", fixed["p99_ratio"] <= limit)),
                )
            )
    for backend, item in result.get("fanout", {}).items():
        name = _backend_name(backend)
        rows.append(
            _floor_row(
                f"Fan-out, {name}: deliveries/s (concurrency {item['concurrency']})",
                item["relay"]["dps"],
                f"requests loop {_fmt(item['plain']['dps'])}",
                item["ratio"],
                TARGETS["fanout_ratio"],
            )
        )
    for backend, item in result.get("e2e", {}).items():
        name = _backend_name(backend)
        for load in ("light", "heavy"):
            run = item.get(load)
            if not run:
                continue
            ok: bool | None = None
            target = ""
            if load == "light":
                target = (
                    f"p50 ≤ {TARGETS['e2e_light_p50_ms']:g}, p99 ≤ {TARGETS['e2e_light_p99_ms']:g}"
                )
                ok = (
                    run["p50_ms"] <= TARGETS["e2e_light_p50_ms"]
                    and run["p99_ms"] <= TARGETS["e2e_light_p99_ms"]
                )
            rows.append(
                (
                    f"End to end, {name}, {load} ({_fmt(run['rate'])}/s): p50 / p99, ms",
                    _p50_p99(run),
                    "",
                    "",
                    target,
                    _verdict(ok),
                )
            )
    vendor = result.get("vendor")
    if vendor:
        relay, poll = vendor["relay"], vendor["polling"]
        rows.append(
            (
                "Vendor requests per completed task",
                f"{_fmt(relay['requests_per_task'], 1)}"
                f" ({_fmt(relay['status_per_task'], 1)} status)",
                f"polling every 10 s: {_fmt(poll['requests_per_task'], 1)}",
                _fmt(relay["requests_per_task"] / poll["requests_per_task"], 2),
                "",
                "",
            )
        )
        rows.append(
            (
                "Completion → notification, mean",
                f"{_fmt(relay['mean_delay_ms'], 1)} ms",
                f"polling: {_fmt(poll['mean_delay_s'], 2)} s",
                "",
                "",
                "",
            )
        )
    memory = result.get("memory", {})
    for backend, item in memory.items():
        name = _backend_name(backend)
        if backend == "bare":
            continue
        rows.append(
            (
                f"Peak RSS, {name}: gunicorn worker (max of {len(item['web_mb'])}), MB",
                _fmt(max(item["web_mb"]) if item["web_mb"] else None, 1),
                f"bare {_fmt(max(memory.get('bare', {}).get('web_mb') or [math.nan]), 1)}",
                "",
                f"≤ {TARGETS['rss_web_mb']:g}",
                _verdict(bool(item["web_mb"]) and max(item["web_mb"]) <= TARGETS["rss_web_mb"]),
            )
        )
        if item.get("worker_mb") is not None:
            rows.append(
                (
                    f"Peak RSS, {name}: relay worker, MB",
                    _fmt(item["worker_mb"], 1),
                    "",
                    "",
                    f"≤ {TARGETS['rss_worker_mb']:g}",
                    _verdict(item["worker_mb"] <= TARGETS["rss_worker_mb"]),
                )
            )
    header = ("measure", "runway-relay", "reference", "ratio", "target", "")
    notes = _notes(result)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines + [""] + notes)


def _notes(result: dict[str, Any]) -> list[str]:
    """How to read the table: the machine, and the checks that the references were sound."""
    notes: list[str] = []
    box = result.get("machine", {})
    if box:
        notes.append(
            f"Machine: {box.get('cpu')}, {box.get('cores')} cores, {box.get('memory_gb')} GB, "
            f"Linux {box.get('kernel')}, Python {box.get('python')}, SQLite {box.get('sqlite')}; "
            f"load average {box.get('load_average_start', [math.nan])[0]:.1f} at start, "
            f"{box.get('load_average_end', [math.nan])[0]:.1f} at end; "
            f"WEB_CONCURRENCY={result.get('web_concurrency')}, "
            f"run took {result.get('duration_s')} s."
        )
    ingest = result.get("ingest", {})
    gen = ingest.get("load_generator")
    if gen:
        checks = [
            f"{name}: {item['callback_outcomes']}"
            for name, item in ingest.items()
            if isinstance(item, dict) and "callback_outcomes" in item
        ]
        notes.append(
            f"Load generator: wrk used {gen['wrk_core_fraction_during_bare_runs'] * 100:.0f}% of "
            f"one core while the bare endpoint ran flat out. Callback outcomes in the database: "
            + "; ".join(checks)
            + "."
        )
    for backend, item in result.get("purge", {}).items():
        run = item["purge"]
        notes.append(
            f"Purge, {backend}: `relay purge` removed {run['removed_rows']:,} rows "
            f"({run['seeded_rows']:,} seeded) in {run['seconds']} s; the load ran "
            f"{run['load_seconds']} s beside it ({run['overlap_fraction_of_load']:.0%} of it "
            f"during the purge), the baseline {2 * item['seconds_per_baseline_run']:g} s "
            f"(before and after); callback outcomes {item['callback_outcomes']}"
            + ("; some bodies were sent twice" if item.get("bodies_repeated") else "")
            + "."
        )
        for fixed in item.get("fixed_rate", []):
            run = fixed["purge"]
            notes.append(
                f"Purge, {backend}, at {fixed['rate']:g} callbacks/s: removed "
                f"{run['removed_rows']:,} rows in {run['seconds']} s, "
                f"{run.get('cpu_s', math.nan)} s of CPU in the purge process ("
                f"{run['overlap_fraction_of_load']:.0%} of the load during the purge); "
                f"{fixed['during_purge']['errors']} errors, "
                f"{fixed['during_purge']['non_2xx']} non-2xx during it."
                + _test_note(fixed.get("test"))
                + _slices_note(fixed.get("slices"))
            )
    sink = result.get("sink_capacity")
    if sink:
        notes.append(
            f"Sink: {_fmt(sink['rps'])} hooks/s under wrk (8 connections), far above either "
            "fan-out figure, so it is not what limits them."
        )
    if result.get("profiled"):
        notes.append("Profiled run (py-spy attached in round 1): figures are lower than usual.")
    if result.get("skipped"):
        notes.append(f"Skipped: {result['skipped']}.")
    return notes


def _test_note(test: dict[str, Any] | None) -> str:
    """bench.loadgen.p99_shift_test's answer as a sentence; empty for older results."""
    if not test:
        return ""
    during, without = test["slices"]
    return (
        f" Over {during} slices with the purge and {without} without, its p99 moved "
        f"{test['difference_ms']:+} ms; shuffling the slices' labels {test['rounds']} times "
        f"moved it up to {test['noise_ms']} ms in 95% of them (p = {test['p_value']})."
    )


def _slices_note(slices: dict[str, Any] | None) -> str:
    """The windows cut into slices as long as a window without (bench.purge._fixed_rate's
    ``slices``), as a sentence; empty for results written before they were."""
    if not slices or not slices["purge_p99_ms"]:
        return ""
    above = slices.get("purge_above_spread")  # results of the earlier design (to 2026-12-02)
    return (
        f" Cut into {slices['seconds']:g} s slices: median p99 "
        f"{slices['purge_median_p99_ms']} ms during the purge against "
        f"{slices['without_median_p99_ms']} ms without"
        + (
            f"; {above:.0%} of the {len(slices['purge_p99_ms'])} slices during the purges "
            "above the highest window without."
            if above is not None
            else "."
        )
    )
