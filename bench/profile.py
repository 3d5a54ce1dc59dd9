"""Sampling profiles of the measured processes with py-spy (``--profile``).

Each profiled pid gets ``py-spy record --format raw`` (collapsed stacks, idle frames included so
that lock and I/O waits show), stopped with SIGINT when its section ends. :func:`summary` turns
the files into the share of samples under each function (inclusive), which is what the README's
Performance section quotes. py-spy comes from PyPI: ``make bench PROFILE=1`` installs it.
"""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


class Profiler:
    """py-spy on some pids until :meth:`stop`; files land in ``out_dir``."""

    def __init__(self, out_dir: Path, name: str, pids: Iterable[int], rate: int = 250) -> None:
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not installed (make bench PROFILE=1 installs it)")
        out_dir.mkdir(parents=True, exist_ok=True)
        self.files: list[Path] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        for pid in pids:
            path = out_dir / f"profile-{name}-{pid}.txt"
            self.files.append(path)
            self._procs.append(
                subprocess.Popen(
                    [exe, "record", "--pid", str(pid), "--rate", str(rate), "--idle"]
                    + ["--format", "raw", "--output", str(path), "--nonblocking"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def stop(self) -> list[Path]:
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self._procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return [p for p in self.files if p.exists()]


def _frame_name(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    name, _, where = frame.partition(" (")
    module = where.split(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({module})" if module else name


def summary(files: Iterable[Path], top: int = 40, only_requests: str | None = None) -> str:
    """Share of samples under each function (inclusive), largest first.

    :param only_requests: keep only stacks through this function name (e.g. the request
        handler), so that idle threads waiting for work do not dilute the shares.
    """
    inclusive: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    total = 0
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            frames = [_frame_name(f) for f in stack.split(";")]
            if only_requests and not any(f.startswith(only_requests + " ") for f in frames):
                continue
            count = int(count_text)
            total += count
            for name in set(frames):
                inclusive[name] += count
            leaf[frames[-1]] += count
    if not total:
        return "(no samples)"
    lines = [f"{total} samples" + (f" under {only_requests}" if only_requests else "")]
    lines.append("inclusive:")
    lines += [f"  {n / total * 100:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines.append("self (leaf):")
    lines += [f"  {n / total * 100:5.1f}%  {name}" for name, n in leaf.most_common(top // 2)]
    return "\n".join(lines)
