"""A deadline on reading a request's body, so that a slow client cannot hold the server.

The Procfile's ``web:`` line runs gunicorn's ``gevent`` worker (``gunicorn.conf.py``): each
connection is a greenlet, not a thread, so connections that trickle their bytes cost little
memory and no request slot. What they must not do is stay forever: :class:`BodyDeadline` reads
the whole body (at most ``MAX_CONTENT_LENGTH`` + 1 bytes) before the app sees the request, and
gives up after ``BODY_READ_TIMEOUT_SECONDS``: the client gets ``408`` and the connection is
closed. The app then reads the body from memory.

The deadline needs gevent's cooperative sockets (a ``gevent.Timeout`` interrupts a read that
waits); under another server (``flask run``, the test client) the middleware passes requests
through unchanged.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from receiver.logs import LogSampler

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_CHUNK = 64 * 1024


class _BodyTooSlow(Exception):
    """The body did not arrive whole within the deadline."""


def _gevent_sockets() -> bool:
    """True when gevent has patched ``socket`` in this process (gunicorn's gevent worker)."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return False
    return bool(monkey.is_module_patched("socket"))


class BodyDeadline:
    """WSGI middleware: read the request body whole within ``seconds`` or answer 408 and close.

    :param app: the WSGI app to call with the body in memory.
    :param seconds: the deadline for the whole body, from the moment the app is called (after
        the request line and headers were read).
    :param max_bytes: ``MAX_CONTENT_LENGTH``; a declared ``Content-Length`` above it is left to
        the app (which refuses it with 413 without reading), a chunked body is read up to one
        byte more (so that the app can tell it was too large).
    """

    def __init__(self, app: WSGIApp, *, seconds: float, max_bytes: int) -> None:
        self.app = app
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._active = _gevent_sockets()
        self._log_sampler = LogSampler()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not self._active:
            return self.app(environ, start_response)
        declared = environ.get("CONTENT_LENGTH") or ""
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        try:
            length = int(declared) if declared else None
        except ValueError:
            length = None
        if length is not None and (length <= 0 or length > self.max_bytes):
            return self.app(environ, start_response)
        if length is None and not chunked:
            return self.app(environ, start_response)
        want = length if length is not None else self.max_bytes + 1
        import gevent

        try:
            with gevent.Timeout(self.seconds, _BodyTooSlow):
                data = _read(environ["wsgi.input"], want)
        except _BodyTooSlow:
            show, held = self._log_sampler.allow()
            if show:  # sampled: a flood of slow clients must not flood the log
                log.warning(
                    "request body too slow: connection dropped",
                    extra={
                        "path": environ.get("PATH_INFO", "")[:200],
                        "peer": environ.get("REMOTE_ADDR"),
                        "deadline_seconds": self.seconds,
                        "not_logged_before": held,
                    },
                )
            body = json.dumps(
                {
                    "error": {
                        "code": "request_timeout",
                        "message": f"the body did not arrive within {self.seconds:g} seconds",
                    }
                }
            ).encode()
            start_response(
                "408 Request Timeout",
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    ("Connection", "close"),
                ],
            )
            return [body]
        environ["wsgi.input"] = io.BytesIO(data)
        return self.app(environ, start_response)


def _read(stream: Any, want: int) -> bytes:
    """Up to ``want`` bytes of ``stream``, fewer only at its end."""
    parts: list[bytes] = []
    got = 0
    while got < want:
        chunk = stream.read(min(_CHUNK, want - got))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)
