"""The useapi.net look-alike routes: assets, the three create endpoints, tasks and the scheduler.

The app root stands for ``https://api.useapi.net/v1/runwayml``. Every route here needs
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import json
import uuid as uuidlib
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from simulator import images
from simulator.callbacks import start_task
from simulator.state import Asset, QueuedOutcome, SimulatorState
from simulator.tasks import (
    ACCOUNT_EMAIL,
    TaskPlan,
    asset_url,
    build_sequence,
    build_task,
    isoformat,
    new_asset_id,
)
from simulator.validation import Endpoint, RequestError, parse_create, parse_directives

bp = Blueprint("vendor", __name__)

CREDITS_MESSAGE = "You do not have enough credits to run this task."
RUNWAY_BUSY_MESSAGE = (
    "You have too many tasks running or pending. "
    "Please wait for some of them to finish before starting more."
)


def get_state() -> SimulatorState:
    """The state of the app serving the current request."""
    state = current_app.extensions["simulator"]
    assert isinstance(state, SimulatorState)
    return state


def error_response(status: int, body: dict[str, Any]) -> Response:
    """A JSON error answer with ``status``."""
    response = jsonify(body)
    response.status_code = status
    return response


def base_url(state: SimulatorState) -> str:
    """Root of the URLs the simulator hands out: ``public_url`` or the URL of this request."""
    public = state.get_config().public_url
    return (public or request.url_root).rstrip("/")


@bp.before_request
def require_token() -> ResponseReturnValue | None:
    """Refuse any vendor route without ``Authorization: Bearer <token>`` (401)."""
    expected = f"Bearer {get_state().get_config().token}"
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return error_response(401, {"error": "Unauthorized", "code": 401})
    return None


# -- assets ---------------------------------------------------------------------------------


@bp.post("/assets/", strict_slashes=False)
def upload_asset() -> ResponseReturnValue:
    """``POST /assets/?name=NAME``: the body is the raw image (PNG, JPEG or GIF).

    :raise 400: no name, an unsupported Content-Type, an empty body or bytes of another type.
    """
    state = get_state()
    state.count("uploads")
    name = request.args.get("name", "").strip()
    if not name:
        raise RequestError(400, "Parameter name is required")
    content_type = request.mimetype
    if content_type not in images.SIGNATURES:
        shown = content_type or "(none)"
        raise RequestError(
            400, f"Content-Type {shown} is not supported, use image/png, image/jpeg or image/gif"
        )
    data = request.get_data(cache=False)
    if not data:
        raise RequestError(400, "Request body is empty")
    if not images.matches(data, content_type):
        raise RequestError(400, f"Request body is not a valid {content_type} image")
    asset_uuid = str(uuidlib.uuid4())
    size = images.dimensions(data, content_type)
    asset = Asset(
        asset_id=new_asset_id(asset_uuid),
        uuid=asset_uuid,
        name=name,
        content_type=content_type,
        data=data,
        width=size[0] if size else None,
        height=size[1] if size else None,
        created_at=isoformat(datetime.now(UTC)),
    )
    state.add_asset(asset)
    url = asset_url(base_url(state), asset.asset_id)
    return jsonify(
        {
            "assetId": asset.asset_id,
            "id": asset_uuid,
            "name": name,
            "mediaType": "image",
            "url": url,
            "previewUrls": [url],
            "fileSize": str(len(data)),
            "width": asset.width,
            "height": asset.height,
            "createdAt": asset.created_at,
        }
    )


# -- create -----------------------------------------------------------------------------------


def read_body() -> tuple[dict[str, Any], bool]:
    """The create body as a dict, and whether it came as form fields (values are strings).

    :raise RequestError: 400 when a JSON body does not decode to an object.
    """
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return request.form.to_dict(), True
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}, False
    try:
        data = json.loads(raw)
    except ValueError:
        raise RequestError(400, "Request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise RequestError(400, "Request body must be a JSON object")
    return data, False


def busy_response(state: SimulatorState, jobs: int, retry_after: float | None) -> Response:
    """429 "Account … is busy executing N tasks", listing the live tasks under ``runningTasks``."""
    running = [
        {
            "email": ACCOUNT_EMAIL,
            "taskId": task["taskId"],
            "id": task["id"],
            "replyUrl": task.get("replyUrl"),
            "replyRef": task.get("replyRef"),
        }
        for task in state.live_tasks()[:10]
    ]
    body = {
        "error": f"Account {ACCOUNT_EMAIL} is busy executing {jobs} tasks",
        "runningTasks": {ACCOUNT_EMAIL: running},
        "code": 429,
    }
    return with_retry_after(error_response(429, body), retry_after)


def with_retry_after(response: Response, retry_after: float | None) -> Response:
    """Add a ``Retry-After`` header (seconds) when one was asked for."""
    if retry_after is not None:
        whole = int(retry_after)
        response.headers["Retry-After"] = str(whole if whole == retry_after else retry_after)
    return response


def queued_response(state: SimulatorState, item: QueuedOutcome, data: dict[str, Any]) -> Response:
    """The answer a queued error outcome stands for (see ``POST /_sim/next``)."""
    kind = item.kind
    if kind == "400":
        return error_response(400, {"error": "Invalid request (simulated)", "code": 400})
    if kind == "401":
        return error_response(401, {"error": "Unauthorized", "code": 401})
    if kind == "404":
        asset = data.get("firstImage_assetId", data.get("imageAssetId1"))
        if not isinstance(asset, str) or not asset:
            asset = new_asset_id(str(uuidlib.uuid4()))
        message = f"Unable to retrieve assetId {asset} (Not found.)"
        return error_response(404, {"error": message, "code": 404})
    if kind == "412":
        return error_response(412, {"error": CREDITS_MESSAGE})
    if kind == "422":
        message = "Your prompt or image did not pass content moderation (simulated)."
        return error_response(422, {"error": message, "code": 422})
    if kind in ("429", "429_busy"):
        return busy_response(state, 5, item.retry_after)
    if kind == "429_runway":
        return with_retry_after(
            error_response(429, {"error": RUNWAY_BUSY_MESSAGE}), item.retry_after
        )
    return error_response(500, {"error": "Internal Server Error (simulated)", "code": 500})


def create(endpoint: Endpoint) -> ResponseReturnValue:
    """Shared body of the create routes: queued outcome, validation, task, callbacks."""
    state = get_state()
    state.count("creates")
    state.count(f"creates_{endpoint}")
    queued = state.pop_outcome()
    forced_error = queued is not None and queued.kind not in ("ok", "lose_answer")
    try:
        data, form = read_body()
    except RequestError:
        if queued is not None and forced_error:
            return queued_response(state, queued, {})
        raise
    state.log_create(endpoint, data)
    if queued is not None and forced_error:
        return queued_response(state, queued, data)

    config = state.get_config()
    req = parse_create(endpoint, data, form, lambda asset: state.get_asset(asset) is not None)
    directives = parse_directives(req.text_prompt)
    if config.max_jobs is not None:
        limit = req.max_jobs or config.max_jobs
        if len(state.live_tasks()) >= limit:
            return busy_response(state, limit, None)

    plan = TaskPlan.from_config(config, directives)
    root = base_url(state)
    now = datetime.now(UTC)
    task = build_task(req, root, now, state.rng)
    states = build_sequence(task, plan, root, now)
    state.add_task(task)
    state.count("tasks_created")
    start_task(state, str(task["taskId"]), states, plan, req.reply_url)
    if queued is not None and queued.kind == "lose_answer":
        # The task exists and runs; the answer comes too late for the client's read timeout.
        state.stop_event.wait(queued.lose_answer_seconds)
    return jsonify(task)


@bp.post("/gen3turbo/create")
def gen3turbo_create() -> ResponseReturnValue:
    """``POST /gen3turbo/create`` (JSON or multipart/form-data): a Gen-3 Alpha Turbo task.

    :raise 400: a bad field, static with motion, replyUrl/replyRef over 1024 characters.
    :raise 404: an asset id that was never uploaded.
    """
    return create("gen3turbo")


@bp.post("/gen4turbo/create")
def gen4turbo_create() -> ResponseReturnValue:
    """``POST /gen4turbo/create``: a Gen-4 Turbo task; ``firstImage_assetId`` is required.

    :raise 400: a bad or unsupported field (camera motion, middle or last image).
    :raise 404: an asset id that was never uploaded.
    """
    return create("gen4turbo")


@bp.post("/videos/create")
def videos_create() -> ResponseReturnValue:
    """``POST /videos/create``: the unified endpoint; ``model`` is required, checked per model.

    :raise 400: no or unknown model, an unknown field, a value the model does not take.
    :raise 404: an asset id that was never uploaded.
    """
    return create("videos")


# -- tasks and scheduler ----------------------------------------------------------------------


@bp.get("/tasks/<path:task_id>")
def get_task(task_id: str) -> ResponseReturnValue:
    """``GET /tasks/<taskId>``: the current task object (counted as a status request).

    :raise 404: unknown task id.
    """
    state = get_state()
    state.count("status_requests")
    task = state.get_task(task_id)
    if task is None:
        return error_response(404, {"error": f"Task {task_id} not found", "code": 404})
    return jsonify(task)


@bp.get("/scheduler")
@bp.get("/scheduler/")
def list_scheduler() -> ResponseReturnValue:
    """``GET /scheduler``: ``[{taskId, replyUrl, replyRef}]`` for the tracked, unfinished tasks."""
    state = get_state()
    state.count("scheduler_requests")
    return jsonify(
        [
            {
                "taskId": task["taskId"],
                "replyUrl": task.get("replyUrl"),
                "replyRef": task.get("replyRef"),
            }
            for task in state.live_tasks()
        ]
    )


@bp.delete("/scheduler/<path:task_id>")
def delete_scheduler(task_id: str) -> ResponseReturnValue:
    """``DELETE /scheduler/<taskId>``: stop tracking; no further callback is posted.

    :raise 404: the task is unknown, finished or no longer tracked.
    """
    state = get_state()
    state.count("scheduler_requests")
    if not state.untrack(task_id):
        message = f"Task {task_id} not found in scheduler"
        return error_response(404, {"error": message, "code": 404})
    return jsonify({"taskId": task_id, "deleted": True, "code": 200})
