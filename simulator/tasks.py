"""Task objects shaped like useapi.net's, and the sequence of states a simulated task goes through.

The shapes follow the task model of useapi.net's ``POST /v1/runwayml/gen3turbo/create`` page
(``/work/shared/vendor-docs/useapi-runwayml-gen3turbo-create.txt``). Every object also carries a
``simulatorNote`` field the vendor does not send, so consumers prove they keep unknown fields.
"""

from __future__ import annotations

import copy
import hashlib
import random
import uuid as uuidlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from simulator.config import SimulatorConfig
from simulator.validation import CAMERA_KEYS, CreateRequest, Directives

USER_ID = "1234"
ACCOUNT_EMAIL = "sim@example.com"
SIMULATOR_NOTE = "added by the runway-relay simulator; not a useapi.net field"
FAKE_FILE_SIZE = "1234567"

MODEL_LABELS = {
    "gen3a_turbo": "Gen-3 Alpha Turbo",
    "gen4_turbo": "Gen-4 Turbo",
    "gen4.5": "Gen-4.5",
    "gen4": "Gen-4",
    "seedance-2": "Seedance 2",
}


def isoformat(moment: datetime) -> str:
    """``2024-08-01T01:02:03.456Z``: UTC with milliseconds, as the vendor writes times."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_task_id(task_uuid: str, account: str = ACCOUNT_EMAIL) -> str:
    """A task id in the vendor's ``user:…-runwayml:<account email>-task:<uuid>`` form."""
    return f"user:{USER_ID}-runwayml:{account}-task:{task_uuid}"


def new_asset_id(asset_uuid: str, account: str = ACCOUNT_EMAIL) -> str:
    """An asset id in the vendor's ``user:…-runwayml:<account email>-asset:<uuid>`` form."""
    return f"user:{USER_ID}-runwayml:{account}-asset:{asset_uuid}"


def asset_url(base_url: str, asset_id: str) -> str:
    """Where ``GET /_sim/assets/<uuid>`` serves an uploaded image."""
    return f"{base_url}/_sim/assets/{asset_id.rsplit(':', 1)[-1]}"


@dataclass(frozen=True)
class TaskPlan:
    """How one task runs: its timings and ending, fixed when it is created. Times in seconds."""

    progress_steps: int
    step_delay: float
    start_delay: float
    outcome: str
    duplicate_terminal: bool
    shuffle: bool
    callback_timeout: float
    callback_retries: int
    callback_retry_delay: float

    @classmethod
    def from_config(cls, config: SimulatorConfig, directives: Directives) -> TaskPlan:
        """The app's settings, overridden by the ``[sim:...]`` directives of this task's prompt."""

        def pick(override: Any, default: Any) -> Any:
            return default if override is None else override

        return cls(
            progress_steps=pick(directives.progress_steps, config.progress_steps),
            step_delay=pick(directives.step_delay, config.step_delay),
            start_delay=pick(directives.start_delay, config.start_delay),
            outcome=pick(directives.outcome, config.outcome),
            duplicate_terminal=pick(directives.duplicate_terminal, config.duplicate_terminal),
            shuffle=pick(directives.shuffle, config.shuffle),
            callback_timeout=config.callback_timeout,
            callback_retries=config.callback_retries,
            callback_retry_delay=config.callback_retry_delay,
        )


def build_task(
    req: CreateRequest,
    base_url: str,
    now: datetime,
    rng: random.Random,
    account: str = ACCOUNT_EMAIL,
) -> dict[str, Any]:
    """The task object a create answers with: status ``PENDING``, options echoing the request;
    its ``taskId`` names the ``account`` that runs it."""
    task_uuid = str(uuidlib.uuid4())
    seed = req.seed if req.seed is not None else rng.randint(1, 4294967294)
    label = MODEL_LABELS.get(req.task_type, req.task_type)
    prompt = req.text_prompt or ""
    name = f"{label} {seed}" + (f", {prompt[:40]}" if prompt else "")
    width, height = req.dimensions

    keyframes: list[dict[str, Any]] = []
    frames = ((req.first_asset, 0), (req.middle_asset, 0.5), (req.last_asset, 1))
    for asset_id, timestamp in frames:
        if asset_id:
            keyframes.append({"image": asset_url(base_url, asset_id), "timestamp": timestamp})

    options: dict[str, Any] = {
        "name": name,
        "seconds": req.seconds,
        "text_prompt": prompt,
        "seed": seed,
        "exploreMode": req.explore_mode,
        "watermark": False,
        "enhance_prompt": True,
        "width": width,
        "height": height,
        "aspect_ratio": req.aspect_ratio,
        "flip": req.aspect_ratio == "portrait",
        "keyframes": keyframes,
        "assetGroupName": "Generative Video",
        "recordingEnabled": True,
    }
    if keyframes:
        options["init_image"] = keyframes[0]["image"]
    if req.model is not None:
        options["model"] = req.model
    if req.resolution is not None:
        options["resolution"] = req.resolution
    if req.references:
        options["references"] = [asset_url(base_url, a) for a in req.references]
    if req.static or req.motion:
        camera: dict[str, Any] = {key: 0 for key in CAMERA_KEYS.values()}
        for field_name, value in req.motion.items():
            camera[CAMERA_KEYS[field_name]] = value
        camera["static"] = req.static
        options["camera"] = camera

    stamp = isoformat(now)
    return {
        "taskId": new_task_id(task_uuid, account),
        "id": task_uuid,
        "name": name,
        "image": None,
        "createdAt": stamp,
        "updatedAt": stamp,
        "taskType": req.task_type,
        "options": options,
        "status": "PENDING",
        "error": None,
        "progressText": None,
        "progressRatio": None,
        "estimatedTimeToStartSeconds": 0,
        "artifacts": [],
        "sharedAsset": None,
        "features": {
            "storageGB": 500,
            "numPlanCredits_permitted": 2250,
            "numPlanCredits_used": rng.randint(0, 2000),
        },
        "simulatorNote": SIMULATOR_NOTE,
        "replyUrl": req.reply_url,
        "replyRef": req.reply_ref,
        "code": 200,
    }


def build_artifact(task: dict[str, Any], base_url: str, now: datetime) -> dict[str, Any]:
    """One artifact of a finished task; its URL is served by ``GET /_sim/artifacts/<name>``."""
    artifact_uuid = str(uuidlib.uuid4())
    expires = int((now + timedelta(days=1)).timestamp())
    signature = hashlib.sha256(f"{task['taskId']}|{artifact_uuid}|{expires}".encode()).hexdigest()
    query = f"sig={signature[:40]}&expires={expires}"
    options = task.get("options") or {}
    width = int(options.get("width", 1280))
    height = int(options.get("height", 768))
    return {
        "id": artifact_uuid,
        "assetId": new_asset_id(artifact_uuid),
        "url": f"{base_url}/_sim/artifacts/{artifact_uuid}.mp4?{query}",
        "filename": f"{task.get('name', 'video')}.mp4",
        "fileSize": FAKE_FILE_SIZE,
        "previewUrls": [f"{base_url}/_sim/artifacts/{artifact_uuid}.jpg?{query}"],
        "metadata": {
            "frameRate": 24,
            "duration": options.get("seconds", 5),
            "dimensions": [width, height],
            "size": {"width": width, "height": height},
        },
    }


def _ratio(value: float, as_string: bool) -> float | str:
    rounded = round(value, 2)
    return f"{rounded:g}" if as_string else rounded


def build_sequence(
    task: dict[str, Any], plan: TaskPlan, base_url: str, created: datetime
) -> list[dict[str, Any]]:
    """The task objects in the order the task lives them: progress steps, then the terminal one.

    ``progressRatio`` alternates between a string (first, third, …) and a number; the first progress
    state is ``THROTTLED`` when there are three steps or more, the others ``RUNNING``. ``updatedAt``
    is the planned time of each state.
    """
    states: list[dict[str, Any]] = []
    steps = plan.progress_steps
    last_ratio: float | str | None = None
    for index in range(steps):
        ratio = (index + 1) / (steps + 1)
        state = copy.deepcopy(task)
        throttled = index == 0 and steps >= 3
        state["status"] = "THROTTLED" if throttled else "RUNNING"
        state["progressRatio"] = last_ratio = _ratio(ratio, as_string=index % 2 == 0)
        state["progressText"] = "Waiting in queue" if throttled else f"Generating ({ratio:.0%})"
        state["estimatedTimeToStartSeconds"] = 3 if throttled else None
        moment = created + timedelta(seconds=plan.start_delay + index * plan.step_delay)
        state["updatedAt"] = isoformat(moment)
        states.append(state)

    final = copy.deepcopy(task)
    moment = created + timedelta(seconds=plan.start_delay + steps * plan.step_delay)
    final["updatedAt"] = isoformat(moment)
    final["estimatedTimeToStartSeconds"] = None
    final["progressText"] = None
    if plan.outcome == "succeeded":
        final["status"] = "SUCCEEDED"
        final["progressRatio"] = "1"
        final["artifacts"] = [build_artifact(task, base_url, moment)]
    elif plan.outcome == "moderated":
        final["status"] = "FAILED"
        final["progressRatio"] = last_ratio
        final["error"] = {
            "errorMessage": "This prompt or image was flagged by content moderation (simulated).",
            "reason": "SAFETY.INPUT.TEXT",
            "message": "Moderated",
            "moderation_category": "VIOLENCE",
            "tally_asimov": True,
        }
    else:
        final["status"] = "FAILED"
        final["progressRatio"] = last_ratio
        final["error"] = "Generation failed (simulated): the model could not render this request."
    states.append(final)
    return states
