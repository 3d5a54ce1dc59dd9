"""The useapi.net look-alike routes: assets, the three create endpoints, tasks, the scheduler
and the accounts.

The app root stands for ``https://api.useapi.net/v1/runwayml``. Every route here needs
``Authorization: Bearer <token>``. As the vendor does (``useapi-2026.md``): with several accounts
configured, every upload, create and lookup must name one with ``email`` (400 otherwise), and an
asset is usable only by the account that uploaded it; the scheduler is ``/scheduler/`` (no
slashless alias); task ids in paths must keep ``:`` and ``@`` raw (percent-encoded, they do not
match).
"""

from __future__ import annotations

import hmac
import json
import re
import socket
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
    """Refuse any vendor route without ``Authorization: Bearer <token>`` (401); log the
    request's method, path and ``email`` (query, or a JSON body's) for ``GET /_sim/requests``."""
    state = get_state()
    expected = f"Bearer {state.get_config().token}"
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return error_response(401, {"error": "Unauthorized", "code": 401})
    email = request.args.get("email")
    if email is None and request.mimetype == "application/json":
        body = request.get_json(silent=True, cache=True)
        if isinstance(body, dict) and isinstance(body.get("email"), str):
            email = body["email"]
    state.log_request(request.method, request.path, email)
    return None


def account_of(state: SimulatorState, email: Any) -> str:
    """The account a call runs under: ``email`` when given, else the only configured one.

    :raise RequestError: 400 when several accounts are configured and no ``email`` is given,
        or ``email`` is not a configured account.
    """
    accounts = state.get_config().accounts
    if email is None or email == "":
        if len(accounts) > 1:
            raise RequestError(
                400,
                "Parameter email is required: multiple accounts are configured "
                f"({', '.join(accounts)})",
            )
        return accounts[0]
    if not isinstance(email, str) or email not in accounts:
        raise RequestError(400, f"Account {email} is not configured")
    return email


def counted_call(counter: str) -> tuple[SimulatorState, str]:
    """The state and the account of a call that names its account in the query (``?email=``),
    after counting the call under ``counter`` (``/_sim/stats``).

    :raise RequestError: 400 as :func:`account_of` (the call is counted all the same).
    """
    state = get_state()
    state.count(counter)
    return state, account_of(state, request.args.get("email"))


_ENCODED_ID = re.compile(r"%3a|%40", re.IGNORECASE)


def raw_id_or_404(task_id: str) -> Response | None:
    """404 when the path carried ``:`` or ``@`` percent-encoded (the vendor's path match fails
    then), else None."""
    raw = str(request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or "")
    if _ENCODED_ID.search(raw.split("?", 1)[0]):
        message = f"Task {task_id} not found (':' and '@' must not be percent-encoded)"
        return error_response(404, {"error": message, "code": 404})
    return None


# -- assets ---------------------------------------------------------------------------------


@bp.post("/assets/", strict_slashes=False)
def upload_asset() -> ResponseReturnValue:
    """``POST /assets/?name=NAME``: the body is the raw image (PNG, JPEG or GIF).

    :raise 400: no name, an unsupported Content-Type, an empty body or bytes of another type.
    """
    state, account = counted_call("uploads")
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
        asset_id=new_asset_id(asset_uuid, account),
        uuid=asset_uuid,
        name=name,
        content_type=content_type,
        data=data,
        width=size[0] if size else None,
        height=size[1] if size else None,
        created_at=isoformat(datetime.now(UTC)),
        account=account,
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


def busy_response(
    state: SimulatorState, jobs: int, retry_after: float | None, account: str = ACCOUNT_EMAIL
) -> Response:
    """429 "Account … is busy executing N tasks", listing the account's live tasks under
    ``runningTasks``."""
    running = [
        {
            "email": account,
            "taskId": task["taskId"],
            "id": task["id"],
            "replyUrl": task.get("replyUrl"),
            "replyRef": task.get("replyRef"),
        }
        for task in state.live_tasks(account)[:10]
    ]
    body = {
        "error": f"Account {account} is busy executing {jobs} tasks",
        "runningTasks": {account: running},
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
    forced_error = queued is not None and queued.kind not in (
        "ok",
        "lose_answer",
        "drop_connection",
        "wrapped",
    )
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
    account = account_of(state, data.get("email"))

    def usable(asset_id: str) -> bool:  # an asset belongs to the account that uploaded it
        asset = state.get_asset(asset_id)
        return asset is not None and asset.account == account

    req = parse_create(endpoint, data, form, usable)
    directives = parse_directives(req.text_prompt)
    if config.max_jobs is not None:
        limit = req.max_jobs or config.max_jobs
        if len(state.live_tasks(account)) >= limit:
            return busy_response(state, limit, None, account)

    plan = TaskPlan.from_config(config, directives)
    root = base_url(state)
    now = datetime.now(UTC)
    task = build_task(req, root, now, state.rng, account)
    states = build_sequence(task, plan, root, now)
    state.add_task(task, account)
    state.count("tasks_created")
    start_task(state, str(task["taskId"]), states, plan, req.reply_url)
    kind = queued.kind if queued is not None else None
    if kind == "lose_answer":
        # The task exists and runs; the answer comes too late for the client's read timeout.
        state.stop_event.wait(queued.lose_answer_seconds if queued else 0)
    if kind == "drop_connection":
        # The task exists and runs; the connection closes before any answer is written.
        drop_connection()
    if kind == "wrapped" or config.wrap_answers:
        return jsonify({"task": task, "code": 200})
    return jsonify(task)


def drop_connection() -> None:
    """Shut the client's connection down now (no answer; werkzeug's own write then fails
    quietly). Only under werkzeug's server, which exposes the socket."""
    sock = request.environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


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
    state, account = counted_call("status_requests")
    encoded = raw_id_or_404(task_id)
    if encoded is not None:
        return encoded
    task = state.get_task(task_id)
    if task is None or state.task_account(task_id) != account:
        return error_response(404, {"error": f"Task {task_id} not found", "code": 404})
    return jsonify(task)


@bp.get("/scheduler")
def scheduler_without_slash() -> ResponseReturnValue:
    """``GET /scheduler`` (no trailing slash) is not a vendor route: 404."""
    message = "Not found: the scheduler is GET /scheduler/ (with a trailing slash)"
    return error_response(404, {"error": message, "code": 404})


@bp.get("/scheduler/")
def list_scheduler() -> ResponseReturnValue:
    """``GET /scheduler/``: ``[{taskId, replyUrl, replyRef}]`` for the account's tracked,
    unfinished tasks."""
    state, account = counted_call("scheduler_requests")
    return jsonify(
        [
            {
                "taskId": task["taskId"],
                "replyUrl": task.get("replyUrl"),
                "replyRef": task.get("replyRef"),
            }
            for task in state.live_tasks(account)
        ]
    )


@bp.get("/accounts")
def list_accounts() -> ResponseReturnValue:
    """``GET /accounts``: the configured accounts keyed by email, each with its pending
    ``error`` when it has one (config ``account_errors``)."""
    config = get_state().get_config()
    body: dict[str, Any] = {}
    for email in config.accounts:
        item: dict[str, Any] = {"email": email, "maxJobs": 5, "created": "2026-06-01T00:00:00Z"}
        if email in config.account_errors:
            item["error"] = config.account_errors[email]
        body[email] = item
    return jsonify(body)


@bp.delete("/scheduler/<path:task_id>")
def delete_scheduler(task_id: str) -> ResponseReturnValue:
    """``DELETE /scheduler/<taskId>``: stop tracking; no further callback is posted.

    :raise 404: the task is unknown, finished or no longer tracked.
    """
    state, account = counted_call("scheduler_requests")
    encoded = raw_id_or_404(task_id)
    if encoded is not None:
        return encoded
    if state.task_account(task_id) != account or not state.untrack(task_id):
        message = f"Task {task_id} not found in scheduler"
        return error_response(404, {"error": message, "code": 404})
    return jsonify({"taskId": task_id, "deleted": True, "code": 200})
