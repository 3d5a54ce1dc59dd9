"""What a benchmark run reads of its child processes (started and stopped with
:mod:`simulator.processes`, their output in log files): their pids, memory and CPU time from
``/proc``; and its own progress lines.
"""

from __future__ import annotations

import os
import sys
import time


def log(message: str) -> None:
    """One progress line on stderr, with the time."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (e.g. gunicorn's workers under its master)."""
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: parse after the last ")".
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry))
    return sorted(found)


def vm_hwm_mb(pid: int) -> float | None:
    """Peak resident set size of ``pid`` (``VmHWM`` of ``/proc/<pid>/status``), in MiB."""
    return _status_field(pid, "VmHWM")


def vm_rss_mb(pid: int) -> float | None:
    """Current resident set size of ``pid`` (``VmRSS``), in MiB."""
    return _status_field(pid, "VmRSS")


def _status_field(pid: int, name: str) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time used so far by ``pid``, in seconds."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[-1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
