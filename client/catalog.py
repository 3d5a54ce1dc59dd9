"""The one table of ``POST /videos/create`` models, and which endpoint a model name goes to.

Source of every row: useapi.net, page "POST /v1/runwayml/videos/create"
(``post-runwayml-videos-create``, March 5, 2026; updated April 15 and May 14, 2026), its model
comparison table; the request field names from useapi.net's own script ``useapi/runway-api``
``video/runwayml.mjs`` v3.1 (June 2026, "migrated to the unified videos/create endpoint",
default model ``gen4.5``). Collected in the project's vendor notes ``useapi-2026.md``.

- :data:`VIDEO_MODELS`: one :class:`VideoModel` per documented model; the client validates a
  ``/videos/create`` request against it before any network call (:func:`check_video_request`),
  ``relay models`` prints it, the API's OpenAPI document and ``relay submit --help`` are made
  from it.
- :data:`UNLISTED_MODELS`: named on the page but their rows were not readable; like any other
  name not in the table they are passed through to the vendor with a warning.
- :func:`route`: a model name to the endpoint and request class (``gen3turbo`` and
  ``gen4turbo`` keep their own endpoints; every other name is a ``/videos/create`` model).

Gen-3 Alpha Turbo was retired by Runway on 2026-07-30 (ComfyUI's Runway partner-nodes page;
useapi.net's gen3/create page, Dec 15, 2025, tells users to move to Gen-4.x): ``gen3turbo``
stays supported, and what the vendor answers for it is shown with :data:`RETIRED_ADVICE`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "COMMON_FIELDS",
    "DEFAULT_MODEL",
    "ENDPOINT_MODELS",
    "GEN4_ASPECT_RATIOS",
    "KNOWN_MODELS",
    "RETIRED_ADVICE",
    "RETIRED_MODELS",
    "SOURCE",
    "UNLISTED_MODELS",
    "VIDEO_MODELS",
    "Route",
    "VideoModel",
    "check_video_request",
    "markdown_table",
    "model_description",
    "route",
]

#: Where the table comes from (printed by ``relay models``, put in the OpenAPI document).
SOURCE = (
    "useapi.net 'POST /v1/runwayml/videos/create' (March 5, 2026; updated April 15 and May 14, "
    "2026) and useapi.net's script runwayml.mjs v3.1 (June 2026)"
)

#: The model used when none is named: what useapi.net's own script uses since June 2026.
DEFAULT_MODEL = "gen4.5"

#: "All" aspect ratios of the Gen-4.x models (same page).
GEN4_ASPECT_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9")

#: Vendor fields every model of ``/videos/create`` takes, whatever the row says: the model,
#: the account, the prompt, the seed, and the callback trio (useapi.net documents ``replyUrl``,
#: ``replyRef`` and ``maxJobs`` on its create endpoints; ``email`` on the accounts pages).
COMMON_FIELDS = ("model", "email", "text_prompt", "seed", "replyUrl", "replyRef", "maxJobs")

#: Named on the page, rows not readable (``useapi-2026.md``): passed through with a warning.
UNLISTED_MODELS = (
    "happyhorse-1.0",
    "kling-o3-4k",
    "kling-o3-pro",
    "kling-o3-standard",
    "kling-3.0-motion-control",
    "wan-2.6-flash",
    "wan-2.2-animate",
    "veo-3.1",
    "sora-2",
    "sora-2-pro",
)

#: Model names with their own create endpoint (not ``/videos/create``).
ENDPOINT_MODELS = {"gen3turbo": "/gen3turbo/create", "gen4turbo": "/gen4turbo/create"}

#: Models Runway no longer offers: the vendor's answer is shown with :data:`RETIRED_ADVICE`.
RETIRED_MODELS = frozenset({"gen3turbo"})
RETIRED_ADVICE = (
    "Runway retired Gen-3 Alpha Turbo on 2026-07-30; choose a live model, e.g. --model gen4.5 "
    "(see `relay models`)"
)


@dataclass(frozen=True)
class VideoModel:
    """One row of the table: what ``POST /videos/create`` takes for ``name``.

    Attributes:
        name: the vendor's model name (the ``model`` field), exact (no case folding).
        label: a human name.
        durations: allowed ``duration`` values, seconds.
        aspect_ratios: allowed ``aspect_ratio`` values with a start image; ``()`` means the
            model takes no ``aspect_ratio`` field.
        text_aspect_ratios: allowed ``aspect_ratio`` values without any image (text to video).
        resolutions: allowed ``resolution`` values; ``()`` means no ``resolution`` field.
        min_images, max_images: how many reference images the request must / may carry.
        image_fields: the vendor fields that carry them, in order (start frame first).
        keyframe_fields: Seedance's keyframe mode (start, end frame); ``()`` for other models.
            A request uses either ``image_fields`` or ``keyframe_fields``, never both.
        video_fields: fields for reference videos (Seedance; at most ``max_images`` in all).
        prompt_required: ``text_prompt`` must be given.
        prompt_max: longest ``text_prompt``, characters; None when the page does not say.
        audio: what the page says of sound ("on by default", "on", or "" when nothing).
        explore_mode: the model takes ``exploreMode`` (Runway Unlimited plans; not every model
            supports it, and the page documents it for Runway's own Gen-4.x models).
        note: anything else the user should know.
    """

    name: str
    label: str
    durations: tuple[int, ...]
    aspect_ratios: tuple[str, ...]
    text_aspect_ratios: tuple[str, ...]
    resolutions: tuple[str, ...]
    min_images: int
    max_images: int
    image_fields: tuple[str, ...]
    keyframe_fields: tuple[str, ...] = ()
    video_fields: tuple[str, ...] = ()
    prompt_required: bool = False
    prompt_max: int | None = None
    audio: str = ""
    explore_mode: bool = False
    note: str = ""

    @property
    def fields(self) -> tuple[str, ...]:
        """Every vendor field name this model takes, :data:`COMMON_FIELDS` included."""
        names = list(COMMON_FIELDS)
        if self.durations:
            names.append("duration")
        if self.aspect_ratios or self.text_aspect_ratios:
            names.append("aspect_ratio")
        if self.resolutions:
            names.append("resolution")
        if self.explore_mode:
            names.append("exploreMode")
        names.extend(self.image_fields)
        names.extend(self.keyframe_fields)
        names.extend(self.video_fields)
        return tuple(names)

    def to_json(self) -> dict[str, Any]:
        """The row as a JSON-ready dict (``relay models``, the OpenAPI document)."""
        return {
            "model": self.name,
            "label": self.label,
            "endpoint": "/videos/create",
            "durations": list(self.durations),
            "aspect_ratios": list(self.aspect_ratios),
            "text_to_video_aspect_ratios": list(self.text_aspect_ratios),
            "resolutions": list(self.resolutions),
            "reference_images": {
                "min": self.min_images,
                "max": self.max_images,
                "fields": list(self.image_fields),
            },
            "keyframe_fields": list(self.keyframe_fields),
            "video_fields": list(self.video_fields),
            "prompt_required": self.prompt_required,
            "prompt_max_length": self.prompt_max,
            "audio": self.audio or None,
            "explore_mode": self.explore_mode,
            "fields": list(self.fields),
            "note": self.note or None,
        }


_START_END = ("imageAssetId1", "imageAssetId2")
_KLING_RATIOS = ("16:9", "9:16", "1:1")

# Rows the table gives twice but for the name, label and note: Gen-4 Turbo takes what Gen-4
# takes, Kling 3.0 Standard what Kling 3.0 Pro takes (the other row is made with ``replace``).
_GEN4 = VideoModel(
    name="gen4",
    label="Runway Gen-4",
    durations=(5, 10),
    aspect_ratios=GEN4_ASPECT_RATIOS,
    text_aspect_ratios=(),
    resolutions=("720p",),
    min_images=1,
    max_images=1,
    image_fields=_START_END[:1],
    prompt_required=True,
    prompt_max=1000,
    explore_mode=True,
)
_KLING_3_PRO = VideoModel(
    name="kling-3.0-pro",
    label="Kling 3.0 Pro",
    durations=(5, 10, 15),
    aspect_ratios=_KLING_RATIOS,
    text_aspect_ratios=_KLING_RATIOS,
    resolutions=("auto",),
    min_images=0,
    max_images=2,
    image_fields=_START_END,
    prompt_max=2500,
    audio="on",
)

#: The documented ``/videos/create`` models, by exact name, in the page's order of preference.
VIDEO_MODELS: dict[str, VideoModel] = {
    m.name: m
    for m in (
        VideoModel(
            name="gen4.5",
            label="Runway Gen-4.5",
            durations=tuple(range(2, 11)),
            aspect_ratios=GEN4_ASPECT_RATIOS,
            text_aspect_ratios=("16:9",),
            resolutions=(),
            min_images=0,
            max_images=1,
            image_fields=_START_END[:1],
            prompt_max=5000,
            audio="on by default",
            explore_mode=True,
            note="the default; text to video is 16:9 only",
        ),
        _GEN4,
        replace(
            _GEN4, name="gen4-turbo", label="Runway Gen-4 Turbo", note="about 1-2 minutes per video"
        ),
        _KLING_3_PRO,
        replace(_KLING_3_PRO, name="kling-3.0-standard", label="Kling 3.0 Standard"),
        VideoModel(
            name="kling-2.6-pro",
            label="Kling 2.6 Pro",
            durations=(5, 10),
            aspect_ratios=("16:9", "9:16"),
            text_aspect_ratios=("16:9", "9:16"),
            resolutions=("auto",),
            min_images=0,
            max_images=1,
            image_fields=_START_END[:1],
            prompt_required=True,
            prompt_max=2500,
        ),
        VideoModel(
            name="kling-2.6-i2v",
            label="Kling 2.6 image to video",
            durations=(5, 10),
            aspect_ratios=(),
            text_aspect_ratios=(),
            resolutions=(),
            min_images=1,
            max_images=1,
            image_fields=_START_END[:1],
            prompt_required=True,
            prompt_max=2500,
        ),
        VideoModel(
            name="seedance-2",
            label="Seedance 2",
            # 4..15 on the current page; an earlier one said 5, 10, 15 (a subset).
            durations=tuple(range(4, 16)),
            aspect_ratios=GEN4_ASPECT_RATIOS,
            text_aspect_ratios=GEN4_ASPECT_RATIOS,
            resolutions=("480p", "720p", "1080p"),
            min_images=0,
            max_images=11,
            image_fields=tuple(f"imageAssetId{i}" for i in range(1, 12)),
            keyframe_fields=("startFrameAssetId", "endFrameAssetId"),
            video_fields=("videoAssetId1", "videoAssetId2", "videoAssetId3"),
            note="multi-reference (up to 11 images and 3 videos, 11 in all) or keyframes "
            "(startFrameAssetId/endFrameAssetId); resolution 480p by default",
        ),
    )
}


#: Every model name runway-relay knows: the table's, those passed through unchecked, and the
#: two own endpoints (jobs record these names; e.g. the dashboard's model filter offers them).
KNOWN_MODELS: tuple[str, ...] = (*VIDEO_MODELS, *UNLISTED_MODELS, *ENDPOINT_MODELS)


@dataclass(frozen=True)
class Route:
    """Where a model name goes: ``endpoint`` (path under the base URL), ``kind``
    (``"gen3turbo"``, ``"gen4turbo"`` or ``"videos"``: the request class), ``vendor_model``
    (the ``model`` field for ``/videos/create``, else None), ``spec`` (the table row, None for
    the dedicated endpoints and for models not in the table), and ``listed`` (False for a
    ``/videos/create`` name the table does not hold: passed through with a warning)."""

    name: str
    endpoint: str
    kind: str
    vendor_model: str | None
    spec: VideoModel | None
    listed: bool

    @property
    def retired(self) -> bool:
        """True when Runway no longer offers the model (``gen3turbo``)."""
        return self.name in RETIRED_MODELS

    @property
    def warning(self) -> str | None:
        """What to tell the user before sending, or None."""
        if self.listed:
            return None
        return (
            f"model {self.name!r} is not in runway-relay's table of /videos/create models "
            "(`relay models`); it is passed through and the vendor checks its fields"
        )


def route(model: str | None) -> Route:
    """The endpoint a model name goes to.

    ``None`` or ``""`` → :data:`DEFAULT_MODEL`; ``gen3turbo`` / ``gen4turbo`` → their own
    endpoints; ``videos`` is refused (it names the endpoint, not a model: the caller maps the
    ``--model videos --video-model X`` alias first); any other name → ``/videos/create``.

    Raises:
        ValueError: ``model`` is ``"videos"`` or contains whitespace.
    """
    name = model or DEFAULT_MODEL
    if name == "videos":
        raise ValueError("model 'videos' names the endpoint; give the video model, e.g. gen4.5")
    if not name.strip() or any(ch.isspace() for ch in name):
        raise ValueError(f"model {name!r} is not a model name")
    if name in ENDPOINT_MODELS:
        return Route(name, ENDPOINT_MODELS[name], name, None, None, True)
    spec = VIDEO_MODELS.get(name)
    return Route(name, "/videos/create", "videos", name, spec, spec is not None)


def model_description() -> str:
    """One paragraph about the model names, made from the table (the OpenAPI document)."""
    rows = []
    for spec in VIDEO_MODELS.values():
        prompt = "prompt required" if spec.prompt_required else "prompt optional"
        rows.append(
            f"{spec.name} (duration {_allowed(spec.durations)} s; aspect_ratio "
            f"{_allowed(spec.aspect_ratios) or 'none'}; {spec.min_images}-{spec.max_images} "
            f"image(s); {prompt}"
            + (f" <= {spec.prompt_max} chars" if spec.prompt_max else "")
            + (f"; resolution {_allowed(spec.resolutions)}" if spec.resolutions else "")
            + ")"
        )
    return (
        f"The vendor's model name; default {DEFAULT_MODEL}. POST /videos/create models checked "
        f"against runway-relay's table ({SOURCE}): {'; '.join(rows)}. Any other name is "
        "passed to /videos/create unchecked, with a warning. gen3turbo (Gen-3 Alpha Turbo, "
        "retired by Runway on 2026-07-30) and gen4turbo use their own endpoints; 'videos' "
        "with video_model is an alias."
    )


def markdown_table() -> str:
    """The table as Markdown (the README's "Models" section is checked against it)."""
    lines = [
        "| model | duration (s) | aspect_ratio with an image / without | resolution "
        "| reference images | text_prompt | audio | exploreMode |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for spec in VIDEO_MODELS.values():
        ratios = (
            f"{_allowed(spec.aspect_ratios) or '—'} / {_allowed(spec.text_aspect_ratios) or '—'}"
        )
        fields = spec.image_fields
        named = (
            ", ".join(f"`{f}`" for f in fields)
            if len(fields) <= 2
            else (f"`{fields[0]}`…`{fields[-1]}`")
        )
        images = f"{spec.min_images}–{spec.max_images} ({named})"
        if spec.keyframe_fields:
            images += " or keyframes " + " / ".join(f"`{f}`" for f in spec.keyframe_fields)
        if spec.video_fields:
            images += f", up to {len(spec.video_fields)} videos"
        prompt = "required" if spec.prompt_required else "optional"
        if spec.prompt_max:
            prompt += f", ≤ {spec.prompt_max} chars"
        lines.append(
            f"| `{spec.name}` | {_allowed(spec.durations)} | {ratios} "
            f"| {_allowed(spec.resolutions) or '—'} | {images} | {prompt} "
            f"| {spec.audio or '—'} | {'yes' if spec.explore_mode else '—'} |"
        )
    return "\n".join(lines)


def _allowed(values: tuple[Any, ...]) -> str:
    if values and all(isinstance(v, int) for v in values):
        ints = [int(v) for v in values]
        if len(ints) > 3 and ints == list(range(ints[0], ints[-1] + 1)):
            return f"{ints[0]}..{ints[-1]}"
    return ", ".join(str(v) for v in values)


def check_video_request(model: str, body: dict[str, Any]) -> None:
    """Check a ``/videos/create`` body (vendor field names, ``None`` values left out, without
    ``replyUrl``/``replyRef``) against the table row of ``model``. A model not in the table
    passes (the vendor decides).

    Raises:
        ValueError: with a message naming the model, the field and the allowed values: a
            field the model does not take, a value not allowed, too few or too many images,
            Seedance keyframes mixed with references, a missing or too long ``text_prompt``.
    """
    spec = VIDEO_MODELS.get(model)
    if spec is None:
        return
    unknown = [name for name in body if name not in spec.fields]
    if unknown:
        raise ValueError(
            f"{model} does not take {', '.join(unknown)}; it takes: {', '.join(spec.fields)}"
        )
    images = [f for f in spec.image_fields if body.get(f) is not None]
    keyframes = [f for f in spec.keyframe_fields if body.get(f) is not None]
    videos = [f for f in spec.video_fields if body.get(f) is not None]
    if keyframes and (images or videos):
        raise ValueError(
            f"{model}: keyframes ({', '.join(spec.keyframe_fields)}) cannot be mixed with "
            f"reference images or videos ({', '.join(images + videos)})"
        )
    if spec.keyframe_fields and keyframes[-1:] == [spec.keyframe_fields[-1]] and len(keyframes) < 2:
        raise ValueError(f"{model}: {spec.keyframe_fields[1]} needs {spec.keyframe_fields[0]}")
    if images != list(spec.image_fields[: len(images)]):
        raise ValueError(
            f"{model}: reference images go in {', '.join(spec.image_fields)} in that order, "
            f"without gaps (got {', '.join(images)})"
        )
    count = len(images) + len(videos) + len(keyframes)
    if count < spec.min_images:
        raise ValueError(
            f"{model} needs {spec.min_images} reference image(s) in {spec.image_fields[0]}"
        )
    if len(images) + len(videos) > spec.max_images:
        raise ValueError(
            f"{model} takes at most {spec.max_images} reference image(s) "
            f"({', '.join(spec.image_fields)})"
        )
    prompt = body.get("text_prompt")
    if prompt is None and spec.prompt_required:
        raise ValueError(f"{model} needs text_prompt (at most {spec.prompt_max} characters)")
    if isinstance(prompt, str) and spec.prompt_max is not None and len(prompt) > spec.prompt_max:
        raise ValueError(
            f"{model}: text_prompt is {len(prompt)} characters; at most {spec.prompt_max}"
        )
    if "duration" in body and body["duration"] not in spec.durations:
        raise ValueError(
            f"{model}: duration {body['duration']!r} is not allowed; "
            f"allowed: {_allowed(spec.durations)} (seconds)"
        )
    if "aspect_ratio" in body:
        ratios = spec.aspect_ratios if (images or keyframes) else spec.text_aspect_ratios
        if body["aspect_ratio"] not in ratios:
            mode = "with an image" if (images or keyframes) else "without an image"
            raise ValueError(
                f"{model}: aspect_ratio {body['aspect_ratio']!r} is not allowed {mode}; "
                f"allowed: {_allowed(ratios) or 'none'}"
            )
    if "resolution" in body and body["resolution"] not in spec.resolutions:
        raise ValueError(
            f"{model}: resolution {body['resolution']!r} is not allowed; "
            f"allowed: {_allowed(spec.resolutions)}"
        )
