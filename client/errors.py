"""Errors raised by the useapi.net Runway client, named after what happened.

The whole tree::

    UseapiError                      base: message, http_status, code, body, retry_after
    ├── BadRequest                   400: the vendor refused the request's content
    ├── Unauthorized                 401: the API token is missing, wrong or revoked
    ├── NotFound                     404: e.g. an unknown assetId or taskId
    ├── InsufficientCredits          412: the account is out of credits; stop, do not retry
    ├── Moderated                    422: Runway's moderation refused the prompt or image
    ├── AccountBusy                  429: too many tasks; wait 10..30 s (or Retry-After), retry
    ├── VendorServerError            5xx: the vendor answered with a server error
    ├── UnexpectedResponse           any other status, or a 2xx whose body is not the JSON expected
    └── TransportError               no usable HTTP answer at all
        ├── ConnectFailed            the request never left (connect refused / connect timeout):
        │                            safe to send again
        └── OutcomeUnknown           the request (probably) left but no answer came back (read
                                     timeout, connection reset after sending): the vendor may or
                                     may not have acted on it; a create is NEVER re-sent

Callers catch outcomes, not status codes: ``except InsufficientCredits`` rather than
``if status == 412``. Every class except the transport ones is built by the single mapping
function :func:`from_response`; the transport ones come from :func:`map_transport_errors`, which
wraps ``requests`` exceptions and chains them with ``raise ... from``.

Request validation is not part of this tree: the request models in :mod:`client.models` raise
pydantic's ``ValidationError`` (a ``ValueError``) before any network call is made.

Vendor facts (status codes and body shapes) come from the useapi.net docs page
"POST /v1/runwayml/gen3turbo/create", section Responses: 400 ``{"error", "code"}``, 401, 404 for an
unknown asset, 412 insufficient credits, 422 moderated, and 429 in two forms ("Account … is busy
executing N tasks" with ``runningTasks``, and Runway's "too many tasks running or pending").
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack

import requests
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
)
from urllib3.exceptions import ProxyError as Urllib3ProxyError
from urllib3.exceptions import SSLError as Urllib3SSLError

__all__ = [
    "AccountBusy",
    "BadRequest",
    "ConnectFailed",
    "InsufficientCredits",
    "Moderated",
    "NotFound",
    "OutcomeUnknown",
    "TransportError",
    "Unauthorized",
    "UnexpectedResponse",
    "UseapiError",
    "VendorServerError",
    "from_response",
    "map_transport_errors",
    "parse_retry_after",
]

#: Longest vendor message kept on an error, in characters (longer ones are cut).
MAX_MESSAGE_LENGTH = 500


class _ErrorFields(TypedDict, total=False):
    """The keyword arguments of :class:`UseapiError` (all but the message)."""

    http_status: int | None
    code: int | str | None
    body: dict[str, Any] | None
    retry_after: float | None


class UseapiError(Exception):
    """Base of every error the client raises about a call to useapi.net.

    Attributes:
        message: a readable description (the vendor's ``error`` text when there is one), str.
        http_status: the HTTP status of the answer, or ``None`` when there was no answer.
        code: the vendor's ``code`` field from the JSON body (int or str), or ``None``.
        body: the parsed JSON body when it was a JSON object, else ``None``. Kept for
            diagnostics; never log it whole.
        retry_after: seconds to wait before retrying, from the ``Retry-After`` header (given as
            seconds or as an HTTP date), or ``None`` when absent or unparsable.
    """

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: int | str | None = None,
        body: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.code = code
        self.body = body
        self.retry_after = retry_after

    def __str__(self) -> str:
        details: list[str] = []
        if self.http_status is not None:
            details.append(f"HTTP {self.http_status}")
        if self.code is not None and self.code != self.http_status:
            details.append(f"code {self.code}")
        if self.retry_after is not None:
            details.append(f"retry after {self.retry_after:g} s")
        prefix = f"{type(self).__name__} ({', '.join(details)})" if details else type(self).__name__
        return f"{prefix}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, http_status={self.http_status!r}, "
            f"code={self.code!r})"
        )


class BadRequest(UseapiError):
    """HTTP 400: the vendor refused the request's content (body ``{"error", "code"}``).

    Never retried. Source: useapi.net docs, POST /v1/runwayml/gen3turbo/create, Responses.
    """


class Unauthorized(UseapiError):
    """HTTP 401: the bearer token is missing, wrong or revoked. Never retried."""


class NotFound(UseapiError):
    """HTTP 404: something named in the request does not exist, e.g. an unknown ``assetId``
    ("Unable to retrieve assetId …") or ``taskId``. Never retried."""


class InsufficientCredits(UseapiError):
    """HTTP 412: the Runway account has not enough credits to run the task.

    Stop submitting; retrying cannot help until credits are added. Source: useapi.net docs,
    POST /v1/runwayml/gen3turbo/create, "412 Insufficient credits".
    """


class Moderated(UseapiError):
    """HTTP 422: Runway's moderation refused the prompt or image. Never retried as is."""


class AccountBusy(UseapiError):
    """HTTP 429: the account or Runway has too many tasks running or pending.

    The vendor asks callers to wait 10..30 s (or ``Retry-After`` when present) and retry.
    Two bodies exist (useapi.net docs, POST /v1/runwayml/gen3turbo/create, "429 Too Many
    Requests"): "Account <email> is busy executing <maxJobs> tasks" with ``runningTasks``
    (``{email: [{email, taskId, id, replyUrl, replyRef}, ...]}``), and Runway's own "You have too
    many tasks running or pending" without it.

    Attributes:
        running_tasks: the entries of ``runningTasks`` flattened into one list of dicts (each
            usually with ``email``, ``taskId``, ``id``, ``replyUrl``, ``replyRef``), or ``None``
            when the body has no ``runningTasks`` (Runway's "too many tasks" case).
    """

    def __init__(
        self,
        message: str,
        *,
        running_tasks: list[dict[str, Any]] | None = None,
        **fields: Unpack[_ErrorFields],
    ) -> None:
        super().__init__(message, **fields)
        self.running_tasks = running_tasks


class VendorServerError(UseapiError):
    """HTTP 5xx: the vendor answered with a server error.

    It is an answer, not a lost one: the client raises it at once and never re-sends a create
    because of it.
    """


class UnexpectedResponse(UseapiError):
    """Any status not listed above, or a 2xx answer whose body is not the JSON expected
    (not JSON, not an object, or missing a required field such as ``assetId``)."""


class TransportError(UseapiError):
    """No usable HTTP answer: the exchange failed below HTTP. ``http_status`` is ``None``.

    The original ``requests`` exception is chained as ``__cause__``.
    """


class ConnectFailed(TransportError):
    """The request never left: connection refused, connect timeout, DNS or TLS handshake
    failure, or an unusable URL. Sending it again cannot create a duplicate."""


class OutcomeUnknown(TransportError):
    """The request was (or may have been) sent but no answer came back: read timeout, connection
    reset or closed after sending, a broken chunked body.

    The vendor may or may not have acted on it. useapi.net has no idempotency key, so a create
    that ends here is never re-sent; look for its ``replyRef`` in ``GET /scheduler/`` instead.
    """


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Parse a ``Retry-After`` header value into seconds.

    Args:
        value: the header value: delay-seconds (``"30"``, also accepted: ``"1.5"``) or an HTTP
            date (``"Wed, 21 Oct 2015 07:28:00 GMT"``); ``None`` when the header is absent.
        now: the current time for the HTTP-date form (aware UTC); defaults to the clock.

    Returns:
        The delay in seconds, at least 0.0 (a date in the past gives 0.0), or ``None`` when the
        value is absent, negative, not finite, or not parsable. Never raises.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or seconds < 0:
            return None
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


def _json_object(response: requests.Response) -> dict[str, Any] | None:
    """The response body parsed as a JSON object, or ``None`` if it is anything else."""
    try:
        parsed = json.loads(response.content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _vendor_message(body: dict[str, Any] | None, response: requests.Response) -> str:
    """The best human message: the body's ``error`` (a string, or an object's
    ``errorMessage``/``message``/``reason``), else its ``message``, else the HTTP reason."""
    candidates: list[Any] = []
    if body is not None:
        error = body.get("error")
        if isinstance(error, dict):
            candidates.extend(error.get(key) for key in ("errorMessage", "message", "reason"))
        else:
            candidates.append(error)
        candidates.append(body.get("message"))
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip():
            return _truncate(candidate.strip())
    reason = response.reason if isinstance(response.reason, str) and response.reason else ""
    return f"HTTP {response.status_code} {reason}".strip() + " without a vendor error message"


def _vendor_code(body: dict[str, Any] | None) -> int | str | None:
    """The body's ``code`` when it is an int (not a bool) or a string, else ``None``."""
    if body is None:
        return None
    code = body.get("code")
    if isinstance(code, bool):
        return None
    if isinstance(code, int | str):
        return code
    return None


def _running_tasks(body: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """Flatten a 429 body's ``runningTasks`` (``{email: [entry, ...]}``, or a plain list) into a
    list of entry dicts; ``None`` when the body has no ``runningTasks``."""
    if body is None or "runningTasks" not in body:
        return None
    raw = body["runningTasks"]
    groups: list[Any]
    if isinstance(raw, dict):
        groups = list(raw.values())
    elif isinstance(raw, list):
        groups = [raw]
    else:
        return []
    entries: list[dict[str, Any]] = []
    for group in groups:
        if isinstance(group, list):
            entries.extend(item for item in group if isinstance(item, dict))
        elif isinstance(group, dict):
            entries.append(group)
    return entries


def _truncate(text: str) -> str:
    if len(text) <= MAX_MESSAGE_LENGTH:
        return text
    return text[: MAX_MESSAGE_LENGTH - 1] + "…"


_STATUS_CLASSES: dict[int, type[UseapiError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    412: InsufficientCredits,
    422: Moderated,
    429: AccountBusy,
}


def from_response(response: requests.Response, *, now: datetime | None = None) -> UseapiError:
    """Map a vendor answer to the one error class that names its outcome.

    This is the only status-to-class mapping in the client: 400 BadRequest, 401 Unauthorized,
    404 NotFound, 412 InsufficientCredits, 422 Moderated, 429 AccountBusy (with
    ``running_tasks`` when the body has ``runningTasks``), 500..599 VendorServerError, anything
    else (including a 2xx handed over because its body was unusable) UnexpectedResponse.

    Args:
        response: the ``requests`` response; its body is read (already in memory unless the
            request was streamed).
        now: the current time, only used for a ``Retry-After`` HTTP date; defaults to the clock.

    Returns:
        The error, not raised: ``raise from_response(response)``. ``message`` is the vendor's
        ``error`` text (cut to 500 characters), ``code`` its ``code`` field, ``body`` the parsed
        JSON object (or ``None``), ``retry_after`` the ``Retry-After`` header in seconds.

    Source: useapi.net docs, POST /v1/runwayml/gen3turbo/create, section Responses.
    """
    status = response.status_code
    body = _json_object(response)
    message = _vendor_message(body, response)
    code = _vendor_code(body)
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now=now)
    if status == 429:
        return AccountBusy(
            message,
            http_status=status,
            code=code,
            body=body,
            retry_after=retry_after,
            running_tasks=_running_tasks(body),
        )
    if status in _STATUS_CLASSES:
        cls = _STATUS_CLASSES[status]
    elif 500 <= status <= 599:
        cls = VendorServerError
    else:
        cls = UnexpectedResponse
    return cls(message, http_status=status, code=code, body=body, retry_after=retry_after)


_NEVER_SENT_REASONS = (NewConnectionError, ConnectTimeoutError, Urllib3SSLError, Urllib3ProxyError)

_NEVER_SENT_REQUESTS_ERRORS = (
    requests.exceptions.ConnectTimeout,
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
    requests.exceptions.URLRequired,
)


def _never_sent(error: requests.exceptions.RequestException) -> bool:
    """True when ``error`` proves that no byte of the request reached the server.

    With ``requests``' default adapter (urllib3 ``Retry(0, read=False)``), connect-phase
    failures arrive as a ``MaxRetryError`` whose ``reason`` is a connection, connect-timeout,
    TLS-handshake or proxy error; failures after sending arrive as ``ProtocolError``, a read
    timeout, or a broken body. Anything not recognised counts as possibly sent.
    """
    if isinstance(error, _NEVER_SENT_REQUESTS_ERRORS):
        return True
    first = error.args[0] if error.args else None
    return isinstance(first, MaxRetryError) and isinstance(first.reason, _NEVER_SENT_REASONS)


@contextlib.contextmanager
def map_transport_errors(operation: str) -> Iterator[None]:
    """Turn ``requests`` exceptions raised inside the block into this module's transport errors.

    Args:
        operation: what was being done, for the message, e.g. ``"POST /gen3turbo/create"``.

    Raises:
        ConnectFailed: for connect timeout, connection refused, DNS, TLS handshake or proxy
            failures and unusable URLs: the request never left.
        OutcomeUnknown: for everything else from ``requests`` (``ReadTimeout``, a
            ``ConnectionError`` after sending such as a reset or a closed connection,
            ``ChunkedEncodingError``, ``ContentDecodingError``, ...): the outcome is unknown.

    Both chain the original exception (``raise ... from e``). Other exceptions pass unchanged.
    """
    try:
        yield
    except requests.exceptions.RequestException as e:
        detail = f"{type(e).__name__}: {e}"
        if _never_sent(e):
            raise ConnectFailed(
                _truncate(f"{operation}: could not connect, the request was not sent ({detail})")
            ) from e
        raise OutcomeUnknown(
            _truncate(
                f"{operation}: no answer after the request may have been sent; the vendor may "
                f"or may not have acted on it ({detail})"
            )
        ) from e
