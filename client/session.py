"""``UseapiClient``: a thin ``requests`` client of the useapi.net Runway API.

Endpoints used (base ``https://api.useapi.net/v1/runwayml``, header ``Authorization: Bearer``;
useapi.net docs pages named in each method):

- ``POST /assets/?email=EMAIL&name=NAME`` upload an image, answers ``{"assetId": …}``
- ``POST /gen3turbo/create``, ``/gen4turbo/create``, ``/videos/create`` start a task (the
  create answer's ``taskId`` is read at the top level or inside ``task``)
- ``GET /tasks/{taskId}`` one task (explicit checks only, never the normal path)
- ``GET /scheduler/`` (trailing slash, as documented), ``DELETE /scheduler/{taskId}`` tasks
  being tracked; stop tracking one
- ``GET /accounts`` the Runway accounts configured at useapi.net

``email`` (the account) goes on every call that takes one when given: with several accounts
configured at useapi.net the vendor requires it (useapi.net accounts pages; ``useapi-2026.md``).

Retry policy, because useapi.net has no idempotency key:

- 429 (:class:`~client.errors.AccountBusy`): wait ``Retry-After`` (clamped to 1..120 s) or a
  jittered 10..30 s, then send again, at most ``busy_retries`` times.
- :class:`~client.errors.ConnectFailed`: the request never left, so it is sent once more.
- :class:`~client.errors.OutcomeUnknown` on a create: NEVER re-sent. The client looks for the
  ``replyRef`` in ``GET /scheduler/`` and returns that task, or raises ``OutcomeUnknown``.
- Every other 4xx and every 5xx is raised at once.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Self, TypedDict, Unpack

import requests

from client.answers import (
    account_items,
    json_object,
    parse_json,
    quote_task_id,
    scheduler_items,
    unwrap_task,
    with_email,
)
from client.errors import (
    AccountBusy,
    ConnectFailed,
    OutcomeUnknown,
    TransportError,
    UnexpectedResponse,
    UseapiError,
    from_response,
    map_transport_errors,
)
from client.images import LoadedImage, load_image
from client.models import (
    CreateRequest,
    Gen3TurboRequest,
    Gen4TurboRequest,
    SchedulerEntry,
    VendorTask,
    VideosCreateRequest,
)

__all__ = ["DEFAULT_BASE_URL", "UseapiClient"]

logger = logging.getLogger(__name__)

#: The vendor's base URL (useapi.net docs: POST /v1/runwayml/gen3turbo/create).
DEFAULT_BASE_URL = "https://api.useapi.net/v1/runwayml"

#: Bounds applied to a 429's ``Retry-After`` before sleeping, seconds.
MIN_RETRY_AFTER_SECONDS = 1.0
MAX_RETRY_AFTER_SECONDS = 120.0
#: The jittered wait after a 429 without ``Retry-After`` lies in this window, seconds
#: (useapi.net docs: POST /v1/runwayml/gen3turbo/create, 429: "wait … at least 10..30 seconds").
BUSY_DELAY_MIN_SECONDS = 10.0
BUSY_DELAY_MAX_SECONDS = 30.0


class _RequestParts(TypedDict, total=False):
    """The keyword arguments of :meth:`UseapiClient._send` (all but method and path)."""

    params: Mapping[str, str] | None
    data: bytes | None
    json_body: Mapping[str, Any] | None
    headers: Mapping[str, str] | None


class UseapiClient:
    """A client of the useapi.net Runway API over one ``requests.Session``.

    Args:
        token: the useapi.net API token, sent as ``Authorization: Bearer <token>``; never logged.
        base_url: the API base, e.g. the simulator's URL in tests; a trailing "/" is ignored.
        connect_timeout: seconds allowed to open a connection, on every call.
        read_timeout: seconds allowed between bytes of the answer, on every call.
        busy_retries: how many times a create or upload answered 429 is sent again.
        session: a session to use (the caller keeps ownership; ``close()`` leaves it open);
            by default the client makes and owns one.
        sleep: called with the seconds to wait after a 429; tests pass a recorder.
        rng: the randomness of the 429 jitter; tests pass ``random.Random(0)``.

    Raises:
        ValueError: empty token, a base URL that is not http(s), non-positive timeouts, or a
            negative ``busy_retries``.

    Use it as a context manager, or call :meth:`close`. It holds no global state; a process
    builds one from its settings. It is as thread-safe as ``requests.Session`` (share it only
    for simple concurrent calls; one client per worker thread is the safe default).
    """

    def __init__(
        self,
        token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        busy_retries: int = 3,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not token or not isinstance(token, str):
            raise ValueError("a useapi.net API token is required")
        if not base_url.lower().startswith(("https://", "http://")):
            raise ValueError("base_url must be an http:// or https:// URL")
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if busy_retries < 0:
            raise ValueError("busy_retries must not be negative")
        self._token = token
        self._base_url = base_url.rstrip("/")
        self._timeout = (float(connect_timeout), float(read_timeout))
        self._busy_retries = busy_retries
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()

    def __repr__(self) -> str:
        return f"UseapiClient(base_url={self._base_url!r})"

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the session if the client made it (a caller's session is left open)."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- public API ------------------------------------------------------------------------

    def upload_asset(
        self,
        image: str | bytes | os.PathLike[str] | LoadedImage,
        *,
        name: str | None = None,
        allow_http: bool = False,
        email: str | None = None,
    ) -> str:
        """Upload an image as a Runway asset and return its ``assetId``.

        ``POST {base}/assets/?email=EMAIL&name=NAME`` with the raw bytes as the body and the
        image's ``Content-Type`` (useapi.net docs: POST /v1/runwayml/assets; SPEC.md section 1).
        An asset is usable by the account that uploaded it: pass the ``email`` of the create.

        Args:
            image: a :class:`~client.images.LoadedImage`, or anything
                :func:`~client.images.load_image` takes (bytes, path, https URL, data URI).
            name: the asset name; defaults to the image's file name.
            allow_http: let ``load_image`` fetch a plain ``http://`` URL.
            email: the useapi.net account to upload with (None: the vendor's only account).

        Returns:
            The ``assetId`` string from the JSON answer.

        Raises:
            ImageError: the image cannot be loaded or is not PNG/JPEG/GIF (before any upload).
            UseapiError: a subclass named after the vendor's answer (see
                :func:`~client.errors.from_response`); ``UnexpectedResponse`` when the answer
                has no string ``assetId``; ``AccountBusy`` after ``busy_retries`` 429s;
                ``ConnectFailed`` when connecting fails twice; ``OutcomeUnknown`` on a lost
                answer (an upload is not re-sent then either: a retry could leave two assets).
        """
        loaded = (
            image if isinstance(image, LoadedImage) else load_image(image, allow_http=allow_http)
        )
        asset_name = name if name else loaded.name
        response = self._send_with_retries(
            "POST",
            "/assets/",
            params=with_email({"name": asset_name}, email),
            data=loaded.data,
            headers={"Content-Type": loaded.content_type},
        )
        body = json_object(response)
        asset_id = body.get("assetId")
        if not isinstance(asset_id, str) or not asset_id:
            raise UnexpectedResponse(
                "the asset upload answer has no assetId",
                http_status=response.status_code,
                code=body.get("code") if isinstance(body.get("code"), int | str) else None,
                body=body,
            )
        return asset_id

    def create(self, request: CreateRequest, *, reply_url: str, reply_ref: str) -> VendorTask:
        """Start a task: POST ``request`` as JSON to ``{base}{request.ENDPOINT}``.

        useapi.net docs: POST /v1/runwayml/gen3turbo/create (likewise /gen4turbo/create and
        /videos/create). There is no idempotency key, so the request is re-sent only when it
        certainly never left or was refused with 429:

        - 429: sleep ``Retry-After`` clamped to 1..120 s, else :meth:`_busy_delay`, and retry,
          at most ``busy_retries`` times; then the last ``AccountBusy`` is raised.
        - ``ConnectFailed``: sent once more; a second failure is raised.
        - ``OutcomeUnknown`` (read timeout, reset after sending), or a 2xx whose body is not a
          task: NOT re-sent. ``GET /scheduler/`` is searched (with the request's ``email``)
          for ``reply_ref``; if found, a :class:`VendorTask` with that entry's ``taskId``,
          ``replyRef``, ``replyUrl`` and ``status="PENDING"`` is returned.

        Args:
            request: a :class:`~client.models.CreateRequest` subclass instance.
            reply_url: our callback URL (at most 1024 characters).
            reply_ref: the signed reference to find the task by (at most 1024 characters).

        Returns:
            The vendor's task object (``status`` normally ``"PENDING"``).

        Raises:
            ValueError: ``reply_url`` / ``reply_ref`` invalid (before any network call).
            BadRequest, Unauthorized, NotFound, InsufficientCredits, Moderated: at once.
            AccountBusy: still busy after ``busy_retries`` retries.
            VendorServerError: a 5xx answer (an answer, so never re-sent).
            ConnectFailed: connecting failed twice; no task was created.
            OutcomeUnknown: the answer was lost and the scheduler does not list ``reply_ref``
                (the task may or may not exist: a late callback can still tell), or the
                scheduler lookup itself failed (chained from that error).
            UnexpectedResponse: another status, or a 2xx without a task not found in the
                scheduler either.
        """
        payload = request.to_payload(reply_url, reply_ref)
        email = request.email
        try:
            response = self._send_with_retries("POST", request.ENDPOINT, json_body=payload)
        except OutcomeUnknown as lost:
            return self._recover_lost_create(reply_ref, lost, email)
        try:
            body = json_object(response)
            task = VendorTask.model_validate(unwrap_task(body))
            if not task.taskId:
                raise UnexpectedResponse(
                    "the create answer has no taskId", http_status=response.status_code, body=body
                )
        except UnexpectedResponse as unusable:
            # The vendor said 2xx, so a task very likely exists: find it, never re-send.
            return self._recover_lost_create(reply_ref, unusable, email)
        return task

    def create_gen3turbo(
        self, request: Gen3TurboRequest, reply_url: str, reply_ref: str
    ) -> VendorTask:
        """:meth:`create` for ``POST /gen3turbo/create``; same answer and errors."""
        return self.create(request, reply_url=reply_url, reply_ref=reply_ref)

    def create_gen4turbo(
        self, request: Gen4TurboRequest, reply_url: str, reply_ref: str
    ) -> VendorTask:
        """:meth:`create` for ``POST /gen4turbo/create``; same answer and errors."""
        return self.create(request, reply_url=reply_url, reply_ref=reply_ref)

    def create_video(
        self, request: VideosCreateRequest, reply_url: str, reply_ref: str
    ) -> VendorTask:
        """:meth:`create` for ``POST /videos/create``; same answer and errors."""
        return self.create(request, reply_url=reply_url, reply_ref=reply_ref)

    def get_task(self, task_id: str, *, email: str | None = None) -> VendorTask:
        """Fetch one task: ``GET {base}/tasks/{taskId}`` (``?email=`` when given: the account
        that ran it).

        For explicit checks only (``VERIFY_WITH_VENDOR``, reconciliation, an operator's
        request); the normal path never asks the vendor for task status (SPEC.md invariant 5).
        ``task_id`` is percent-encoded except ``:`` and ``@``, which vendor task ids contain.

        Raises:
            ValueError: empty ``task_id``.
            NotFound: the vendor does not know the task. Other ``UseapiError`` subclasses as
                mapped by :func:`~client.errors.from_response`; ``UnexpectedResponse`` when the
                body is not a JSON object; ``ConnectFailed`` / ``OutcomeUnknown`` on transport
                failure (a GET is re-sent once after ``ConnectFailed``).
        """
        path = f"/tasks/{quote_task_id(task_id)}"
        response = self._send_with_retries("GET", path, params=with_email({}, email))
        return VendorTask.model_validate(unwrap_task(json_object(response)))

    def list_scheduler(self, *, email: str | None = None) -> list[SchedulerEntry]:
        """The tasks the vendor is tracking: ``GET {base}/scheduler/`` (trailing slash, as
        useapi.net documents it; ``?email=`` when given).

        The answer is a JSON array of ``{taskId, replyUrl, replyRef}`` objects (SPEC.md
        section 1); an object wrapping such arrays (e.g. ``{"tasks": […]}`` or, like a 429's
        ``runningTasks``, ``{email: […]}``) is accepted too, every array inside it (up to two
        levels deep) being read. Items that are not objects are skipped.

        Raises:
            UseapiError subclasses as for :meth:`get_task`; ``UnexpectedResponse`` when the
            body is neither an array nor an object.
        """
        response = self._send_with_retries("GET", "/scheduler/", params=with_email({}, email))
        items = scheduler_items(parse_json(response))
        if items is None:
            raise UnexpectedResponse(
                "the scheduler answer is neither a JSON array nor an object",
                http_status=response.status_code,
            )
        return [SchedulerEntry.model_validate(item) for item in items]

    def find_in_scheduler(
        self, reply_ref: str, *, email: str | None = None
    ) -> SchedulerEntry | None:
        """The scheduler entry whose ``replyRef`` equals ``reply_ref`` and that has a
        ``taskId``, or None. Raises as :meth:`list_scheduler`."""
        for entry in self.list_scheduler(email=email):
            if entry.replyRef == reply_ref and entry.taskId:
                return entry
        return None

    def list_accounts(self) -> list[dict[str, Any]]:
        """The Runway accounts configured at useapi.net: ``GET {base}/accounts``.

        Read leniently (:func:`~client.answers.account_items`): each item has at least
        ``email`` and ``error`` (pending, or None; such an account must be fixed at useapi.net).

        Raises:
            UseapiError subclasses as for :meth:`get_task`; ``UnexpectedResponse`` when the
            body is neither an array nor an object.
        """
        response = self._send_with_retries("GET", "/accounts")
        accounts = account_items(parse_json(response))
        if accounts is None:
            message = "the accounts answer is neither a JSON array nor an object"
            raise UnexpectedResponse(message, http_status=response.status_code)
        return accounts

    def cancel(self, task_id: str, *, email: str | None = None) -> None:
        """Stop tracking a task: ``DELETE {base}/scheduler/{taskId}``; no callback follows.

        Raises:
            ValueError: empty ``task_id``. ``NotFound`` and other ``UseapiError`` subclasses as
            mapped by :func:`~client.errors.from_response`; transport errors as
            :meth:`get_task`.
        """
        path = f"/scheduler/{quote_task_id(task_id)}"
        self._send_with_retries("DELETE", path, params=with_email({}, email))

    # -- internals -------------------------------------------------------------------------

    def _busy_delay(self, attempt: int) -> float:
        """Seconds to wait before re-sending after the ``attempt``-th 429 (0-based) when no
        ``Retry-After`` came: uniform in ``[min(10 + 5 * attempt, 25), 30]``, so always within
        the vendor's 10..30 s and drifting later as the account stays busy. Uses ``self._rng``
        so tests control the randomness."""
        low = min(BUSY_DELAY_MIN_SECONDS + 5.0 * max(attempt, 0), BUSY_DELAY_MAX_SECONDS - 5.0)
        return self._rng.uniform(low, BUSY_DELAY_MAX_SECONDS)

    def _send_with_retries(
        self, method: str, path: str, **parts: Unpack[_RequestParts]
    ) -> requests.Response:
        """Send, re-sending once after ``ConnectFailed`` and up to ``busy_retries`` times after a
        429; return the first 2xx response, raise every other outcome (see module docstring)."""
        busy_attempts = 0
        connect_retried = False
        while True:
            try:
                response = self._send(method, path, **parts)
            except ConnectFailed:
                if connect_retried:
                    raise
                connect_retried = True
                logger.warning("useapi %s %s: connect failed, sending once more", method, path)
                continue
            if 200 <= response.status_code < 300:
                return response
            error = from_response(response)
            if not isinstance(error, AccountBusy) or busy_attempts >= self._busy_retries:
                raise error
            if error.retry_after is not None:
                delay = min(
                    MAX_RETRY_AFTER_SECONDS, max(MIN_RETRY_AFTER_SECONDS, error.retry_after)
                )
            else:
                delay = self._busy_delay(busy_attempts)
            busy_attempts += 1
            logger.info(
                "useapi %s %s: account busy (429), retry %d/%d in %.1f s",
                method,
                path,
                busy_attempts,
                self._busy_retries,
                delay,
            )
            self._sleep(delay)

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
        json_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """One HTTP exchange with the bearer token and ``(connect, read)`` timeouts; transport
        failures become ``ConnectFailed`` / ``OutcomeUnknown``. Logs method, path, status and
        duration; never the token, the query or a body."""
        all_headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        if headers:
            all_headers.update(headers)
        body = data
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode("utf-8")
            all_headers["Content-Type"] = "application/json"
        started = time.monotonic()
        try:
            with map_transport_errors(f"{method} {path}"):
                response = self._session.request(
                    method,
                    self._base_url + path,
                    params=dict(params) if params else None,
                    data=body,
                    headers=all_headers,
                    timeout=self._timeout,
                    allow_redirects=False,
                )
        except TransportError as e:
            logger.warning(
                "useapi %s %s: %s after %.3f s",
                method,
                path,
                type(e).__name__,
                time.monotonic() - started,
            )
            raise
        logger.info(
            "useapi %s %s -> %d in %.3f s",
            method,
            path,
            response.status_code,
            time.monotonic() - started,
        )
        return response

    def _recover_lost_create(
        self, reply_ref: str, lost: UseapiError, email: str | None
    ) -> VendorTask:
        """After a create whose answer was lost or unusable: find ``reply_ref`` in the
        scheduler (of ``email``'s account) and return a PENDING task for it, or raise (see
        :meth:`create`)."""
        logger.warning("useapi create: answer lost or unusable, looking up the scheduler")
        try:
            entry = self.find_in_scheduler(reply_ref, email=email)
        except UseapiError as e:
            raise OutcomeUnknown(
                "the create's answer was lost and the scheduler lookup failed; the task may or "
                f"may not exist ({e})"
            ) from e
        if entry is None:
            if isinstance(lost, OutcomeUnknown):
                raise OutcomeUnknown(
                    "the create's answer was lost and GET /scheduler/ does not list its replyRef: "
                    "the task may or may not exist (it may not be listed yet, or already "
                    "finished); do not re-send blindly"
                ) from lost
            raise lost
        logger.info("useapi create: found task %s in the scheduler", entry.taskId)
        return VendorTask(
            taskId=entry.taskId,
            replyRef=entry.replyRef,
            replyUrl=entry.replyUrl,
            status="PENDING",
        )
