"""Load generators: wrk for the closed-loop ingest runs, a Python open-loop sender for latency.

wrk (C, event loop) drives the ingest benchmark: one thread, N keep-alive connections, each
request the next line of a file of callback bodies (a Lua script), statistics printed as one
JSON line by the script's ``done``. Its CPU time is measured around each run, so a report can
show that the load generator was not the bottleneck (it uses a fraction of one core while the
bare endpoint saturates).
"""

from __future__ import annotations

import json
import queue
import resource
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

WRK_SCRIPT = r"""
-- bench/loadgen.py: POST the lines of a file in turn (thread t of T takes lines t, t+T, ...).
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
  index = tid or 0
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
) -> WrkResult:
    """POST the lines of ``bodies`` to ``url`` + ``path`` for ``seconds`` over ``connections``.

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
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    stats = json.loads(line.removeprefix("BENCHJSON "))
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
    )


@dataclass(frozen=True)
class Sent:
    """One request of :func:`open_loop`: key, Unix send time, status (None: failed), seconds."""

    key: Any
    sent_at: float
    status: int | None
    elapsed: float


def open_loop(
    url: str,
    items: Sequence[tuple[Any, str]],
    *,
    rate: float,
    senders: int = 8,
    timeout: float = 10.0,
) -> list[Sent]:
    """POST ``items`` (key, JSON body) to ``url`` at ``rate`` per second on a fixed timetable.

    Open loop: request i is due at ``start + i / rate`` whether or not earlier ones have been
    answered (a pool of ``senders`` threads; a late sender starts at once). Bounded by
    ``len(items)``; every request has a timeout.
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
                if wait > 0:
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
                with lock:
                    results.append(Sent(key, sent, status, time.monotonic() - t0))

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
