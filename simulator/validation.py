"""Validation of create requests, the way useapi.net answers them (SPEC section 1).

``parse_create`` turns a decoded body (JSON object or multipart/form-data fields) into a
:class:`CreateRequest` or raises :class:`RequestError` with the status and message the vendor would
send. Every endpoint refuses unknown fields with 400, as useapi.net does.

``POST /videos/create`` checks each model's fields and values against the simulator's own copy
of the vendor's documented table (:mod:`simulator.vendor_facts`, not our client's table): a field
the model's row does not list is refused with 400, as are values outside the row. The vendor
offers more models (Veo, Sora, Wan, …) whose rows were not readable; the simulator answers 400
for them, naming the models it knows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from simulator.vendor_facts import VIDEO_MODEL_FACTS, video_fields

Endpoint = Literal["gen3turbo", "gen4turbo", "videos"]

SEED_MIN = 1
SEED_MAX = 4294967294
REPLY_MAX_LENGTH = 1024
MOTION_FIELDS = ("horizontal", "vertical", "roll", "zoom", "pan", "tilt")
CAMERA_KEYS = {
    "horizontal": "x",
    "vertical": "y",
    "roll": "r",
    "zoom": "z",
    "pan": "bg_x_pan",
    "tilt": "bg_y_pan",
}
GEN3_RATIOS = ("landscape", "portrait")
GEN4_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9")
DIMENSIONS: dict[str, tuple[int, int]] = {
    "landscape": (1280, 768),
    "portrait": (768, 1280),
    "16:9": (1280, 720),
    "9:16": (720, 1280),
    "1:1": (960, 960),
    "4:3": (1104, 832),
    "3:4": (832, 1104),
    "21:9": (1584, 672),
}

GEN4_FIELDS = frozenset(
    {
        "email",
        "firstImage_assetId",
        "text_prompt",
        "aspect_ratio",
        "seconds",
        "seed",
        "exploreMode",
        "replyUrl",
        "replyRef",
        "maxJobs",
    }
)
#: Gen-3 Alpha Turbo takes every field Gen-4 Turbo takes, and middle and last frames and motion.
GEN3_FIELDS = GEN4_FIELDS | {
    "middleImage_assetId",
    "lastImage_assetId",
    *MOTION_FIELDS,
    "static",
}


@dataclass(frozen=True)
class VideoModel:
    """What ``POST /videos/create`` accepts for one ``model`` (a row of
    :data:`simulator.vendor_facts.VIDEO_MODEL_FACTS`).

    ``durations`` in seconds; ``ratios`` with a start frame, ``text_ratios`` without one;
    ``images`` the (least, most) reference images; ``prompt_max`` in characters (None: no
    limit documented); ``task_type`` is the task object's ``taskType``; ``fields`` every field
    the row lets through.
    """

    task_type: str
    durations: tuple[int, ...]
    ratios: tuple[str, ...]
    text_ratios: tuple[str, ...]
    resolutions: tuple[str, ...]
    images: tuple[int, int]
    image_fields: tuple[str, ...]
    keyframe_fields: tuple[str, ...]
    video_fields: tuple[str, ...]
    prompt_required: bool
    prompt_max: int | None
    fields: frozenset[str]

    @property
    def default_duration(self) -> int:
        """5 s when the model offers it, else its shortest."""
        return 5 if 5 in self.durations else self.durations[0]


#: The models the simulator plays, by their exact vendor name (no aliases, no case folding).
VIDEO_MODELS: dict[str, VideoModel] = {
    name: VideoModel(
        task_type=facts["task_type"],
        durations=tuple(facts["durations"]),
        ratios=tuple(facts["ratios"]),
        text_ratios=tuple(facts["text_ratios"]),
        resolutions=tuple(facts["resolutions"]),
        images=(facts["images"][0], facts["images"][1]),
        image_fields=tuple(facts["image_fields"]),
        keyframe_fields=tuple(facts["keyframe_fields"]),
        video_fields=tuple(facts["video_fields"]),
        prompt_required=facts["prompt_required"],
        prompt_max=facts["prompt_max"],
        fields=video_fields(facts),
    )
    for name, facts in VIDEO_MODEL_FACTS.items()
}

DIRECTIVE_RE = re.compile(r"\[sim:([A-Za-z_]+)(?:=([^\]]*))?\]")


class RequestError(Exception):
    """A request the vendor would refuse: ``status`` and the ``error`` message of its JSON body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class CreateRequest:
    """A validated create request, whichever endpoint it came through."""

    endpoint: Endpoint
    task_type: str
    model: str | None = None
    email: str | None = None
    resolution: str | None = None
    first_asset: str | None = None
    middle_asset: str | None = None
    last_asset: str | None = None
    text_prompt: str | None = None
    aspect_ratio: str = "landscape"
    seconds: int = 5
    seed: int | None = None
    explore_mode: bool = False
    static: bool = False
    motion: dict[str, int] = field(default_factory=dict)
    reply_url: str | None = None
    reply_ref: str | None = None
    max_jobs: int | None = None
    references: list[str] = field(default_factory=list)

    @property
    def asset_ids(self) -> list[str]:
        """The asset ids this request refers to, frames in order, then references."""
        frames = [a for a in (self.first_asset, self.middle_asset, self.last_asset) if a]
        return frames + [a for a in self.references if a not in frames]

    @property
    def dimensions(self) -> tuple[int, int]:
        """Width and height of the video, in pixels, from the aspect ratio."""
        if self.aspect_ratio in DIMENSIONS:
            return DIMENSIONS[self.aspect_ratio]
        width, _, height = self.aspect_ratio.partition(":")
        return int(width), int(height)


@dataclass(frozen=True)
class Directives:
    """Per-task overrides read from ``[sim:...]`` markers in the text prompt."""

    outcome: str | None = None
    duplicate_terminal: bool | None = None
    shuffle: bool | None = None
    progress_steps: int | None = None
    step_delay: float | None = None
    start_delay: float | None = None


# -- value coercion -------------------------------------------------------------------------


def _as_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise RequestError(400, f"Parameter {name} must be a string")
    return value


def _as_int(name: str, value: Any, form: bool) -> int:
    if form and isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise RequestError(400, f"Parameter {name} must be an integer") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(400, f"Parameter {name} must be an integer")
    return value


def _as_bool(name: str, value: Any, form: bool) -> bool:
    if form and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off", ""):
            return False
    if isinstance(value, bool):
        return value
    raise RequestError(400, f"Parameter {name} must be a boolean")


def _int_in(name: str, value: Any, form: bool, low: int, high: int) -> int:
    number = _as_int(name, value, form)
    if not low <= number <= high:
        raise RequestError(400, f"Parameter {name} ({number}) must be in range {low}..{high}")
    return number


def _seconds(value: Any, form: bool, allowed: tuple[int, ...], name: str = "seconds") -> int:
    number = _as_int(name, value, form)
    if number not in allowed:
        choices = ", ".join(str(a) for a in allowed)
        raise RequestError(400, f"Parameter {name} ({number}) must be one of {choices}")
    return number


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    text = _as_str(name, value)
    if text not in allowed:
        raise RequestError(400, f"Parameter {name} ({text}) must be one of {', '.join(allowed)}")
    return text


def _reply_url(value: Any) -> str:
    url = _as_str("replyUrl", value)
    if len(url) > REPLY_MAX_LENGTH:
        raise RequestError(400, f"Parameter replyUrl is longer than {REPLY_MAX_LENGTH} characters")
    if not re.match(r"^https?://[^\s/]+", url):
        raise RequestError(400, "Parameter replyUrl must be an http(s) URL")
    return url


def _reply_ref(value: Any) -> str:
    ref = _as_str("replyRef", value)
    if len(ref) > REPLY_MAX_LENGTH:
        raise RequestError(400, f"Parameter replyRef is longer than {REPLY_MAX_LENGTH} characters")
    return ref


def _present(data: Mapping[str, Any]) -> dict[str, Any]:
    """The fields that carry a value: JSON null counts as absent."""
    return {key: value for key, value in data.items() if value is not None}


# -- per-endpoint parsing -------------------------------------------------------------------


def _common(req: CreateRequest, data: Mapping[str, Any], form: bool) -> None:
    """Fields shared by every endpoint: email, prompt, seed, exploreMode, replyUrl, replyRef,
    maxJobs."""
    if "email" in data:
        req.email = _as_str("email", data["email"])
    if "text_prompt" in data:
        req.text_prompt = _as_str("text_prompt", data["text_prompt"])
    if "seed" in data:
        req.seed = _int_in("seed", data["seed"], form, SEED_MIN, SEED_MAX)
    if "exploreMode" in data:
        req.explore_mode = _as_bool("exploreMode", data["exploreMode"], form)
    if "replyUrl" in data:
        req.reply_url = _reply_url(data["replyUrl"])
    if "replyRef" in data:
        req.reply_ref = _reply_ref(data["replyRef"])
    if "maxJobs" in data:
        req.max_jobs = _int_in("maxJobs", data["maxJobs"], form, 1, 10)


def _refuse_unknown(data: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise RequestError(400, f"Unsupported parameter(s): {', '.join(unknown)}")


def _parse_gen3(data: dict[str, Any], form: bool) -> CreateRequest:
    _refuse_unknown(data, GEN3_FIELDS)
    req = CreateRequest(endpoint="gen3turbo", task_type="gen3a_turbo")
    for name in ("firstImage_assetId", "middleImage_assetId", "lastImage_assetId"):
        if name in data:
            setattr(req, _ASSET_ATTR[name], _as_str(name, data[name]))
    _common(req, data, form)
    if "aspect_ratio" in data:
        req.aspect_ratio = _choice("aspect_ratio", data["aspect_ratio"], GEN3_RATIOS)
    if "seconds" in data:
        req.seconds = _seconds(data["seconds"], form, (5, 10))
    for name in MOTION_FIELDS:
        if name in data:
            req.motion[name] = _int_in(name, data[name], form, -10, 10)
    if "static" in data:
        req.static = _as_bool("static", data["static"], form)
    if req.static and req.motion:
        names = ", ".join(req.motion)
        raise RequestError(
            400, f"Parameter static is not compatible with motion parameters: {names}"
        )
    return req


def _parse_gen4(data: dict[str, Any], form: bool) -> CreateRequest:
    for name in ("middleImage_assetId", "lastImage_assetId", "static", *MOTION_FIELDS):
        if name in data:
            raise RequestError(400, f"Parameter {name} is not supported by Gen-4 Turbo")
    _refuse_unknown(data, GEN4_FIELDS)
    if "firstImage_assetId" not in data:
        raise RequestError(400, "Parameter firstImage_assetId is required")
    req = CreateRequest(endpoint="gen4turbo", task_type="gen4_turbo", aspect_ratio="16:9")
    req.first_asset = _as_str("firstImage_assetId", data["firstImage_assetId"])
    _common(req, data, form)
    if "aspect_ratio" in data:
        req.aspect_ratio = _choice("aspect_ratio", data["aspect_ratio"], GEN4_RATIOS)
    if "seconds" in data:
        req.seconds = _seconds(data["seconds"], form, (5, 10))
    return req


def video_model(raw: Any) -> tuple[str, VideoModel]:
    """The exact model name and its :class:`VideoModel`.

    :raise RequestError: 400 when ``raw`` is not a string or not one of :data:`VIDEO_MODELS`.
    """
    name = _as_str("model", raw)
    if name not in VIDEO_MODELS:
        known = ", ".join(VIDEO_MODELS)
        raise RequestError(400, f"Parameter model ({name}) is not supported, use one of {known}")
    return name, VIDEO_MODELS[name]


def _parse_videos(data: dict[str, Any], form: bool) -> CreateRequest:
    if "model" not in data:
        raise RequestError(400, "Parameter model is required")
    model, spec = video_model(data["model"])
    unknown = sorted(set(data) - spec.fields)
    if unknown:
        raise RequestError(400, f"Unsupported parameter(s) for model {model}: {', '.join(unknown)}")
    req = CreateRequest(
        endpoint="videos",
        task_type=spec.task_type,
        model=model,
        aspect_ratio="16:9" if "16:9" in spec.ratios or not spec.ratios else spec.ratios[0],
        seconds=spec.default_duration,
    )
    images = [_as_str(name, data[name]) for name in spec.image_fields if name in data]
    given = [name for name in spec.image_fields if name in data]
    if given != list(spec.image_fields[: len(given)]):
        raise RequestError(400, f"Parameter {given[-1]} requires {spec.image_fields[0]}")
    videos = [_as_str(name, data[name]) for name in spec.video_fields if name in data]
    keyframes = [name for name in spec.keyframe_fields if name in data]
    if keyframes and (images or videos):
        raise RequestError(
            400, f"Parameter {keyframes[0]} cannot be combined with reference images or videos"
        )
    if keyframes:
        if "startFrameAssetId" not in data:
            raise RequestError(400, "Parameter endFrameAssetId requires startFrameAssetId")
        req.first_asset = _as_str("startFrameAssetId", data["startFrameAssetId"])
        if "endFrameAssetId" in data:
            req.last_asset = _as_str("endFrameAssetId", data["endFrameAssetId"])
    elif len(spec.image_fields) <= 2:
        req.first_asset = images[0] if images else None
        req.last_asset = images[1] if len(images) > 1 else None
    else:
        req.references = images
        req.first_asset = images[0] if images else None
    least, most = spec.images
    count = len(images) + len(videos) + len(keyframes)
    if count < least:
        raise RequestError(400, f"Parameter {spec.image_fields[0]} is required for {model}")
    if len(images) + len(videos) > most:
        raise RequestError(
            400, f"Model {model} takes at most {most} reference image(s), got {len(images)}"
        )
    _common(req, data, form)
    if req.text_prompt is None and spec.prompt_required:
        raise RequestError(400, f"Parameter text_prompt is required for {model}")
    if (
        req.text_prompt is not None
        and spec.prompt_max is not None
        and len(req.text_prompt) > spec.prompt_max
    ):
        raise RequestError(
            400, f"Parameter text_prompt is longer than {spec.prompt_max} characters for {model}"
        )
    if "aspect_ratio" in data:
        allowed = spec.ratios if req.first_asset is not None else spec.text_ratios
        req.aspect_ratio = _choice("aspect_ratio", data["aspect_ratio"], allowed)
    if "duration" in data:
        req.seconds = _seconds(data["duration"], form, spec.durations, name="duration")
    if "resolution" in data:
        req.resolution = _choice("resolution", data["resolution"], spec.resolutions)
    return req


_ASSET_ATTR = {
    "firstImage_assetId": "first_asset",
    "middleImage_assetId": "middle_asset",
    "lastImage_assetId": "last_asset",
}


def parse_create(
    endpoint: Endpoint,
    data: Mapping[str, Any],
    form: bool,
    asset_exists: Callable[[str], bool],
) -> CreateRequest:
    """Validate a create body for ``endpoint``; ``form`` means values arrived as strings.

    :raise RequestError: 400 for a bad field, 404 for an asset id that was never uploaded.
    """
    present = _present(data)
    if endpoint == "gen3turbo":
        req = _parse_gen3(present, form)
    elif endpoint == "gen4turbo":
        req = _parse_gen4(present, form)
    else:
        req = _parse_videos(present, form)
    for asset_id in req.asset_ids:
        if not asset_exists(asset_id):
            raise RequestError(404, f"Unable to retrieve assetId {asset_id} (Not found.)")
    return req


def parse_directives(text: str | None) -> Directives:
    """Read ``[sim:fail]``, ``[sim:moderate]``, ``[sim:succeed]``, ``[sim:dup]``, ``[sim:shuffle]``,
    ``[sim:steps=N]``, ``[sim:delay=S]`` and ``[sim:start=S]`` from a text prompt.

    ``delay`` is the time between callbacks and ``start`` the time before the first one, in seconds.

    :raise RequestError: 400 for an unknown directive or a bad value.
    """
    values: dict[str, Any] = {}
    for match in DIRECTIVE_RE.finditer(text or ""):
        name, raw = match.group(1).lower(), match.group(2)
        try:
            if name == "fail" and raw is None:
                values["outcome"] = "failed"
            elif name in ("moderate", "moderated") and raw is None:
                values["outcome"] = "moderated"
            elif name in ("succeed", "success") and raw is None:
                values["outcome"] = "succeeded"
            elif name in ("dup", "duplicate") and raw is None:
                values["duplicate_terminal"] = True
            elif name == "shuffle" and raw is None:
                values["shuffle"] = True
            elif name == "steps" and raw is not None:
                steps = int(raw)
                if not 0 <= steps <= 100:
                    raise ValueError(raw)
                values["progress_steps"] = steps
            elif name in ("delay", "start") and raw is not None:
                seconds = float(raw)
                if not 0 <= seconds <= 3600:
                    raise ValueError(raw)
                values["step_delay" if name == "delay" else "start_delay"] = seconds
            else:
                raise ValueError(name)
        except ValueError:
            raise RequestError(400, f"Invalid simulator directive {match.group(0)}") from None
    return Directives(**values)
