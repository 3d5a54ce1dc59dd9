"""The web's gunicorn worker class: gunicorn's gevent worker that, when it is told to stop,
closes the kept-alive connections that are idle at that moment instead of waiting for them.

Why: ``keepalive`` is 95 s (longer than the PaaS router's idle timeout, see gunicorn.conf.py),
and gunicorn's gevent worker counts an idle kept-alive connection as work in progress, so a
SIGTERM waited the whole ``graceful_timeout`` (25 s) for connections that carried no request.
Requests in flight are still finished as before; a connection is closed only while it waits
for a next request with no byte of one received (counted as gunicorn reads them, and a
zero-wait select on the socket for bytes not read yet), which is the
close that HTTP/1.1 allows a server at any time (RFC 9112, section 9.6).

Named in gunicorn.conf.py as ``worker_class = "receiver.web.gunicorn_worker.RelayGeventWorker"``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gevent
import gevent.select
from gunicorn.workers.ggevent import GeventWorker  # type: ignore[import-untyped]

__all__ = ["RelayGeventWorker"]

#: How often the stop watcher looks at ``alive``, seconds.
STOP_POLL_SECONDS = 0.1


class RelayGeventWorker(GeventWorker):  # type: ignore[misc]
    """gunicorn's ``gevent`` worker; on stop, idle kept-alive connections are closed at once."""

    def init_process(self) -> None:
        # greenlet -> its connection, for every connection, and for those waiting for a next
        # request: the bytes received when that wait began
        self._sockets: dict[Any, _CountingSocket] = {}
        self._idle: dict[Any, int] = {}
        super().init_process()

    def run(self) -> None:
        gevent.spawn(self._close_idle_on_stop)
        super().run()

    def handle(self, listener: Any, client: socket.socket, addr: Any) -> None:
        current = gevent.getcurrent()
        counting = _CountingSocket(client)
        self._sockets[current] = counting
        try:
            super().handle(listener, counting, addr)
        finally:
            self._sockets.pop(current, None)
            self._idle.pop(current, None)

    def timeout_ctx(self) -> Any:
        """The wait for a connection's next request (gunicorn's keep-alive timeout), during
        which the connection counts as idle."""
        return self._idle_wait(super().timeout_ctx())

    @contextmanager
    def _idle_wait(self, timeout: Any) -> Iterator[None]:
        current = gevent.getcurrent()
        client = self._sockets.get(current)
        if client is not None:
            self._idle[current] = client.received
        try:
            with timeout:
                yield
        finally:
            self._idle.pop(current, None)

    def _close_idle_on_stop(self) -> None:
        while self.alive:
            gevent.sleep(STOP_POLL_SECONDS)
        # Stopping: from now on, end each connection the moment it is idle with nothing sent.
        # Shutting its read side makes gunicorn's wait for a next request see the end of the
        # stream, and gunicorn closes the connection as if the client had.
        ended: set[Any] = set()
        while self._sockets:
            for greenlet, received in list(self._idle.items()):
                client = self._sockets.get(greenlet)
                if client is None or greenlet in ended:
                    continue
                if client.received == received and not _has_pending_bytes(client.sock):
                    ended.add(greenlet)
                    try:
                        client.sock.shutdown(socket.SHUT_RD)
                    except OSError:
                        pass  # already gone
            gevent.sleep(STOP_POLL_SECONDS)


class _CountingSocket:
    """A client socket that counts the bytes received through it (gunicorn's request parser
    reads with ``recv``); everything else is the socket's own."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received = 0

    def recv(self, size: int, *flags: int) -> bytes:
        data = self.sock.recv(size, *flags)
        self.received += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def _has_pending_bytes(client: socket.socket) -> bool:
    """Whether the peer has sent bytes not read yet, or closed (a zero-wait select: readable)."""
    readable, _, _ = gevent.select.select([client], [], [], 0)
    return bool(readable)
