"""Start, watch and stop the real processes (gunicorn, ``relay worker``, the simulator, sinks).

The one process helper of the project: ``make demo``, the benchmark (``python -m bench``) and
the tests all start their child processes with it, so each runs the project exactly as a PaaS
would (the ``web:`` and ``worker:`` lines of the Procfile, with their environment) and each
child is started, waited for and stopped the same way:

- :class:`Process`: a command with its environment in a session (process group) of its own,
  its output (stdout and stderr together) captured to a file; waits bounded in seconds for an
  output line (:meth:`Process.wait_for_line`) or an HTTP readiness URL
  (:meth:`Process.wait_http`), whose errors carry the child's last output lines; a graceful
  stop (:meth:`Process.stop`: SIGTERM to the group, SIGKILL after a bound).
- :func:`start`: a :class:`Process` that is ready (or stopped again, and the error raised).
- :func:`free_port`, :func:`procfile_argv` (a Procfile line, runnable), :func:`bin_path`,
  :func:`simulator_argv` (``python -m simulator`` on a port).

The output goes to a file rather than a pipe, so no thread of the parent reads a server's log
lines while, e.g., the benchmark measures that server (only ``echo`` adds a thread).
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import requests

#: How many of its last output lines a :class:`Process` shows in its errors and ``output()``.
OUTPUT_LINES = 400
_POLL = 0.05  # seconds between two looks at a child's output or readiness URL


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bin_path(name: str) -> str:
    """The path of a console script installed beside this Python (``relay``, ``gunicorn``);
    ``name`` itself (looked up on PATH) when there is none."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def procfile_command(name: str, procfile: Path) -> list[str]:
    """The command of line ``name`` in ``procfile`` (e.g. ``web``), split like a shell would.

    :raises KeyError: no such line.
    """
    for line in procfile.read_text().splitlines():
        key, sep, command = line.partition(":")
        if sep and key.strip() == name:
            return shlex.split(command.strip())
    raise KeyError(f"no {name!r} line in {procfile}")


def procfile_argv(name: str, procfile: Path) -> list[str]:
    """:func:`procfile_command` with its program resolved by :func:`bin_path` (this venv's
    ``gunicorn``, ``relay``), ready for :class:`Process`.

    :raises KeyError: no such line.
    """
    argv = procfile_command(name, procfile)
    argv[0] = bin_path(argv[0])
    return argv


def simulator_argv(port: int, *options: str) -> list[str]:
    """``python -m simulator`` on ``127.0.0.1:port`` with ``options`` (e.g. ``--step-delay``,
    ``--quiet``); it prints a line with ``listening on`` once it listens."""
    return [sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", str(port), *options]


class Process:
    """A child process in a session of its own, its output captured to a file.

    Starts at once. stdout and stderr go to ``log_path`` (appended to; only what this run adds
    counts), or to an anonymous temporary file when None; :meth:`output` and the waits read it.
    :meth:`stop` keeps what it held in memory and closes it, so ``output()`` still answers.

    :param name: a label for errors and echoed lines.
    :param argv: the command.
    :param env: its whole environment (nothing is inherited).
    :param cwd: its working directory (the caller's when None).
    :param echo: print each output line as ``[name] …`` as it comes (from a thread).
    :param log_path: the file its output goes to, or None.
    :raises OSError: the command could not be started.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path | None = None,
        echo: bool = False,
        log_path: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log: IO[bytes] | None = (
            tempfile.TemporaryFile(prefix=f"{name}-", suffix=".log")
            if log_path is None
            else log_path.open("ab+")
        )
        self._start = os.fstat(self._log.fileno()).st_size
        self._final = ""  # the output once stopped
        self.proc = subprocess.Popen(
            self.argv,
            env=dict(env),
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._echo_done = threading.Event()
        self._echoer: threading.Thread | None = None
        if echo:
            self._echoer = threading.Thread(target=self._echo, daemon=True)
            self._echoer.start()

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """The child's pid (also its process group's id)."""
        return self.proc.pid

    def alive(self) -> bool:
        """Whether the child is still running."""
        return self.proc.poll() is None

    def _text(self) -> str:
        """All its output so far (newlines normalized)."""
        if self._log is None:
            return self._final
        fd = self._log.fileno()
        data = os.pread(fd, max(0, os.fstat(fd).st_size - self._start), self._start)
        return data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")

    def _lines(self, *, partial: bool) -> list[str]:
        """Its output lines; the last, unfinished one only when ``partial``."""
        lines = self._text().split("\n")
        last = lines.pop()
        if partial and last:
            lines.append(last)
        return lines

    def output(self, lines: int = OUTPUT_LINES) -> str:
        """Its last ``lines`` output lines, joined by newlines."""
        return "\n".join(self._lines(partial=True)[-lines:])

    def _echo(self) -> None:
        shown = 0
        while True:
            done = self._echo_done.wait(_POLL)
            lines = self._lines(partial=done)
            for line in lines[shown:]:
                print(f"[{self.name}] {line}", flush=True)
            shown = len(lines)
            if done:
                return

    def _failure(self, what: str) -> TimeoutError:
        code = self.proc.poll()
        state = f"exited ({code})" if code is not None else what
        return TimeoutError(f"{self.name} {state}:\n{self.output()}")

    def wait_for_line(self, needle: str, timeout: float) -> str:
        """Block until an output line contains ``needle``; returns the first such line.

        :raises TimeoutError: not within ``timeout`` seconds, or the process exited first
            (its last output lines are in the message).
        """
        deadline = time.monotonic() + timeout
        while True:
            exited = not self.alive()  # before reading: then all it wrote is read
            for line in self._lines(partial=exited):
                if needle in line:
                    return line
            if exited or time.monotonic() >= deadline:
                raise self._failure(f"printed no line with {needle!r} within {timeout} s")
            time.sleep(_POLL)

    def wait_http(self, url: str, timeout: float = 30.0) -> None:
        """Block until GET ``url`` answers 200 (each try bounded by 1 s; no proxy).

        :raises TimeoutError: not within ``timeout`` seconds, or the process exited first
            (its last output lines are in the message).
        """
        deadline = time.monotonic() + timeout
        with requests.Session() as http:
            http.trust_env = False
            while self.alive():
                try:
                    if http.get(url, timeout=1).status_code == 200:
                        return
                except requests.RequestException:
                    pass
                if time.monotonic() >= deadline:
                    break
                time.sleep(_POLL)
        raise self._failure(f"did not answer 200 at {url} within {timeout} s")

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig`` to its process group unless it has exited, wait ``timeout`` seconds,
        then SIGKILL the group (and wait 5 s more); close its output file. Idempotent.

        Returns its exit status (negative: the signal that ended it).

        :raises subprocess.TimeoutExpired: still there 5 s after SIGKILL.
        """
        if self.proc.poll() is None:
            self._signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(5)
        if self._echoer is not None:
            self._echo_done.set()
            self._echoer.join(2)
        if self._log is not None:
            self._final = self._text()
            self._log.close()
            self._log = None
        return int(self.proc.returncode)

    def kill(self) -> int:
        """SIGKILL to its process group, no grace (a crash); returns :meth:`stop`'s status."""
        return self.stop(signal.SIGKILL, timeout=5)


def start(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | None = None,
    ready_line: str | None = None,
    ready_url: str | None = None,
    timeout: float = 30.0,
    echo: bool = False,
    log_path: Path | None = None,
) -> Process:
    """A :class:`Process` (same parameters) that is ready: it printed a line holding
    ``ready_line`` and then GET ``ready_url`` answered 200 (each when given; ``timeout``
    seconds for each).

    :raises TimeoutError: not ready in time, or it exited; it is stopped first (its last
        output lines are in the message).
    """
    proc = Process(name, argv, env=env, cwd=cwd, echo=echo, log_path=log_path)
    try:
        if ready_line is not None:
            proc.wait_for_line(ready_line, timeout)
        if ready_url is not None:
            proc.wait_http(ready_url, timeout)
    except BaseException:
        proc.stop()
        raise
    return proc
