"""A sample webhook subscriber that verifies every delivery with ``standardwebhooks``.

Used by ``make demo`` (``python -m simulator.subscriber --secret whsec_… --port N`` prints each
verified event) and by the tests: in-process through :class:`SubscriberServer`, or in a process
of its own through :class:`SubscriberProcess` (``--control``), so that a stall of the test
process (a loaded machine) never holds a subscriber's answer. It can be told to answer with
scripted statuses, to hang, to redirect, or to signal a process when a request arrives, so the
delivery side can be tested against real HTTP.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import requests
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from simulator.processes import Process


@dataclass
class Received:
    """One request the subscriber got: whether it verified, its headers and parsed body."""

    verified: bool
    webhook_id: str | None
    timestamp: str | None
    signature: str | None
    body: dict[str, Any] | None
    status_answered: int
    error: str | None = None
    raw: bytes = b""
    at: float = field(default_factory=time.time)
    path: str = "/hook"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``raw`` as base64), read back by :meth:`from_json`."""
        out = asdict(self)
        out["raw"] = base64.b64encode(self.raw).decode()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Received:
        return cls(**{**data, "raw": base64.b64decode(data["raw"])})


#: Where a ``--control`` subscriber answers the test driving it (never a webhook path).
CONTROL_PREFIX = "/_subscriber/"

SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM}


class SubscriberServer:
    """A threaded HTTP server on 127.0.0.1 that verifies Standard Webhooks.

    :param secrets: ``whsec_…`` secrets; a request verifies when any one of them matches.
    :param port: 0 for a free port (see :attr:`url`).
    :param echo: print each verified event as one line on stdout.

    Script its answers with :meth:`script` (a queue of status codes, ``"hang"`` to sleep
    ``hang_seconds`` before answering 200, ``"redirect"``, or ``"signal:KILL:<pid>"`` /
    ``"signal:TERM:<pid>"`` to send that signal to process group ``pid`` the moment the request
    has arrived, then answer as ``"hang"`` does: a worker stopped while its attempt is surely
    in flight); once empty, it answers ``default_status``.

    :param control: also answer a test's commands under ``/_subscriber/`` (see
        :class:`SubscriberProcess`); off by default.
    """

    def __init__(
        self,
        secrets: list[str] | None = None,
        *,
        port: int = 0,
        echo: bool = False,
        default_status: int = 204,
        hang_seconds: float = 30.0,
        control: bool = False,
    ) -> None:
        self.secrets = list(secrets or [])
        self.echo = echo
        self.default_status = default_status
        self.hang_seconds = hang_seconds
        self.control = control
        self.received: list[Received] = []
        #: requests that have arrived, counted before any scripted hang (``wait_for_arrivals``)
        self.arrivals = 0
        self._script: deque[int | str] = deque()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._server: BaseWSGIServer = make_server("127.0.0.1", port, self._wsgi, threaded=True)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        """The webhook URL to register: ``http://127.0.0.1:PORT/hook``."""
        return f"http://127.0.0.1:{self.port}/hook"

    def script(self, *answers: int | str) -> None:
        """Queue the next answers (status codes, ``"hang"``, ``"redirect"``, ``"signal:…"``)."""
        with self._lock:
            self._script.extend(answers)

    def add_secret(self, secret: str) -> None:
        """Verify requests with ``secret`` too (``whsec_…``)."""
        with self._lock:
            self.secrets.append(secret)

    def start(self) -> SubscriberServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SubscriberServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def verified_events(self) -> list[dict[str, Any]]:
        """Bodies of the requests that verified, in arrival order."""
        with self._lock:
            return [r.body for r in self.received if r.verified and r.body is not None]

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> list[Received]:
        """Block until ``predicate(received_list)`` is true; returns a copy of the list.

        :raises AssertionError: not within ``timeout`` seconds (a test waiting for a delivery
            fails there, never goes on quietly without it).
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(list(self.received)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(_not_in_time(predicate, timeout, self.received))
                self._cond.wait(min(left, 0.05))
            return list(self.received)

    def received_during(self, seconds: float) -> list[Received]:
        """Wait ``seconds`` and return what was received meanwhile (for tests that check that
        nothing arrives)."""
        with self._cond:
            before = len(self.received)
        time.sleep(seconds)
        with self._cond:
            return self.received[before:]

    def _verify(self, body: bytes, headers: dict[str, str]) -> tuple[bool, str | None]:
        error = "no secret configured"
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
                return True, None
            except WebhookVerificationError as exc:
                error = str(exc)
        return False, error

    def wait_for_arrivals(self, count: int, timeout: float = 10.0) -> int:
        """Block until ``count`` requests have arrived (answered or not); returns the count.

        :raises AssertionError: not within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.arrivals < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self.arrivals} request(s) arrived in {timeout} s, not {count}"
                    )
                self._cond.wait(min(left, 0.05))
            return self.arrivals

    def _control(self, request: Request) -> Response:
        """The commands of :class:`SubscriberProcess` (JSON in, JSON out)."""
        command = request.path[len(CONTROL_PREFIX) :]
        data = request.get_json(silent=True) or {}
        with self._cond:
            if command == "received" and request.method == "GET":
                since = int(request.args.get("since", "0"))
                items = [r.to_json() for r in self.received[since:]]
                answer: dict[str, Any] = {"arrivals": self.arrivals, "items": items}
                return Response(json.dumps(answer), mimetype="application/json")
            if command == "secrets" and request.method == "POST":
                self.secrets.append(str(data["secret"]))
            elif command == "script" and request.method == "POST":
                self._script.extend(data["answers"])
            elif command == "config" and request.method == "POST":
                if "default_status" in data:
                    self.default_status = data["default_status"]
                if "hang_seconds" in data:
                    self.hang_seconds = float(data["hang_seconds"])
            else:
                return Response('{"error": "unknown command"}', status=404)
        return Response("{}", mimetype="application/json")

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if self.control and request.path.startswith(CONTROL_PREFIX):
            return self._control(request)(environ, start_response)
        body = request.get_data()
        with self._cond:
            self.arrivals += 1
            self._cond.notify_all()
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified, error = self._verify(body, headers)
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        with self._lock:
            answer: int | str = self._script.popleft() if self._script else self.default_status
        if isinstance(answer, str) and answer.startswith("signal:"):
            _, name, pid = answer.split(":")
            try:
                os.killpg(int(pid), SIGNALS[name])
            except ProcessLookupError:
                pass  # gone already
            answer = "hang"
        if answer == "hang":
            time.sleep(self.hang_seconds)
            answer = 200
        if answer == "redirect":
            response = Response(
                "", status=307, headers={"Location": "http://127.0.0.1:1/elsewhere"}
            )
        else:
            status = int(answer) if verified else 401
            response = Response("ok" if status < 300 else "no", status=status)
        record = Received(
            verified=verified,
            webhook_id=headers.get("webhook-id"),
            timestamp=headers.get("webhook-timestamp"),
            signature=headers.get("webhook-signature"),
            body=parsed if isinstance(parsed, dict) else None,
            status_answered=response.status_code,
            error=error,
            raw=body,
            path=request.path,
        )
        with self._cond:
            self.received.append(record)
            self._cond.notify_all()
        if self.echo and verified and record.body is not None:
            data = record.body.get("data", {})
            urls = [a.get("url") for a in data.get("artifacts") or [] if isinstance(a, dict)]
            line = (
                f"subscriber: verified {record.body.get('type')} webhook-id={record.webhook_id} "
                f"job={data.get('job_id')} status={data.get('status')} "
                f"progress={data.get('progress')}"
            )
            if urls:
                line += f" video={urls[0]}"
            print(line, flush=True)
        elif self.echo:
            print(f"subscriber: REJECTED a request: {error}", flush=True)
        return response(environ, start_response)


def _not_in_time(predicate: Any, timeout: float, received: list[Received]) -> str:
    what = getattr(predicate, "__doc__", None) or getattr(predicate, "__name__", "the condition")
    return f"not within {timeout} s: {what} ({len(received)} request(s) received)"


class SubscriberProcess:
    """A :class:`SubscriberServer` in a process of its own (``python -m simulator.subscriber
    --control``), driven over loopback HTTP; the same methods as the in-process server.

    Tests use it where the test process may stall (a loaded machine): its answers never wait
    for the test process. :attr:`received` is fetched from the process (each record once).

    :param secrets: ``whsec_…`` secrets to start with (more with :meth:`add_secret`).
    :param default_status: the answer once the script is empty (a status or ``"hang"``).
    :param hang_seconds: how long ``"hang"`` sleeps before answering 200, seconds.
    """

    def __init__(
        self,
        secrets: list[str] | None = None,
        *,
        default_status: int | str = 204,
        hang_seconds: float = 30.0,
    ) -> None:
        argv = [sys.executable, "-m", "simulator.subscriber", "--control", "--quiet"]
        argv += ["--hang-seconds", str(hang_seconds)]
        for secret in secrets or []:
            argv += ["--secret", secret]
        self._process = Process("subscriber", argv, env=dict(os.environ))
        try:
            line = self._process.wait_for_line("subscriber listening on", 30)
        except TimeoutError:
            self._process.stop()
            raise
        self.url = line.rsplit(" ", 1)[1]
        self._base = self.url.rsplit("/", 1)[0] + CONTROL_PREFIX.rstrip("/")
        self._http = requests.Session()
        self._http.trust_env = False
        self._received: list[Received] = []
        self.arrivals = 0
        if default_status != 204:
            self.default_status = default_status

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/", 1)[0])

    def _post(self, command: str, data: dict[str, Any]) -> None:
        self._http.post(f"{self._base}/{command}", json=data, timeout=10).raise_for_status()

    def add_secret(self, secret: str) -> None:
        """Verify requests with ``secret`` too (``whsec_…``)."""
        self._post("secrets", {"secret": secret})

    def script(self, *answers: int | str) -> None:
        """Queue the next answers (see :class:`SubscriberServer`)."""
        self._post("script", {"answers": list(answers)})

    @property
    def default_status(self) -> int | str:
        raise AttributeError("default_status is write-only on a subscriber process")

    @default_status.setter
    def default_status(self, value: int | str) -> None:
        self._post("config", {"default_status": value})

    @property
    def received(self) -> list[Received]:
        """Every request answered so far, in order (a copy)."""
        r = self._http.get(
            f"{self._base}/received", params={"since": len(self._received)}, timeout=30
        )
        r.raise_for_status()
        data = r.json()
        self.arrivals = int(data["arrivals"])
        self._received.extend(Received.from_json(item) for item in data["items"])
        return list(self._received)

    def verified_events(self) -> list[dict[str, Any]]:
        """Bodies of the requests that verified, in arrival order."""
        return [r.body for r in self.received if r.verified and r.body is not None]

    def wait_for(self, predicate: Any, timeout: float = 10.0, poll: float = 0.05) -> list[Received]:
        """Block until ``predicate(received_list)`` is true; returns the list.

        :raises AssertionError: not within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            got = self.received
            if predicate(got):
                return got
            if time.monotonic() >= deadline:
                raise AssertionError(_not_in_time(predicate, timeout, got))
            time.sleep(poll)

    def wait_for_arrivals(self, count: int, timeout: float = 10.0) -> int:
        """Block until ``count`` requests have arrived (answered or not); returns the count.

        :raises AssertionError: not within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.received  # noqa: B018 (refreshes arrivals)
            if self.arrivals >= count:
                return self.arrivals
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{self.arrivals} request(s) arrived in {timeout} s, not {count}"
                )
            time.sleep(0.05)

    def start(self) -> SubscriberProcess:
        return self

    def stop(self) -> None:
        """Stop the process (by its pid) and close the control session."""
        self._http.close()
        self._process.stop()

    def __enter__(self) -> SubscriberProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m simulator.subscriber --secret whsec_… [--port N]``: run until SIGTERM."""
    parser = argparse.ArgumentParser(description="A webhook subscriber that verifies signatures.")
    parser.add_argument("--secret", action="append", default=[], help="whsec_… (repeatable)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--control",
        action="store_true",
        help=f"take a test's commands under {CONTROL_PREFIX} (SubscriberProcess)",
    )
    parser.add_argument("--quiet", action="store_true", help="do not print each event")
    parser.add_argument(
        "--hang-seconds", type=float, default=30.0, help='how long "hang" waits, seconds'
    )
    args = parser.parse_args(argv)
    if not args.secret and not args.control:
        parser.error("--secret is required (or --control, to add secrets later)")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = SubscriberServer(
        args.secret,
        port=args.port,
        echo=not args.quiet,
        hang_seconds=args.hang_seconds,
        control=args.control,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    print(f"subscriber listening on {server.url}", flush=True)
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
