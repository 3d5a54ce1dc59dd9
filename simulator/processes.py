"""Start and stop the real processes (gunicorn, ``relay worker``, the simulator) on loopback.

Shared by ``make demo`` and the end-to-end tests, so both run the project exactly as a PaaS
would: the ``web:`` and ``worker:`` lines of the Procfile, with their environment.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def procfile_command(name: str, procfile: Path) -> list[str]:
    """The command of line ``name`` in ``procfile`` (e.g. ``web``), split like a shell would.

    :raises KeyError: no such line.
    """
    for line in procfile.read_text().splitlines():
        key, sep, command = line.partition(":")
        if sep and key.strip() == name:
            return shlex.split(command.strip())
    raise KeyError(f"no {name!r} line in {procfile}")


class Process:
    """A child process whose output is kept (the last 400 lines) and optionally echoed.

    :param name: a label for its output lines.
    :param echo: print each output line as ``[name] …``.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path | None = None,
        echo: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.echo = echo
        self.lines: deque[str] = deque(maxlen=400)
        self._seen = threading.Condition()
        self.proc = subprocess.Popen(
            self.argv,
            env=dict(env),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()
            if self.echo:
                print(f"[{self.name}] {line}", flush=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        with self._seen:
            return "\n".join(self.lines)

    def wait_for_line(self, needle: str, timeout: float) -> str:
        """Block until an output line contains ``needle``; returns it.

        :raises TimeoutError: not within ``timeout`` seconds, or the process exited.
        """
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:
                for line in self.lines:
                    if needle in line:
                        return line
                if self.proc.poll() is not None:
                    raise TimeoutError(
                        f"{self.name} exited ({self.proc.returncode}):\n{self.output()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name}: no line with {needle!r}:\n{self.output()}")
                self._seen.wait(min(left, 0.1))

    def wait_http(self, url: str, timeout: float = 20.0) -> None:
        """Block until GET ``url`` answers 200.

        :raises TimeoutError: not within ``timeout`` seconds, or the process exited.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TimeoutError(f"{self.name} exited ({self.proc.returncode}):\n{self.output()}")
            try:
                if requests.get(url, timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.name}: {url} not ready after {timeout}s:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig`` to the process group and wait; SIGKILL after ``timeout`` seconds."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._reader.join(2)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return int(self.proc.returncode)

    def kill(self) -> None:
        """SIGKILL, no grace: a crash."""
        self.stop(signal.SIGKILL, timeout=5)


def bin_path(name: str) -> str:
    """The path of a console script installed beside this Python (``relay``, ``gunicorn``)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name
