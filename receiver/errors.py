"""The outcomes of a use case that a caller may turn into a refusal: one tree, each with the
HTTP status and JSON error code the web layer answers with (:mod:`receiver.web.errors`), and
that the dashboard and the CLI show as a message.

::

    ServiceError                 base: ``code`` (JSON error code), ``http_status``
    ├── NotFound                 404  base of the three below (:meth:`NotFound.require`)
    │   ├── JobNotFound          404  no such job (or a replyRef names a job not here)
    │   ├── SubscriberNotFound   404
    │   └── DeliveryNotFound     404
    ├── TaskIdMismatch           403  a callback's taskId is not its job's
    ├── InvalidSubscriber        422  URL refused (SSRF guard), unknown event type, bad cap
    ├── InvalidSubmission        422  a submission that does not fit its model
    ├── SubmissionFailed         502  the vendor refused or failed a create (job kept)
    └── Conflict                 409  e.g. retrying a delivery that is pending already

Callers catch outcomes, not status codes; no class here knows Flask.
"""

from __future__ import annotations

from typing import Any, TypeVar

from client import UseapiError

T = TypeVar("T")


class ServiceError(Exception):
    """Base of the outcomes the web layer maps to a 4xx; ``code`` is the JSON error code and
    ``http_status`` the status answered."""

    code = "error"
    http_status = 400

    def __init_subclass__(
        cls, *, code: str | None = None, http_status: int | None = None, **kwargs: Any
    ) -> None:
        """Give a subclass its ``code`` and ``http_status`` in its header
        (``class JobNotFound(ServiceError, code="job_not_found", http_status=404)``); one not
        given is inherited."""
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if http_status is not None:
            cls.http_status = http_status


class NotFound(ServiceError, http_status=404):
    """Base of the outcomes "there is no such thing" (404)."""

    @classmethod
    def require(cls, row: T | None, message: str) -> T:
        """``row``, read by an id, unless it is None (nothing has that id).

        :raises NotFound: this class, with ``message`` (``"no job <id>"``), when ``row`` is
            None.
        """
        if row is None:
            raise cls(message)
        return row


class JobNotFound(NotFound, code="job_not_found"):
    """No job with that id (or the replyRef names a job this database does not have)."""


class SubscriberNotFound(NotFound, code="subscriber_not_found"):
    """No subscriber with that id (or it was removed)."""


class DeliveryNotFound(NotFound, code="delivery_not_found"):
    """No delivery with that id."""


class TaskIdMismatch(ServiceError, code="task_id_mismatch", http_status=403):
    """A valid replyRef arrived with a taskId other than the one bound to its job."""


class InvalidSubscriber(ServiceError, code="invalid_subscriber", http_status=422):
    """A subscriber URL or option that is refused (SSRF guard, unknown event type)."""


class SubmissionFailed(ServiceError, code="submission_failed", http_status=502):
    """The vendor refused or failed a create; ``job_id`` names the job kept as evidence and
    ``cause`` is the :class:`client.errors.UseapiError` (its ``__cause__`` too)."""

    def __init__(self, job_id: str, cause: UseapiError) -> None:
        super().__init__(str(cause))
        self.job_id = job_id
        self.cause = cause
        #: what the submitter could do instead (e.g. pick a live model), or None
        self.advice: str | None = None


class Conflict(ServiceError, code="conflict", http_status=409):
    """The request conflicts with the current state (e.g. the delivery is pending already)."""


class InvalidSubmission(ServiceError, code="validation_error", http_status=422):
    """A submission that does not fit its model: an image or a field the model does not take,
    or a required one missing. Refused before anything is stored or sent."""
