"""Submitting a task: resolve the model name to its endpoint, check the request against the
model's rules, record the job, upload the images with the account that will run the task,
create the vendor task with our signed replyRef.

The model name picks the endpoint (:func:`client.catalog.route`): ``gen4.5`` (the default),
``gen4``, ``kling-3.0-pro``, ``seedance-2``, … go to ``POST /videos/create`` with that
``model``; ``gen3turbo`` and ``gen4turbo`` keep their own endpoints. The account (``email``)
goes on the uploads and the create and is stored in the job's ``request``, so later lookups of
the task (reconcile, ``VERIFY_WITH_VENDOR``, a lost create's scheduler search) use it too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Engine

from client import REQUEST_TYPES, CreateRequest, ReplyRefSigner, UseapiClient, UseapiError
from client.catalog import RETIRED_ADVICE, Route, route
from client.errors import OutcomeUnknown
from receiver.clock import utcnow
from receiver.domain.tasks import TaskStatus
from receiver.errors import InvalidSubmission, SubmissionFailed
from receiver.ids import new_id
from receiver.services.callbacks import get_job
from receiver.store.repositories import Job
from receiver.store.uow import UnitOfWork

if TYPE_CHECKING:
    from receiver.runtime import Runtime

T = TypeVar("T")

__all__ = [
    "API_NAMES",
    "IMAGE_FIELDS",
    "MAX_MODEL_NAME_LENGTH",
    "Submission",
    "check_inputs",
    "check_submission",
    "resolve_model",
    "submit_task",
]

log = logging.getLogger(__name__)

#: Longest model name a job can record (the ``jobs.model`` column), characters.
MAX_MODEL_NAME_LENGTH = 32

#: The image slots and the ``POST /api/tasks`` field that carries each.
IMAGE_FIELDS: Mapping[str, str] = {
    "first": "image",
    "middle": "middle_image",
    "last": "last_image",
    "references": "reference_images",
}
#: How the submitter names each input, by its ``POST /api/tasks`` field: the messages of
#: :class:`InvalidSubmission` use these names. A front end with names of its own (``relay
#: submit``'s options) passes its mapping to :func:`resolve_model` and :func:`check_submission`.
API_NAMES: Mapping[str, str] = {
    name: name for name in (*IMAGE_FIELDS.values(), "model", "video_model")
}
#: Hints for fields whose spelling differs between models (the video length) or that are
#: easily confused with our own names (``model`` of ``/videos/create`` is the vendor's model).
_FIELD_HINTS = {
    "seconds": "video length",
    "duration": "video length",
    "model": "the vendor's video model",
}


@dataclass(frozen=True)
class Submission:
    """A task to submit.

    ``model``: a vendor model name (``gen4.5``, ``kling-3.0-pro``, …) or ``gen3turbo`` /
    ``gen4turbo``; None means :data:`client.catalog.DEFAULT_MODEL`. ``params``: the request's
    fields other than images and the account (Python or vendor names). ``images`` maps
    ``first``/``middle``/``last`` to an image source (path, bytes, https URL or ``data:`` URI);
    ``references`` are Seedance's reference images (``imageAssetId1..N``). ``account``: the
    useapi.net account email (None: the vendor's only account). ``metadata``: echoed in every
    webhook.
    """

    model: str | None
    params: Mapping[str, Any]
    images: Mapping[str, str | bytes]
    metadata: Mapping[str, Any]
    account: str | None = None
    references: Sequence[str | bytes] = field(default_factory=tuple)


def resolve_model(
    model: str | None, video_model: str | None = None, *, names: Mapping[str, str] = API_NAMES
) -> Route:
    """The route of a submission's model name, mapping the ``videos`` alias
    (``"model": "videos", "video_model": X``) to ``X``.

    :param names: how the submitter names ``model`` and ``video_model`` (see :data:`API_NAMES`).

    :raises InvalidSubmission: ``videos`` without a video model, a video model with another
        model, or a name that is not a model name (whitespace, longer than 32 characters).
    """
    if model == "videos":
        if not video_model:
            raise InvalidSubmission(
                f"model videos needs a video model ({names['video_model']}), e.g. gen4.5; "
                f"or name the model itself: {names['model']} gen4.5"
            )
        model = video_model
    elif video_model is not None:
        raise InvalidSubmission(
            f"{names['video_model']} is for model videos only, not {model}; "
            f"name the model itself: {names['model']} {video_model}"
        )
    if model is not None and len(model) > MAX_MODEL_NAME_LENGTH:
        raise InvalidSubmission(f"a model name has at most {MAX_MODEL_NAME_LENGTH} characters")
    try:
        return route(model)
    except ValueError as exc:
        raise InvalidSubmission(str(exc)) from None


def _image_fields(target: Route) -> dict[str, str]:
    """Image slot → field of the request class, for this model."""
    if target.kind == "gen3turbo":
        return {
            "first": "first_image_asset_id",
            "middle": "middle_image_asset_id",
            "last": "last_image_asset_id",
        }
    if target.kind == "gen4turbo":
        return {"first": "first_image_asset_id"}
    spec = target.spec
    if spec is not None and spec.keyframe_fields:
        return {
            "first": "start_frame_asset_id",
            "last": "end_frame_asset_id",
            "references": "reference_asset_ids",
        }
    slots = {"first": "first_image_asset_id", "last": "last_image_asset_id"}
    if spec is not None:
        slots = dict(list(slots.items())[: min(spec.max_images, 2)])
    return slots


def _request_type(target: Route) -> type[CreateRequest]:
    return REQUEST_TYPES[target.kind]


def check_submission(
    submission: Submission, target: Route, *, names: Mapping[str, str] = API_NAMES
) -> None:
    """Refuse a submission whose images or field names do not fit the model, with a message
    naming the model and what it takes (values are left to the request model and the table).

    :param names: how the submitter names the images (see :data:`API_NAMES`).

    :raises InvalidSubmission: an image the model has no field for, a required image or field
        missing, or a ``params`` key that is neither a field nor a vendor name of the model.
    """
    model = target.name
    request_type = _request_type(target)
    fields = dict(request_type.model_fields)
    spec = target.spec
    if spec is not None:  # a listed model: only the fields of its row
        expanded = {
            "reference_asset_ids": len(spec.image_fields) > 2,
            "video_asset_ids": bool(spec.video_fields),
        }
        fields = {
            name: info
            for name, info in fields.items()
            if (
                expanded[name]
                if name in expanded
                else (info.validation_alias if isinstance(info.validation_alias, str) else name)
                in spec.fields
            )
        }
    accepted = {name: name for name in fields}  # Python names and vendor names
    for name, info in fields.items():
        if isinstance(info.validation_alias, str):
            accepted[info.validation_alias] = name
    slots = _image_fields(target)

    def image(slot: str) -> str:
        return f"{slot} image ({names[IMAGE_FIELDS[slot]]})"

    given = dict(submission.images)
    if submission.references:
        given["references"] = "…"
    for slot in given:
        if slot not in slots:
            offered = ", ".join(image(s) for s in slots) or "no image"
            raise InvalidSubmission(f"{model} takes no {image(slot)}; it takes: {offered}")
    unknown = [key for key in submission.params if key not in accepted]
    if unknown:
        own = [n for n in fields if n not in slots.values() and n not in ("model", "email")]
        notes = []
        for key in unknown:
            same = [n for n in own if n != key and _FIELD_HINTS.get(n) == _FIELD_HINTS.get(key)]
            if key in _FIELD_HINTS and same:
                notes.append(f"its {_FIELD_HINTS[key]} is {same[0]!r}")
        note = f" ({'; '.join(notes)})" if notes else ""
        raise InvalidSubmission(
            f"{model} does not take {', '.join(repr(k) for k in unknown)}{note}; "
            f"its fields: {', '.join(own)}"
        )
    named = {accepted[key] for key in submission.params if key in accepted}
    required = {name for name, info in fields.items() if info.is_required()}
    needs_image = (spec is not None and spec.min_images > 0) or "first_image_asset_id" in required
    if needs_image and not given and not named & set(slots.values()):
        raise InvalidSubmission(f"{model} needs a {image('first')}")


def check_inputs(
    target: Route,
    params: Mapping[str, Any],
    images: Mapping[str, str | bytes],
    references: Sequence[str | bytes] = (),
    *,
    names: Mapping[str, str] = API_NAMES,
) -> None:
    """:func:`check_submission` of a submission's inputs alone, before any image is read or
    downloaded (a front end checks first, so that its message uses its own ``names``).

    :raises InvalidSubmission: see :func:`check_submission`.
    """
    check_submission(
        Submission(
            model=target.name, params=params, images=images, metadata={}, references=references
        ),
        target,
        names=names,
    )


def submit_task(
    engine: Engine,
    *,
    client: UseapiClient,
    signer: ReplyRefSigner,
    reply_url: str,
    submission: Submission,
    now: datetime,
    allow_http_images: bool = False,
) -> Job:
    """Record a job, upload its images, create the vendor task with our signed replyRef.

    The request is validated (field names, then the model's row of the table) before anything
    is stored or sent. The images are uploaded with the submission's account, the one that
    runs the task. A vendor error marks the job SUBMIT_FAILED with that error (plus advice
    for a retired model) and is re-raised. An :class:`OutcomeUnknown` leaves the job
    SUBMITTING: its callbacks, if the task exists, will still bind it (the create is never
    re-sent, useapi.net has no idempotency key).

    :raises pydantic.ValidationError: the request is invalid (nothing stored, nothing sent).
    :raises InvalidSubmission: see :func:`check_submission` and :func:`resolve_model`.
    :raises client.replyref.ReplyRefTooLong: metadata too large for the 1024-character replyRef.
    :raises client.images.ImageError: an image cannot be read.
    :raises SubmissionFailed: the vendor refused or failed, or its answer was lost (``cause``
        is the :class:`client.errors.UseapiError`; ``advice`` a hint; the job is kept).
    """
    target = resolve_model(submission.model)
    check_submission(submission, target)
    request_type = _request_type(target)
    slots = _image_fields(target)
    params = dict(submission.params)
    if target.vendor_model is not None:
        params["model"] = target.vendor_model
    account = submission.account or params.get("email")
    if account:
        params["email"] = account
    placeholder: dict[str, Any] = {slots[k]: "pending-upload" for k in submission.images}
    if submission.references:
        placeholder[slots["references"]] = ["pending-upload"] * len(submission.references)
    request_type.model_validate({**params, **placeholder})  # fail before any I/O
    if target.warning:
        log.warning(target.warning, extra={"model": target.name})
    job_id = new_id("job")
    reply_ref = signer.sign(job_id, dict(submission.metadata))
    job = Job.new(
        job_id=job_id,
        model=target.name,
        request=params,
        metadata=submission.metadata,
        status=TaskStatus.SUBMITTING.value,
        task_id=None,
        now=now,
    )
    with UnitOfWork(engine) as uow:
        uow.repo.add_job(job)
        uow.commit()

    def upload(source: str | bytes) -> str:
        return client.upload_asset(source, allow_http=allow_http_images, email=account)

    try:
        asset_ids: dict[str, Any] = {
            slots[slot]: upload(source) for slot, source in submission.images.items()
        }
        if submission.references:
            asset_ids[slots["references"]] = [upload(s) for s in submission.references]
        request = request_type.model_validate({**params, **asset_ids})
        created = client.create(request, reply_url=reply_url, reply_ref=reply_ref)
    except OutcomeUnknown as exc:
        _record_submit_error(engine, job_id, exc, now, final=False)
        raise SubmissionFailed(job_id, exc) from exc
    except UseapiError as exc:
        advice = RETIRED_ADVICE if target.retired else None
        _record_submit_error(engine, job_id, exc, now, final=True, advice=advice)
        failed = SubmissionFailed(job_id, exc)
        failed.advice = advice
        raise failed from exc
    except ValueError as exc:  # an image that cannot be read, an invalid request
        _record_submit_error(engine, job_id, exc, now, final=True)
        raise
    with UnitOfWork(engine) as uow:
        uow.repo.update_job(job_id, request={**params, **asset_ids})
        if created.taskId:
            uow.repo.mark_submitted(job_id, created.taskId, now)
        uow.commit()
    return get_job(engine, job_id)


def submit_with(
    rt: Runtime,
    client: UseapiClient,
    order: Submission,
    *,
    reply_url: str,
    submit: Callable[..., Job] = submit_task,
) -> Job:
    """:func:`submit_task` of ``order`` with the runtime's database and replyRef signer, now,
    images over http allowed only where private URLs are (``ALLOW_PRIVATE_URLS``); ``client``
    is closed after.

    :param reply_url: where the vendor posts the callbacks (``settings.reply_url``, read by
        the caller so that its ``ConfigError`` is answered before anything is stored).
    :param submit: :func:`submit_task`, or a wrapper with its signature
        (:func:`receiver.idempotency.once`).
    :raises: what :func:`submit_task` raises.
    """
    with client:
        return submit(
            rt.engine,
            client=client,
            signer=rt.signer,
            reply_url=reply_url,
            submission=order,
            now=utcnow(),
            allow_http_images=rt.settings.allow_private_urls,
        )


def image_slots(first: T | None, middle: T | None, last: T | None) -> dict[str, T]:
    """The images given (``first``, ``middle``, ``last``), by slot; those not given left out."""
    return {
        slot: source
        for slot, source in (("first", first), ("middle", middle), ("last", last))
        if source
    }


def _record_submit_error(
    engine: Engine,
    job_id: str,
    exc: Exception,
    now: datetime,
    *,
    final: bool,
    advice: str | None = None,
) -> None:
    error: dict[str, Any] = {
        "type": type(exc).__name__,
        "message": str(exc),
        "http_status": getattr(exc, "http_status", None),
        "code": getattr(exc, "code", None),
    }
    if advice:
        error["advice"] = advice
    with UnitOfWork(engine) as uow:
        values: dict[str, Any] = {"submit_error": error, "updated_at": now}
        job = uow.repo.get_job(job_id, for_update=True)
        if final and job is not None and job.status == TaskStatus.SUBMITTING.value:
            values.update(status=TaskStatus.SUBMIT_FAILED.value, error=error, finished_at=now)
        uow.repo.update_job(job_id, **values)
        uow.commit()
