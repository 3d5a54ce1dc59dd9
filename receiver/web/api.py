"""``/api/*``: tasks, subscribers, deliveries and refused callbacks, behind ``ADMIN_TOKEN``.

Every request under ``/api`` needs ``Authorization: Bearer $ADMIN_TOKEN`` (compared in constant
time), unknown paths and methods included; the OpenAPI document is at ``GET /api/openapi.json``
(also behind the token).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ValidationError

from client.errors import (
    AccountBusy,
    BadRequest,
    ConnectFailed,
    InsufficientCredits,
    Moderated,
    NotFound,
    OutcomeUnknown,
    UseapiError,
)
from client.images import DEFAULT_MAX_IMAGE_BYTES, ImageError
from client.replyref import ReplyRefTooLong
from receiver import services, submission, views
from receiver.clock import utcnow
from receiver.delivery.operational import send_test_event
from receiver.delivery.urls import ImageFetchFailed, UnsafeUrl, fetch_image
from receiver.domain.events import EVENT_TYPES
from receiver.domain.statuses import DELIVERY_STATUSES
from receiver.settings import ConfigError
from receiver.times import BadTime, parse_time
from receiver.views.schemas import (
    Delivery,
    Job,
    Refused,
    Subscriber,
    SubscriberCreated,
    WebhookTest,
)
from receiver.web.auth import bearer_matches
from receiver.web.body import BadBody, parse_json_object, read_body
from receiver.web.context import runtime
from receiver.web.errors import ApiError, error_response, validation_message
from receiver.web.idempotency import idempotent
from receiver.web.openapi import openapi_document
from receiver.web.ratelimit import client_address, limiter, refuse_too_many
from receiver.web.schemas import (
    DeliveryList,
    JobList,
    RecoverIn,
    RefusedList,
    Requeued,
    SubscriberIn,
    SubscriberList,
    TaskSubmissionIn,
)

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_PAGE = 200


@bp.before_app_request
def _require_admin_token() -> ResponseReturnValue | None:
    """Guard everything under ``/api``, before routing: an unknown path or method answers 401
    too, so a caller without the token learns nothing of what exists. The token is compared
    in constant time (:func:`receiver.web.auth.bearer_matches`)."""
    if request.path != "/api" and not request.path.startswith("/api/"):
        return None
    token = runtime().settings.admin_token
    if not token:
        raise ApiError(503, "admin_disabled", "the admin API is off: set ADMIN_TOKEN to use it")
    client = client_address()
    refused = refuse_too_many(client)
    if refused is not None:
        return refused
    header = request.headers.get("Authorization", "")
    if not bearer_matches(header, token):
        if header:  # a token was presented and is wrong: a guess (no header guesses nothing)
            limiter().failed(client)
        response, status = error_response(
            401, "unauthorized", "a valid 'Authorization: Bearer <ADMIN_TOKEN>' is required"
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="runway-relay admin API"'
        return response, status
    return None


def _json_body(model: type[BaseModel]) -> Any:
    """The body as ``model``: a JSON object read as strictly as a callback's (UTF-8, finite
    numbers, no NUL, bounded depth; any Content-Type).

    :raise ApiError: 400 not a JSON object, 422 not a valid ``model``.
    """
    try:
        data = parse_json_object(read_body())
    except BadBody as exc:
        raise ApiError(400, "invalid_json", str(exc)) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, "validation_error", validation_message(exc)) from None


def _answer(model: BaseModel) -> Response:
    """``model`` as the JSON answer (its ``model_dump(mode="json")``, through Flask's JSON)."""
    return jsonify(model.model_dump(mode="json"))


def _limit() -> int:
    raw = request.args.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise ApiError(400, "invalid_limit", f"limit must be an integer from 1 to {MAX_PAGE}")
    return int(raw)


def _time_arg(value: str | None, name: str) -> datetime | None:
    """The query argument ``name`` as a time (:func:`receiver.times.parse_time`), or None.

    :raise ApiError 400: ``invalid_<name>``: not an ISO-8601 time with a zone (or a date).
    """
    if value is None:
        return None
    try:
        return parse_time(value)
    except BadTime as exc:
        raise ApiError(400, f"invalid_{name}", f"{name}: {exc}") from None


# -- tasks ----------------------------------------------------------------------------------


_VENDOR_STATUS: dict[type[UseapiError], tuple[int, str]] = {
    InsufficientCredits: (402, "insufficient_credits"),
    Moderated: (422, "moderated"),
    AccountBusy: (429, "vendor_busy"),
    BadRequest: (400, "vendor_bad_request"),
    NotFound: (400, "vendor_not_found"),
    ConnectFailed: (503, "vendor_unreachable"),
}


def _image_source(value: str, allow_private: bool) -> str | bytes:
    """An image given to ``POST /api/tasks`` as something safe to hand on: a ``data:`` URI as
    is, an image URL downloaded here into bytes (:func:`receiver.delivery.urls.fetch_image`:
    the webhook delivery's guarded connection, no redirects). A string is never taken for a
    file path.

    :raise ApiError 422: ``invalid_image``: a URL refused, or its download failed (one message
        whatever the cause).
    """
    if value[:5].lower() == "data:":
        return value
    try:
        return fetch_image(
            value,
            allow_private=allow_private,
            max_bytes=DEFAULT_MAX_IMAGE_BYTES,
        )
    except UnsafeUrl as exc:
        raise ApiError(422, "invalid_image", f"image URL refused: {exc}") from None
    except ImageFetchFailed as exc:
        raise ApiError(422, "invalid_image", str(exc)) from None


@bp.post("/tasks")
@idempotent
def submit_task() -> tuple[Response, int]:
    """Submit a task: upload images, record the job, create the vendor task. Honours
    ``Idempotency-Key`` (:mod:`receiver.web.idempotency`).

    :returns 201: the job.
    :raise 422: invalid request (nothing stored or sent), 402/429/400: vendor refusals,
        502: vendor error, or its answer was lost (the job stays SUBMITTING; the error body
        carries it), 503: vendor or USEAPI_TOKEN unavailable.
    """
    rt = runtime()
    body: TaskSubmissionIn = _json_body(TaskSubmissionIn)
    images = submission.image_slots(body.image, body.middle_image, body.last_image)
    params = dict(body.options)
    if body.prompt is not None:
        params["text_prompt"] = body.prompt
    try:
        target = submission.resolve_model(body.model, body.video_model)
        # The images' slots are checked before any is downloaded.
        submission.check_inputs(target, params, images, body.reference_images)
        reply_url = rt.settings.reply_url
        client = rt.vendor_client()
    except services.InvalidSubmission as exc:
        raise ApiError(422, "validation_error", str(exc)) from None
    except ConfigError as exc:
        raise ApiError(503, "not_configured", str(exc)) from None
    allow_private = rt.settings.allow_private_urls
    fetched = {slot: _image_source(source, allow_private) for slot, source in images.items()}
    references = [_image_source(source, allow_private) for source in body.reference_images]
    try:
        job = submission.submit_with(
            rt,
            client,
            submission.Submission(
                model=target.name,
                params=params,
                images=fetched,
                metadata=body.metadata,
                account=body.account or rt.settings.useapi_account_email,
                references=references,
            ),
            reply_url=reply_url,
        )
    except ValidationError as exc:
        raise ApiError(422, "validation_error", validation_message(exc)) from None
    except ReplyRefTooLong as exc:
        raise ApiError(422, "metadata_too_large", str(exc)) from None
    except ImageError as exc:
        raise ApiError(422, "invalid_image", str(exc)) from None
    except services.SubmissionFailed as exc:
        cause = exc.cause
        status, code = next(
            (v for k, v in _VENDOR_STATUS.items() if isinstance(cause, k)), (502, "vendor_error")
        )
        if isinstance(cause, OutcomeUnknown):
            status, code = 502, "outcome_unknown"
        failed = views.job(rt.engine, exc.job_id)
        message = cause.message or str(cause)
        if exc.advice:
            message = f"{message} ({exc.advice})"
        extra = {"job": failed.model_dump(mode="json")}
        raise ApiError(status, code, message, extra=extra) from None
    return _answer(Job.of(job)), 201


@bp.get("/tasks")
def list_tasks() -> Response:
    """Jobs, newest first. Query: ``status``, ``model``, ``since`` (ISO-8601), ``before``
    (a job id, to page), ``limit`` (1..200)."""
    filters = views.JobFilter(
        status=request.args.get("status"),
        model=request.args.get("model"),
        since=_time_arg(request.args.get("since"), "since"),
    )
    page = views.jobs(runtime().engine, filters, before=request.args.get("before"), limit=_limit())
    return _answer(JobList(items=[Job.of(j) for j in page.items]))


@bp.get("/tasks/<job_id>")
def get_task(job_id: str) -> Response:
    """One job with its state, progress, artifacts and events. :raise 404:"""
    return _answer(views.job_detail(runtime().engine, job_id))


# -- subscribers ----------------------------------------------------------------------------


@bp.post("/subscribers")
def create_subscriber() -> tuple[Response, int]:
    """Register a subscriber; the answer carries its ``whsec_`` secret, shown this once.

    :raise 422: URL refused by the SSRF guard, or an unknown event type.
    """
    rt = runtime()
    body: SubscriberIn = _json_body(SubscriberIn)
    sub = services.create_subscriber(
        rt.engine,
        url=body.url,
        event_types=body.event_types,
        description=body.description,
        max_in_flight=body.max_in_flight or rt.settings.subscriber_max_in_flight,
        allow_private=rt.settings.allow_private_urls,
        now=utcnow(),
    )
    return _answer(SubscriberCreated.with_secret(sub)), 201


@bp.get("/subscribers")
def list_subscribers() -> Response:
    """Subscribers (not removed) with their deliveries counted by status."""
    return _answer(SubscriberList(items=views.subscribers(runtime().engine)))


@bp.get("/subscribers/<subscriber_id>")
def get_subscriber(subscriber_id: str) -> Response:
    """One subscriber, without its secret. :raise 404:"""
    return _answer(views.subscriber(runtime().engine, subscriber_id))


@bp.delete("/subscribers/<subscriber_id>")
def delete_subscriber(subscriber_id: str) -> tuple[str, int]:
    """Remove a subscriber and cancel its pending deliveries. :raise 404:"""
    services.remove_subscriber(runtime().engine, subscriber_id, utcnow())
    return "", 204


@bp.post("/subscribers/<subscriber_id>/rotate-secret")
def rotate_secret(subscriber_id: str) -> Response:
    """New secret (shown once); the old one signs beside it during the grace period."""
    rt = runtime()
    sub = services.rotate_secret(
        rt.engine, subscriber_id, rt.settings.secret_rotation_grace_seconds, utcnow()
    )
    return _answer(SubscriberCreated.with_secret(sub))


@bp.post("/subscribers/<subscriber_id>/enable")
def enable_subscriber(subscriber_id: str) -> Response:
    """Enable a subscriber and clear its failure streak. :raise 404:"""
    sub = services.set_subscriber_enabled(runtime().engine, subscriber_id, True, utcnow())
    return _answer(Subscriber.of(sub))


@bp.post("/subscribers/<subscriber_id>/disable")
def disable_subscriber(subscriber_id: str) -> Response:
    """Disable a subscriber (its deliveries wait until it is enabled). :raise 404:"""
    sub = services.set_subscriber_enabled(runtime().engine, subscriber_id, False, utcnow())
    return _answer(Subscriber.of(sub))


@bp.post("/subscribers/<subscriber_id>/test")
def test_subscriber(subscriber_id: str) -> Response:
    """Send one signed ``webhook.test`` now and return the subscriber's answer (status code,
    duration, body excerpt, outcome); 200 whatever it answered. :raise 404:"""
    rt = runtime()
    result = send_test_event(
        rt.engine,
        subscriber_id,
        timeout=rt.settings.delivery_timeout_seconds,
        allow_private=rt.settings.allow_private_urls,
        now=utcnow(),
    )
    return _answer(WebhookTest.model_validate(result.to_json()))


# -- deliveries -----------------------------------------------------------------------------


@bp.get("/deliveries")
def list_deliveries() -> Response:
    """Deliveries, newest first. Query: ``status`` (pending, succeeded, failed, cancelled),
    ``subscriber_id``, ``event_id``, ``before`` (a delivery id), ``limit``."""
    status = request.args.get("status")
    if status is not None and status not in DELIVERY_STATUSES:
        raise ApiError(
            400, "invalid_status", f"status must be one of {', '.join(DELIVERY_STATUSES)}"
        )
    filters = views.DeliveryFilter(
        status=status,
        subscriber_id=request.args.get("subscriber_id"),
        event_id=request.args.get("event_id"),
    )
    page = views.deliveries(
        runtime().engine, filters, before=request.args.get("before"), limit=_limit()
    )
    return _answer(DeliveryList(items=[Delivery.of(d) for d in page.items]))


@bp.get("/deliveries/<delivery_id>")
def get_delivery(delivery_id: str) -> Response:
    """One delivery with its attempt log. :raise 404:"""
    return _answer(views.delivery(runtime().engine, delivery_id))


@bp.post("/deliveries/<delivery_id>/retry")
def retry_delivery(delivery_id: str) -> Response:
    """Send a finished delivery again now (same ``webhook-id``). :raise 404: :raise 409:"""
    delivery = services.retry_delivery(runtime().engine, delivery_id, utcnow())
    return _answer(Delivery.of(delivery))


@bp.post("/deliveries/recover")
def recover() -> Response:
    """Send again every delivery that failed since ``since``; answers ``{"requeued": n}``."""
    body: RecoverIn = _json_body(RecoverIn)
    if body.since.tzinfo is None:
        raise ApiError(422, "validation_error", "since: must carry a zone, e.g. Z")
    count = services.recover_deliveries(runtime().engine, body.since, utcnow(), body.subscriber_id)
    return _answer(Requeued(requeued=count))


# -- refused callbacks ----------------------------------------------------------------------


@bp.get("/refused-callbacks")
def refused_callbacks() -> Response:
    """The bounded log of refused callbacks, newest first."""
    page = views.refused_callbacks(runtime().engine, limit=_limit())
    return _answer(RefusedList(items=[Refused.of(r) for r in page.items]))


def api_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``/api/*`` (:func:`receiver.web.openapi.openapi_document` of
    this API's request models and event types), as a JSON-ready dict."""
    return openapi_document(
        task_in=TaskSubmissionIn,
        subscriber_in=SubscriberIn,
        recover_in=RecoverIn,
        event_types=EVENT_TYPES,
    )


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document of ``/api/*``."""
    return jsonify(api_document())
