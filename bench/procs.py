"""Child processes of a benchmark run: started with their output in a log file, stopped by pid.

Output goes to files rather than pipes, so that no thread of the measuring process spends CPU
reading the servers' log lines while it measures them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests


def log(message: str) -> None:
    """One progress line on stderr, with the time."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Proc:
    """A child process in its own session, logging to ``log_dir/<name>.log``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_dir: Path,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            env=dict(env),
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_line(self, needle: str, timeout: float) -> None:
        """Wait until the log holds ``needle``.

        :raises TimeoutError: not within ``timeout`` seconds, or the process exited.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_path.read_text(errors="replace"):
                return
            if not self.alive():
                break
            time.sleep(0.05)
        raise TimeoutError(f"{self.name}: no {needle!r} in its output:\n{self.tail()}")

    def wait_http(self, url: str, timeout: float = 30.0) -> None:
        """Wait until GET ``url`` answers 200.

        :raises TimeoutError: not within ``timeout`` seconds, or the process exited.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                break
            try:
                if requests.get(url, timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.name}: {url} not ready:\n{self.tail()}")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM to the process group; SIGKILL after ``timeout`` seconds."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


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
