"""Waking idle workers when new work commits: the dialect's half of the inbox and the outbox.

Two kinds of work wake a worker: callbacks stored by the web (:data:`CALLBACKS_CHANNEL`, for
the applier) and deliveries written by the applier (:data:`DELIVERIES_CHANNEL`, for the
delivery loop). One interface, :class:`Waker`, chosen by dialect in :func:`waker_for`:

- PostgreSQL: a connection of its own ``LISTEN``\\ s on its channel; the transaction that
  adds the work sends ``NOTIFY`` on it when it commits.
- SQLite: no notifications exist, so the waker reads ``PRAGMA data_version`` every few
  milliseconds; it changes when another connection commits to the file.

Either returns at once when its :class:`Kick` is set (a delivery finished, or the worker is
stopping), and at the latest after the timeout it was given: a lost notification costs
latency, never a delivery.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from typing import Any, Protocol

from sqlalchemy import Engine

from receiver.store.engine import application_name, is_sqlite

log = logging.getLogger(__name__)

#: The PostgreSQL ``NOTIFY`` channel that new deliveries are announced on.
DELIVERIES_CHANNEL = "relay_deliveries"
#: The PostgreSQL ``NOTIFY`` channel that newly stored callbacks are announced on.
CALLBACKS_CHANNEL = "relay_callbacks"


class Waker(Protocol):
    """Waits for new deliveries (or a kick); :meth:`close` frees what it holds."""

    def wait(self, timeout: float) -> None:
        """Return when deliveries may have been added, when kicked, or after ``timeout``
        seconds, whichever comes first. Never raises for a lost database connection."""
        ...

    def close(self) -> None:
        """Close the waker's connection (idempotent)."""
        ...


class Kick(threading.Event):
    """A :class:`threading.Event` that ``select()`` can wait on too (:meth:`fileno`).

    Once :meth:`fileno` was called, :meth:`set` also writes a byte to a socket pair, so that a
    wait on a database socket returns at once when a delivery finishes; :meth:`clear` drains
    it and :meth:`close` closes the pair.
    """

    def __init__(self) -> None:
        super().__init__()
        self._pair: tuple[socket.socket, socket.socket] | None = None

    def set(self) -> None:
        super().set()
        pair = self._pair
        if pair is not None:
            try:
                pair[1].send(b"\0")
            except OSError:  # full (a wake-up is pending anyway) or closed
                pass

    def clear(self) -> None:
        super().clear()
        pair = self._pair
        if pair is not None:
            try:
                while pair[0].recv(4096):
                    pass
            except OSError:  # drained (BlockingIOError) or closed
                pass

    def fileno(self) -> int:
        """A socket that is readable while a wake-up is pending (made on the first call)."""
        if self._pair is None:
            reader, writer = socket.socketpair()
            reader.setblocking(False)
            writer.setblocking(False)
            self._pair = (reader, writer)
            if self.is_set():
                writer.send(b"\0")
        return self._pair[0].fileno()

    def close(self) -> None:
        pair, self._pair = self._pair, None
        if pair is not None:
            pair[0].close()
            pair[1].close()


def waker_for(engine: Engine, kick: Kick, channel: str = DELIVERIES_CHANNEL) -> Waker:
    """The waker for ``engine``'s dialect; it opens one connection of its own (outside the
    engine's pool on PostgreSQL, taken from it on SQLite).

    :param channel: what to wake for on PostgreSQL (:data:`DELIVERIES_CHANNEL` or
        :data:`CALLBACKS_CHANNEL`); SQLite wakes on any commit to the file.
    """
    if is_sqlite(engine):
        return SqliteWaker(engine, kick)
    return PostgresWaker(engine, kick, channel)


class SqliteWaker:
    """Returns from :meth:`wait` soon after another connection commits to the SQLite file.

    :param interval: seconds between two reads of ``PRAGMA data_version``.
    """

    def __init__(self, engine: Engine, kick: threading.Event, interval: float = 0.005) -> None:
        self._raw = engine.raw_connection()
        self._kick = kick
        self._interval = interval
        self._version = self._read()

    def _read(self) -> int:
        cursor = self._raw.cursor()
        try:
            cursor.execute("PRAGMA data_version")
            row = cursor.fetchone()
            return int(row[0]) if row else 0
        finally:
            cursor.close()

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._kick.wait(self._interval):
                return
            version = self._read()
            if version != self._version:
                self._version = version
                return
            if time.monotonic() >= deadline:
                return

    def close(self) -> None:
        self._raw.close()


class PostgresWaker:
    """Returns from :meth:`wait` when a ``NOTIFY`` on ``channel`` arrives, or at once when
    ``kick`` is set (a delivery finished, or the worker is stopping).

    A lost LISTEN connection is replaced on the next wait; until then the worker falls back to
    its idle poll, so a database restart costs latency, never deliveries.
    """

    def __init__(self, engine: Engine, kick: Kick, channel: str = DELIVERIES_CHANNEL) -> None:
        if channel not in (DELIVERIES_CHANNEL, CALLBACKS_CHANNEL):
            raise ValueError(f"unknown channel {channel!r}")
        self._channel = channel
        url = engine.url.set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._application_name = application_name(self._dsn)
        self._kick = kick
        self._conn: Any = None
        self._connect()

    def _connect(self) -> None:
        import psycopg

        try:
            self._conn = psycopg.connect(
                self._dsn,
                autocommit=True,
                connect_timeout=5,
                application_name=self._application_name,
            )
            self._conn.execute(f"LISTEN {self._channel}")
        except psycopg.Error:
            log.warning("LISTEN connection failed; polling until it is back")
            self._conn = None

    def wait(self, timeout: float) -> None:
        import psycopg

        if self._conn is None or self._conn.closed:
            self._connect()
        deadline = time.monotonic() + timeout
        while not self._kick.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self._conn is None:
                self._kick.wait(min(left, 0.05))
                continue
            try:
                fd = self._conn.fileno()
                ready, _, _ = select.select([fd, self._kick.fileno()], [], [], min(left, 0.05))
                if fd in ready and any(
                    True for _ in self._conn.notifies(timeout=0, stop_after=100)
                ):
                    return
            except (psycopg.Error, OSError, ValueError):
                log.warning("LISTEN connection lost; reconnecting")
                self.close()
                return

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


__all__ = [
    "CALLBACKS_CHANNEL",
    "DELIVERIES_CHANNEL",
    "Kick",
    "PostgresWaker",
    "SqliteWaker",
    "Waker",
    "waker_for",
]
