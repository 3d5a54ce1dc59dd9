"""Failed bearer checks and dashboard sign-ins, limited per client address.

A small in-process limiter: each web process remembers, per client address (as ProxyFix gives
it, ``TRUSTED_PROXY_HOPS``), the times of its recent failures. After :data:`MAX_FAILURES`
failures within :data:`WINDOW_SECONDS`, that address's further attempts are refused with 429 and
``Retry-After`` (the seconds until its oldest failure leaves the window) before the token is even
compared. Successful checks cost nothing and clear nothing; a request that presents no token at
all guesses nothing and is not counted (it gets its 401).

Across processes nothing is shared: with ``WEB_CONCURRENCY`` N, an address can make at most N
times the budget (each process counts its own); a restart forgets. That keeps guessing a
32-character ``ADMIN_TOKEN`` hopeless while needing no shared store.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from flask import Response, current_app, request

from receiver.web.errors import error_response

#: Failures allowed per client address within :data:`WINDOW_SECONDS`, per web process.
MAX_FAILURES = 10
#: The sliding window, seconds.
WINDOW_SECONDS = 60.0
#: Client addresses remembered at once (the least recently failing are forgotten first).
MAX_CLIENTS = 10_000


class FailureLimiter:
    """Per-client sliding-window counter of failures; thread-safe.

    :param max_failures: failures allowed within ``window`` seconds before refusing.
    :param window: seconds a failure counts.
    :param max_clients: addresses remembered at once.
    :param clock: monotonic seconds.
    """

    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILURES,
        window: float = WINDOW_SECONDS,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str | None) -> int | None:
        """Seconds ``client`` must wait before trying again (at least 1), or None when it may
        try now."""
        key = client or "-"
        now = self._clock()
        with self._lock:
            times = self._failures.get(key)
            if times is None:
                return None
            while times and times[0] <= now - self.window:
                times.popleft()
            if not times:
                del self._failures[key]
                return None
            if len(times) < self.max_failures:
                return None
            return max(1, math.ceil(times[0] + self.window - now))

    def failed(self, client: str | None) -> None:
        """Count one failure of ``client``."""
        key = client or "-"
        now = self._clock()
        with self._lock:
            times = self._failures.pop(key, None) or deque(maxlen=self.max_failures)
            times.append(now)
            self._failures[key] = times  # most recent last
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)


def limiter() -> FailureLimiter:
    """The current app's limiter (made by :func:`receiver.create_app`)."""
    found: FailureLimiter = current_app.extensions["auth_limiter"]
    return found


def client_address() -> str | None:
    """The client's address as the limiter keys it (after ProxyFix), at most 64 characters."""
    address = request.remote_addr
    return address[:64] if address else None


def refuse_too_many(client: str | None) -> tuple[Response, int] | None:
    """The 429 JSON answer (with ``Retry-After``) when ``client`` has failed too often, else
    None."""
    wait = limiter().retry_after(client)
    if wait is None:
        return None
    response, status = error_response(
        429,
        "too_many_attempts",
        f"too many failed attempts from this address; retry in {wait} s",
    )
    response.status_code = status
    response.headers["Retry-After"] = str(wait)
    return response, status
