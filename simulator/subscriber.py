"""A sample webhook subscriber that verifies every delivery with ``standardwebhooks``.

Used by ``make demo`` (``python -m simulator.subscriber --secret whsec_… --port N`` prints each
verified event) and by the tests, in-process, through :class:`SubscriberServer`. It can be
told to answer with scripted statuses, to hang, or to redirect, so the delivery side can be
tested against real HTTP.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response


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


class SubscriberServer:
    """A threaded HTTP server on 127.0.0.1 that verifies Standard Webhooks.

    :param secrets: ``whsec_…`` secrets; a request verifies when any one of them matches.
    :param port: 0 for a free port (see :attr:`url`).
    :param echo: print each verified event as one line on stdout.

    Script its answers with :meth:`script` (a queue of status codes, ``"hang"`` to sleep
    ``hang_seconds`` before answering 200, or ``"redirect"``); once empty, it answers
    ``default_status``.
    """

    def __init__(
        self,
        secrets: list[str] | None = None,
        *,
        port: int = 0,
        echo: bool = False,
        default_status: int = 204,
        hang_seconds: float = 30.0,
    ) -> None:
        self.secrets = list(secrets or [])
        self.echo = echo
        self.default_status = default_status
        self.hang_seconds = hang_seconds
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
        """Queue the next answers (status codes, ``"hang"`` or ``"redirect"``)."""
        with self._lock:
            self._script.extend(answers)

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
        """Block until ``predicate(received_list)`` is true or ``timeout`` seconds pass;
        returns a copy of the list either way."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(list(self.received)):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.05))
            return list(self.received)

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
        """Block until ``count`` requests have arrived (answered or not); returns the count."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.arrivals < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.05))
            return self.arrivals

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
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


def main(argv: list[str] | None = None) -> int:
    """``python -m simulator.subscriber --secret whsec_… [--port N]``: run until SIGTERM."""
    parser = argparse.ArgumentParser(description="A webhook subscriber that verifies signatures.")
    parser.add_argument("--secret", action="append", required=True, help="whsec_… (repeatable)")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = SubscriberServer(args.secret, port=args.port, echo=True)
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
