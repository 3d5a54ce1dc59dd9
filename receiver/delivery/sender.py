"""One delivery attempt: sign the stored body as a Standard Webhook and POST it.

The body is the event's payload exactly as stored; only the timestamp and signatures change
between attempts. Redirects are not followed (a 3xx is a failure), at most
:data:`MAX_RESPONSE_BYTES` of the answer are read, and the whole attempt is bounded by the
timeout. A 2xx answer is a success even when it came after the timeout (each read was within
it, the whole was not): the subscriber has the webhook, and a retry would be a certain
duplicate; it is logged as a slow subscriber instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import requests
from requests.adapters import HTTPAdapter
from standardwebhooks.webhooks import Webhook

from client.errors import parse_retry_after
from receiver.delivery.urls import GuardedAdapter, refused_by_guard
from receiver.domain.delivery import AttemptOutcome

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 4096
USER_AGENT = "runway-relay/0.1 (+standard-webhooks)"


@dataclass(frozen=True)
class SendResult:
    """What one attempt gave.

    ``duration_ms`` in milliseconds; ``response_body`` at most :data:`MAX_RESPONSE_BYTES` bytes,
    decoded leniently; ``retry_after`` is the answer's ``Retry-After`` in seconds from when it
    arrived (delta-seconds or an HTTP date, read by :func:`client.errors.parse_retry_after`),
    None when absent or unreadable.
    """

    outcome: AttemptOutcome
    status_code: int | None
    duration_ms: float
    error: str | None = None
    response_body: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "success"


def signature_header(event_id: str, timestamp: datetime, body: str, secrets: Sequence[str]) -> str:
    """``webhook-signature``: ``v1,<base64>`` per secret, space-separated (rotation).

    :param timestamp: aware UTC datetime of this attempt.
    """
    if timestamp.tzinfo is None:
        raise ValueError("timestamp must be aware")
    ts = timestamp.astimezone(UTC)
    return " ".join(Webhook(secret).sign(event_id, ts, body) for secret in secrets)


class Sender:
    """Sends webhooks; thread-safe (one ``requests.Session`` per thread).

    :param timeout: seconds for the whole attempt (connect, send, answer).
    :param allow_private: ``ALLOW_PRIVATE_URLS``: skip the connect-time address guard.
    :param pool_size: connections kept per host and thread.
    """

    def __init__(self, *, timeout: float, allow_private: bool, pool_size: int = 4) -> None:
        self.timeout = timeout
        self.allow_private = allow_private
        self.pool_size = pool_size
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # no proxies or netrc from the environment
            adapter_cls = HTTPAdapter if self.allow_private else GuardedAdapter
            adapter = adapter_cls(pool_connections=8, pool_maxsize=self.pool_size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
        return session

    def send(
        self, url: str, event_id: str, body: str, secrets: Sequence[str], now: datetime
    ) -> SendResult:
        """POST ``body`` to ``url`` signed with ``secrets``; never raises for network trouble.

        A 2xx is ``success`` however long it took (logged as slow past the timeout); any other
        answer that took longer than the timeout is ``timeout``.
        """
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": event_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature_header(event_id, now, body, secrets),
        }
        started = time.monotonic()
        deadline = started + self.timeout

        def elapsed_ms() -> float:
            return (time.monotonic() - started) * 1000

        try:
            response = self._session().post(
                url,
                data=body.encode("utf-8"),
                headers=headers,
                timeout=(min(self.timeout, 10.0), self.timeout),
                allow_redirects=False,
                stream=True,
            )
        except requests.Timeout as exc:
            return SendResult("timeout", None, elapsed_ms(), f"timed out: {_short(exc)}")
        except requests.RequestException as exc:
            if refused_by_guard(exc):
                return SendResult("blocked", None, elapsed_ms(), _short(exc))
            return SendResult("connection_error", None, elapsed_ms(), _short(exc))
        try:
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_content(1024):
                chunks.append(chunk)
                size += len(chunk)
                if size >= MAX_RESPONSE_BYTES or time.monotonic() > deadline:
                    break
            text = b"".join(chunks)[:MAX_RESPONSE_BYTES].decode("utf-8", "replace")
        except requests.RequestException as exc:
            text = f"(answer unreadable: {_short(exc)})"
        finally:
            response.close()
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        duration = elapsed_ms()
        if 200 <= status < 300:
            # The subscriber answered 2xx: it has the webhook. However long that took, calling
            # it a timeout would only send it again (a certain duplicate).
            if duration > self.timeout * 1000:
                log.warning(
                    "slow subscriber: answered 2xx after the attempt timeout",
                    extra={
                        "event_id": event_id,
                        "status_code": status,
                        "duration_ms": round(duration, 1),
                        "timeout_seconds": self.timeout,
                    },
                )
            return SendResult("success", status, duration, None, text, retry_after)
        if duration > self.timeout * 1000:
            return SendResult("timeout", status, duration, "answer too slow", text, retry_after)
        if 300 <= status < 400:
            location = response.headers.get("location", "")
            error = f"redirect to {location[:200]} not followed"
            return SendResult("redirect", status, duration, error, text, retry_after)
        if status == 410:
            return SendResult("gone", status, duration, "410 Gone", text, retry_after)
        return SendResult("http_error", status, duration, f"HTTP {status}", text, retry_after)


def _short(exc: BaseException) -> str:
    return str(exc)[:500]
