"""The fixed-rate runs' purge process: the worker's scheduled purge in a process that is up.

``relay worker`` runs :func:`receiver.store.retention.purge` on a thread of a process started
long before; ``relay purge`` first starts a Python process (imports, settings, engine), about
1.5 s of a core, during which a 2-core machine served callbacks far more slowly (at 500/s a p99
of 30-100 ms in those 1.5 s against 8-10 ms without a purge, 2026-12-01). Counted in each purge
window, that start-up, not the purge, decided the p99 of short windows. So the fixed-rate runs
start this process during their warm-up (:func:`start`) and ask it for each purge.

Protocol (one JSON object per line): it prints ``{"ready": true}`` once its engine has
connected; then for each line on stdin, an integer ``RETENTION_DAYS``, it runs the same call as
``relay purge`` (the other settings from its environment) and prints ``{"removed": {table:
rows}}``, or ``{"error": "..."}`` if the purge raised. It exits at the end of stdin.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def main() -> int:
    """Serve purges on stdin until it closes (see the module's docstring)."""
    from receiver.runtime import build_runtime
    from receiver.settings import load_settings
    from receiver.store import retention

    settings = load_settings()
    engine = build_runtime(settings).engine
    with engine.connect():  # the first connection now, in the warm-up, not in a window
        pass
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        try:
            removed = retention.purge(
                engine,
                retention.cutoff_for(int(line)),
                artifact_store=settings.artifact_store,
                s3_endpoint_url=settings.artifact_s3_endpoint_url,
            )
        except Exception as exc:  # reported to the bench, which fails the run
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
            continue
        print(json.dumps({"removed": removed}), flush=True)
    engine.dispose()
    return 0


class Purger:
    """A :func:`main` process of the bench's.

    :param env: its environment (the stack's: ``DATABASE_URL`` and the rest).
    :param cwd: its working directory.
    :raises RuntimeError: it did not say it was ready within ``timeout`` seconds.
    """

    def __init__(self, env: Mapping[str, str], cwd: Path, timeout: float = 60.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.purger"],
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
        """Run one purge with ``RETENTION_DAYS=retention_days``; rows removed per table.

        :raises RuntimeError: the purge failed, or took longer than ``timeout`` seconds.
        """
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{retention_days}\n")
        self.proc.stdin.flush()
        answer = self._answer(timeout)
        if "error" in answer:
            raise RuntimeError(f"the purge failed: {answer['error']}")
        removed: dict[str, int] = answer["removed"]
        return removed

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
