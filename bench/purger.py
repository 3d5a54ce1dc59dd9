"""The fixed-rate runs' purge process: the worker's scheduled purge in a process that is up.

``relay worker`` runs :func:`receiver.store.retention.purge` on a thread of a process started
long before; ``relay purge`` first starts a Python process (imports, settings, engine), about
1.5 s of a core, during which a 2-core machine served callbacks far more slowly (at 500/s a p99
of 30-100 ms in those 1.5 s against 8-10 ms without a purge, 2026-12-01). Counted in each purge
window, that start-up, not the purge, decided the p99 of short windows. So the fixed-rate runs
start this process during their warm-up (:func:`start`) and ask it for each purge.

Protocol (one JSON object per line): it prints ``{"ready": true}`` once its engine has
connected; then for each line on stdin, an integer ``RETENTION_DAYS`` and optionally a number of
seconds, it runs the same call as ``relay purge`` (the other settings from its environment) and
prints ``{"removed": {table: rows}, "finished": bool}``, or ``{"error": "..."}`` if the purge
raised. Given seconds, the purge stops after them (after the batch in progress, as the worker's
purge stops when the worker is asked to) and ``finished`` says whether it had removed everything
before that. It exits at the end of stdin.
"""

from __future__ import annotations

import argparse
import json
import queue
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    """Serve purges on stdin until it closes (see the module's docstring).

    :param argv: ``[--batch-rows N] [--pause-seconds S]``: the purge's ``batch`` and least
        ``pause`` (by default the worker's: :data:`receiver.store.retention.BATCH_ROWS` and
        :data:`~receiver.store.retention.PAUSE_SECONDS`).
    """
    from receiver.runtime import build_runtime
    from receiver.settings import load_settings
    from receiver.store import retention

    parser = argparse.ArgumentParser(prog="python -m bench.purger")
    parser.add_argument("--batch-rows", type=int, default=retention.BATCH_ROWS)
    parser.add_argument("--pause-seconds", type=float, default=retention.PAUSE_SECONDS)
    args = parser.parse_args(argv)
    settings = load_settings()
    engine = build_runtime(settings).engine
    with engine.connect():  # the first connection now, in the warm-up, not in a window
        pass
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        days, *budget = line.split()
        stop = threading.Event()
        timer = threading.Timer(float(budget[0]), stop.set) if budget else None
        if timer is not None:
            timer.start()
        try:
            removed = retention.purge(
                engine,
                retention.cutoff_for(int(days)),
                batch=args.batch_rows,
                pause=args.pause_seconds,
                stop=stop,
                artifact_store=settings.artifact_store,
                s3_endpoint_url=settings.artifact_s3_endpoint_url,
            )
        except Exception as exc:  # reported to the bench, which fails the run
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
            continue
        finally:
            if timer is not None:
                timer.cancel()
        print(json.dumps({"removed": removed, "finished": not stop.is_set()}), flush=True)
    engine.dispose()
    return 0


class Purger:
    """A :func:`main` process of the bench's.

    :param env: its environment (the stack's: ``DATABASE_URL`` and the rest).
    :param cwd: its working directory.
    :param args: its command-line arguments (see :func:`main`).
    :raises RuntimeError: it did not say it was ready within ``timeout`` seconds.
    """

    def __init__(
        self, env: Mapping[str, str], cwd: Path, timeout: float = 60.0, args: Sequence[str] = ()
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.purger", *args],
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if self._answer(timeout).get("ready") is not True:
            raise RuntimeError("bench.purger did not start")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put("")  # it exited

    def _answer(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"bench.purger did not answer in {timeout:g} s") from None
        if not line:
            raise RuntimeError(f"bench.purger exited ({self.proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def purge(self, retention_days: int, timeout: float) -> dict[str, int]:
        """Run one purge with ``RETENTION_DAYS=retention_days`` to its end; rows removed per
        table.

        :raises RuntimeError: the purge failed, or took longer than ``timeout`` seconds.
        """
        removed, _ = self._ask(f"{retention_days}", timeout)
        return removed

    def purge_for(
        self, retention_days: int, seconds: float, timeout: float
    ) -> tuple[dict[str, int], bool]:
        """Run the purge with ``RETENTION_DAYS=retention_days`` for at most ``seconds`` (then
        it stops after the batch in progress; the next call goes on from there).

        :returns: rows removed per table, and whether nothing was left to remove.
        :raises RuntimeError: the purge failed, or took longer than ``timeout`` seconds.
        """
        return self._ask(f"{retention_days} {seconds:g}", timeout)

    def _ask(self, line: str, timeout: float) -> tuple[dict[str, int], bool]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{line}\n")
        self.proc.stdin.flush()
        answer = self._answer(timeout)
        if "error" in answer:
            raise RuntimeError(f"the purge failed: {answer['error']}")
        removed: dict[str, int] = answer["removed"]
        return removed, bool(answer["finished"])

    def close(self) -> None:
        """Close its stdin and wait for its exit (killed after 30 s), then close its stdout."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(30)  # it reads to the end of its stdout, which the exit closed
        if self.proc.stdout is not None:
            self.proc.stdout.close()


if __name__ == "__main__":
    raise SystemExit(main())
