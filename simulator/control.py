"""Test-control routes under ``/_sim`` (no auth): stats, outcome queue, config, callbacks, files."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulator.callbacks import post_callback
from simulator.state import OUTCOME_KINDS, QueuedOutcome
from simulator.validation import RequestError
from simulator.vendor import error_response, get_state

bp = Blueprint("control", __name__, url_prefix="/_sim")

# A few bytes that start like an MP4 file (an ``ftyp`` box and an empty ``free`` box).
FAKE_MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom\x00\x00\x00\x08free"
# The smallest header-and-end-marker JPEG stand-in for preview URLs.
FAKE_JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"


class NextOutcomes(BaseModel):
    """Body of ``POST /_sim/next``; seconds for ``retry_after`` and ``lose_answer_seconds``."""

    model_config = ConfigDict(extra="forbid")

    outcomes: list[str | int] = Field(default_factory=list)
    retry_after: float | None = Field(default=None, ge=0)
    lose_answer_seconds: float = Field(default=2.0, ge=0, le=600)
    clear: bool = False


def validation_message(error: ValidationError) -> str:
    """A one-line summary of a pydantic error."""
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def json_object() -> dict[str, Any]:
    """The request body as a JSON object (an empty body counts as ``{}``).

    :raise RequestError: 400 for anything else.
    """
    if not request.get_data(cache=True).strip():
        return {}
    data = request.get_json(silent=True, force=True)
    if not isinstance(data, dict):
        raise RequestError(400, "Request body must be a JSON object")
    return data


@bp.get("/stats")
def stats() -> ResponseReturnValue:
    """Request counters, callback counters and every task's status."""
    return jsonify(get_state().stats())


@bp.get("/creates")
def creates() -> ResponseReturnValue:
    """The last 200 decoded create bodies as ``[{endpoint, body}]`` (``?endpoint=videos`` keeps
    one endpoint's), whether or not they were accepted."""
    return jsonify(get_state().logged_creates(request.args.get("endpoint")))


@bp.get("/requests")
def requests_log() -> ResponseReturnValue:
    """The last 500 vendor requests as ``[{method, path, email}]`` (``email`` from the query or
    the JSON body, or null), oldest first."""
    return jsonify(get_state().logged_requests())


@bp.route("/next", methods=["GET", "POST"])
def next_outcomes() -> ResponseReturnValue:
    """Queue outcomes for the next create calls (FIFO) or, with GET, show the queue.

    Outcomes: ``ok``, ``400``, ``401``, ``404``, ``412``, ``422``, ``429`` (= ``429_busy``),
    ``429_runway``, ``500``, ``lose_answer`` (answer after ``lose_answer_seconds``),
    ``drop_connection`` (the task starts, the connection closes unanswered), ``wrapped``
    (answer ``{"task": {...}, "code": 200}``).

    :raise 400: an unknown outcome or a bad field.
    """
    state = get_state()
    if request.method == "GET":
        return jsonify({"queued": state.queued_outcomes()})
    try:
        body = NextOutcomes.model_validate(json_object())
    except ValidationError as exc:
        raise RequestError(400, validation_message(exc)) from None
    kinds = [str(item).strip().lower().replace("-", "_") for item in body.outcomes]
    unknown = [kind for kind in kinds if kind not in OUTCOME_KINDS]
    if unknown:
        raise RequestError(400, f"Unknown outcome(s): {', '.join(unknown)}")
    items = [
        QueuedOutcome(
            kind=kind,
            retry_after=body.retry_after,
            lose_answer_seconds=body.lose_answer_seconds,
        )
        for kind in kinds
    ]
    return jsonify({"queued": state.push_outcomes(items, clear=body.clear)})


@bp.route("/config", methods=["GET", "POST"])
def config() -> ResponseReturnValue:
    """Show or update the configuration; POST takes any :class:`SimulatorConfig` fields.

    :raise 400: an unknown field or a bad value (nothing changes).
    """
    state = get_state()
    if request.method == "POST":
        try:
            state.set_config(state.get_config().updated(json_object()))
        except ValidationError as exc:
            raise RequestError(400, validation_message(exc)) from None
    return jsonify(state.get_config().model_dump())


@bp.get("/callbacks")
def callbacks() -> ResponseReturnValue:
    """Every callback attempt so far (``?taskId=`` keeps one task's)."""
    task_id = request.args.get("taskId")
    return jsonify([attempt.to_json() for attempt in get_state().callback_attempts(task_id)])


@bp.post("/tasks/<path:task_id>/callback")
def extra_callback(task_id: str) -> ResponseReturnValue:
    """Post one extra callback now: the task object overlaid with the body's fields.

    The stored task does not change. The callback goes to the body's ``replyUrl`` if it has one,
    else to the task's. Answers with the attempt and the body that was sent.

    :raise 404: unknown task. :raise 400: no replyUrl to post to.
    """
    state = get_state()
    task = state.get_task(task_id)
    if task is None:
        return error_response(404, {"error": f"Task {task_id} not found", "code": 404})
    overlay = json_object()
    body = {**task, **overlay}
    url = body.get("replyUrl")
    if not isinstance(url, str) or not url:
        raise RequestError(400, "The task has no replyUrl to post to")
    attempt = post_callback(
        state, task_id, url, body, timeout=state.get_config().callback_timeout, extra=True
    )
    return jsonify({"attempt": attempt.to_json(), "body": body})


@bp.post("/reset")
def reset() -> ResponseReturnValue:
    """Forget tasks, assets, counters, callbacks and queued outcomes; the config stays."""
    get_state().reset()
    return jsonify({"reset": True})


@bp.get("/artifacts/<path:name>")
def artifact(name: str) -> ResponseReturnValue:
    """A few bytes standing for a generated video (``.jpg``: a preview image)."""
    if name.lower().endswith((".jpg", ".jpeg")):
        return Response(FAKE_JPEG, mimetype="image/jpeg")
    return Response(FAKE_MP4, mimetype="video/mp4")


@bp.get("/assets/<name>")
def asset(name: str) -> ResponseReturnValue:
    """The bytes of an uploaded image, by the uuid part of its asset id.

    :raise 404: no such asset.
    """
    found = get_state().find_asset_by_uuid(name.rsplit(".", 1)[0])
    if found is None:
        return error_response(404, {"error": f"Asset {name} not found", "code": 404})
    return Response(found.data, mimetype=found.content_type)
