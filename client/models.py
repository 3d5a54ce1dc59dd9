"""Pydantic models of the useapi.net Runway API: create requests (strict) and answers (lenient).

Vendor facts live here, each with the useapi.net page it comes from:

- "useapi.net docs: POST /v1/runwayml/gen3turbo/create" (the project keeps a copy with its
  shared vendor docs, ``useapi-runwayml-gen3turbo-create.txt``): the Gen-3 Alpha Turbo
  fields and ranges, ``replyUrl``/``replyRef`` (at most 1024 characters each), ``maxJobs``
  1..10, and the task object (TypeScript "Model" section; all fields optional).
- "useapi.net docs: POST /v1/runwayml/gen4turbo/create": ``firstImage_assetId`` required,
  ``aspect_ratio`` 16:9 (default), 9:16, 1:1, 4:3, 3:4, 21:9, ``seconds`` 5 or 10, ``seed``; no
  camera motion and no last image (as summarised in SPEC.md section 1).
- "useapi.net docs: POST /v1/runwayml/videos/create": the unified endpoint (``model`` such as
  ``gen4-turbo``); see :class:`VideosCreateRequest` for where its field names come from.

Requests are strict (``extra="forbid"``, no type coercion: ``True`` is not an int, ``"5"`` is
not 5) and frozen; they fail with pydantic's ``ValidationError`` before any network call.
Answers are lenient (``extra="allow"``, every field optional, wrong types coerced or dropped as
each field documents) because the receiver validates untrusted callback bodies with them and
must keep fields the vendor adds.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

__all__ = [
    "MAX_REPLY_REF_LENGTH",
    "MAX_REPLY_URL_LENGTH",
    "REQUEST_TYPES",
    "CreateRequest",
    "Gen3TurboRequest",
    "Gen4TurboRequest",
    "SchedulerEntry",
    "VendorArtifact",
    "VendorError",
    "VendorTask",
    "VideosCreateRequest",
]

#: Longest ``replyUrl`` the vendor accepts, characters (useapi.net docs:
#: POST /v1/runwayml/gen3turbo/create, "replyUrl … Maximum length 1024 characters").
MAX_REPLY_URL_LENGTH = 1024
#: Longest ``replyRef`` the vendor accepts, characters (same page, "replyRef").
MAX_REPLY_REF_LENGTH = 1024


# ---------------------------------------------------------------------------------------------
# Request field types (strict)
# ---------------------------------------------------------------------------------------------


def _require_exact_int(value: Any) -> Any:
    """Reject bools and floats before a ``Literal[5, 10]`` check, which would accept 5.0."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer (not a bool, float or string)")
    return value


def _vendor_name(name: str) -> Any:
    """An optional field whose vendor (JSON) name differs from its Python name.

    ``validation_alias`` + ``serialization_alias`` rather than ``alias`` keeps the Python name
    as the constructor keyword for type checkers; ``populate_by_name`` accepts both names.
    """
    return Field(default=None, validation_alias=name, serialization_alias=name)


AssetId = Annotated[str, StringConstraints(min_length=1)]
#: Camera motion, integers -10..10 (useapi.net docs: POST /v1/runwayml/gen3turbo/create).
Motion = Annotated[int, Field(strict=True, ge=-10, le=10)]
#: Video length in seconds: 5 (default) or 10.
Seconds = Annotated[Literal[5, 10], BeforeValidator(_require_exact_int)]
#: Seed, 1..4294967294 (useapi.net docs: POST /v1/runwayml/gen3turbo/create).
Seed = Annotated[int, Field(strict=True, ge=1, le=4294967294)]
#: Parallel jobs allowed on the account for this request, 1..10 (same page, ``maxJobs``).
MaxJobs = Annotated[int, Field(strict=True, ge=1, le=10)]
#: Gen-4 aspect ratios (useapi.net docs: POST /v1/runwayml/gen4turbo/create).
Gen4AspectRatio = Literal["16:9", "9:16", "1:1", "4:3", "3:4", "21:9"]


class CreateRequest(BaseModel):
    """Base of the create requests: a frozen, strict model of one vendor endpoint's JSON body.

    Subclasses set ``ENDPOINT`` (the path under the base URL, e.g. ``"/gen3turbo/create"``) and
    ``MODEL`` (our short name, e.g. ``"gen3turbo"``). Python field names are snake_case; the
    vendor's names are their aliases, and either may be used to build a request.

    ``replyUrl`` and ``replyRef`` are not fields: the client adds them in :meth:`to_payload`,
    because they are ours to choose (the callback URL and the signed reference), not the
    submitter's.

    Raises (on construction): pydantic ``ValidationError`` for unknown fields, wrong types (no
    coercion: a bool is not an int, ``"5"`` is not 5), or values out of range.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)

    ENDPOINT: ClassVar[str] = ""
    MODEL: ClassVar[str] = ""

    def to_payload(self, reply_url: str, reply_ref: str) -> dict[str, Any]:
        """The JSON body to POST: vendor field names, ``None`` fields left out, plus
        ``replyUrl`` and ``replyRef`` (and ``maxJobs`` when set, as a field).

        Args:
            reply_url: our callback URL, ``http(s)://…``, at most 1024 characters.
            reply_ref: the signed reference, non-empty, at most 1024 characters.

        Returns:
            A dict ready for ``json=`` (str keys; str, int and bool values).

        Raises:
            ValueError: ``reply_url`` is empty, not http(s), or longer than 1024 characters;
                ``reply_ref`` is empty or longer than 1024 characters (useapi.net docs:
                POST /v1/runwayml/gen3turbo/create, ``replyUrl``/``replyRef`` maximum length).
        """
        if not isinstance(reply_url, str) or not reply_url:
            raise ValueError("reply_url must be a non-empty string")
        if len(reply_url) > MAX_REPLY_URL_LENGTH:
            raise ValueError(
                f"reply_url is {len(reply_url)} characters; useapi.net accepts at most "
                f"{MAX_REPLY_URL_LENGTH}"
            )
        if not reply_url.lower().startswith(("https://", "http://")):
            raise ValueError("reply_url must be an http:// or https:// URL")
        if not isinstance(reply_ref, str) or not reply_ref:
            raise ValueError("reply_ref must be a non-empty string")
        if len(reply_ref) > MAX_REPLY_REF_LENGTH:
            raise ValueError(
                f"reply_ref is {len(reply_ref)} characters; useapi.net accepts at most "
                f"{MAX_REPLY_REF_LENGTH}"
            )
        payload = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        payload["replyUrl"] = reply_url
        payload["replyRef"] = reply_ref
        return payload


class Gen3TurboRequest(CreateRequest):
    """``POST /gen3turbo/create``: a Gen-3 Alpha Turbo video (all fields optional).

    Source: useapi.net docs, POST /v1/runwayml/gen3turbo/create, "Request Body".

    Fields (vendor name in brackets):
        first_image_asset_id [firstImage_assetId], middle_image_asset_id
        [middleImage_assetId], last_image_asset_id [lastImage_assetId]: non-empty asset ids
        from ``POST /assets`` (images up to 1280x768 or 768x1280; larger ones are cropped).
        text_prompt [text_prompt]: str.
        aspect_ratio [aspect_ratio]: ``"landscape"`` (vendor default) or ``"portrait"``.
        horizontal, vertical, roll, zoom, pan, tilt: camera motion, int -10..10.
        static [static]: bool; keeps the camera still; not compatible with any motion field.
        seconds [seconds]: int 5 (vendor default) or 10.
        seed [seed]: int 1..4294967294.
        explore_mode [exploreMode]: bool, relaxed generation on Runway Unlimited plans.
        max_jobs [maxJobs]: int 1..10.

    Raises: ``ValidationError`` as for :class:`CreateRequest`, and when ``static=True`` comes
    with any motion field.
    """

    ENDPOINT: ClassVar[str] = "/gen3turbo/create"
    MODEL: ClassVar[str] = "gen3turbo"

    first_image_asset_id: AssetId | None = _vendor_name("firstImage_assetId")
    middle_image_asset_id: AssetId | None = _vendor_name("middleImage_assetId")
    last_image_asset_id: AssetId | None = _vendor_name("lastImage_assetId")
    text_prompt: str | None = None
    aspect_ratio: Literal["landscape", "portrait"] | None = None
    horizontal: Motion | None = None
    vertical: Motion | None = None
    roll: Motion | None = None
    zoom: Motion | None = None
    pan: Motion | None = None
    tilt: Motion | None = None
    static: bool | None = None
    seconds: Seconds | None = None
    seed: Seed | None = None
    explore_mode: bool | None = _vendor_name("exploreMode")
    max_jobs: MaxJobs | None = _vendor_name("maxJobs")

    MOTION_FIELDS: ClassVar[tuple[str, ...]] = (
        "horizontal",
        "vertical",
        "roll",
        "zoom",
        "pan",
        "tilt",
    )

    @model_validator(mode="after")
    def _static_excludes_motion(self) -> Gen3TurboRequest:
        if self.static:
            moving = [name for name in self.MOTION_FIELDS if getattr(self, name) is not None]
            if moving:
                raise ValueError(
                    "static=True is not compatible with camera motion fields: " + ", ".join(moving)
                )
        return self


class Gen4TurboRequest(CreateRequest):
    """``POST /gen4turbo/create``: a Gen-4 Turbo video from a first-frame image.

    Source: useapi.net docs, POST /v1/runwayml/gen4turbo/create (as summarised in SPEC.md
    section 1): ``firstImage_assetId`` required; no camera motion, no middle or last image
    (``extra="forbid"`` rejects them).

    Fields (vendor name in brackets):
        first_image_asset_id [firstImage_assetId]: REQUIRED non-empty asset id.
        text_prompt [text_prompt]: str.
        aspect_ratio [aspect_ratio]: ``"16:9"`` (vendor default), ``"9:16"``, ``"1:1"``,
            ``"4:3"``, ``"3:4"`` or ``"21:9"``.
        seconds [seconds]: int 5 (vendor default) or 10.
        seed [seed]: int 1..4294967294.
        explore_mode [exploreMode]: bool.
        max_jobs [maxJobs]: int 1..10.
    """

    ENDPOINT: ClassVar[str] = "/gen4turbo/create"
    MODEL: ClassVar[str] = "gen4turbo"

    first_image_asset_id: AssetId = Field(
        validation_alias="firstImage_assetId", serialization_alias="firstImage_assetId"
    )
    text_prompt: str | None = None
    aspect_ratio: Gen4AspectRatio | None = None
    seconds: Seconds | None = None
    seed: Seed | None = None
    explore_mode: bool | None = _vendor_name("exploreMode")
    max_jobs: MaxJobs | None = _vendor_name("maxJobs")


class VideosCreateRequest(CreateRequest):
    """``POST /videos/create``: the unified endpoint; ``model`` picks the video model.

    Sources: useapi.net docs, POST /v1/runwayml/videos/create (its model comparison tables:
    models such as ``gen4``, ``gen4-turbo``, ``gen4.5``; durations from 2 s (Gen-4.5) up to 15 s
    (Kling, Seedance); aspect ratios 16:9, 9:16, 1:1, 4:3, 3:4, 21:9; Gen-4 and Gen-4 Turbo
    need one reference image), and useapi.net's own batch script for that endpoint
    ("runwayml.mjs", version 3.0), whose JSON body uses ``model``, ``text_prompt``,
    ``aspect_ratio``, ``duration``, ``seed``, ``exploreMode``, ``imageAssetId1`` (the start
    frame) and ``imageAssetId2`` (the end frame). The page's own "Request Body" section was not
    available to us: ranges here are the union over models and the vendor checks the rest
    (e.g. which durations a given model allows). ``replyUrl``/``replyRef``/``maxJobs`` behave
    as on the other create endpoints (SPEC.md section 1).

    Fields (vendor name in brackets):
        model [model]: REQUIRED non-empty str, e.g. ``"gen4-turbo"``.
        text_prompt [text_prompt]: str (required by some models, e.g. Gen-4 Turbo).
        first_image_asset_id [imageAssetId1]: asset id of the start frame / first reference.
        last_image_asset_id [imageAssetId2]: asset id of the end frame / second reference.
        (Python names match :class:`Gen3TurboRequest` and :class:`Gen4TurboRequest`, so one
        mapping of image slots to fields serves every model.)
        aspect_ratio [aspect_ratio]: one of 16:9, 9:16, 1:1, 4:3, 3:4, 21:9.
        duration [duration]: int seconds, 2..15.
        seed [seed]: int 1..4294967294.
        explore_mode [exploreMode]: bool.
        max_jobs [maxJobs]: int 1..10.
    """

    ENDPOINT: ClassVar[str] = "/videos/create"
    MODEL: ClassVar[str] = "videos"

    model: Annotated[str, StringConstraints(min_length=1)]
    text_prompt: str | None = None
    first_image_asset_id: AssetId | None = _vendor_name("imageAssetId1")
    last_image_asset_id: AssetId | None = _vendor_name("imageAssetId2")
    aspect_ratio: Gen4AspectRatio | None = None
    duration: Annotated[int, Field(strict=True, ge=2, le=15)] | None = None
    seed: Seed | None = None
    explore_mode: bool | None = _vendor_name("exploreMode")
    max_jobs: MaxJobs | None = _vendor_name("maxJobs")


#: Our short model names (``CreateRequest.MODEL``) to request classes.
REQUEST_TYPES: dict[str, type[CreateRequest]] = {
    "gen3turbo": Gen3TurboRequest,
    "gen4turbo": Gen4TurboRequest,
    "videos": VideosCreateRequest,
}


# ---------------------------------------------------------------------------------------------
# Vendor answers (lenient)
# ---------------------------------------------------------------------------------------------


def _as_str(value: Any) -> str | None:
    """str kept; finite int/float (not bool) turned into its str; anything else → None."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else str(value)
    return None


def _as_float(value: Any) -> float | None:
    """A finite number or numeric string (``"0.5"``, ``"1"``) as float; bool, NaN, infinity,
    an integer too large for a float, other strings and other types → None."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str):
            number = float(value.strip())
        else:
            return None
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _as_dict(value: Any) -> dict[str, Any] | None:
    """A dict kept; anything else → None."""
    return value if isinstance(value, dict) else None


class _Lenient(BaseModel):
    """Base of the vendor answer models: unknown fields kept (``model_extra``), none rejected."""

    model_config = ConfigDict(extra="allow")


class VendorArtifact(_Lenient):
    """One item of a task's ``artifacts``: the generated video.

    Source: useapi.net docs, POST /v1/runwayml/gen3turbo/create, "Model" (``artifacts: any[]``)
    and SPEC.md section 1. ``url`` is signed and expires: pass it on promptly.

    Coercions (never raising): ``url``, ``assetId``, ``id``, ``filename``: str kept, a number
    becomes its str, anything else None. ``fileSize`` (bytes; the vendor sends a string): str
    or int kept (bool → None), a float becomes its str. ``previewUrls``: a list keeps its str
    items, a single str becomes a one-item list, anything else None. ``metadata`` (usually
    ``{frameRate, duration, dimensions, size}``): a dict, else None.
    """

    url: str | None = None
    assetId: str | None = None
    id: str | None = None
    filename: str | None = None
    fileSize: str | int | None = None
    previewUrls: list[str] | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("url", "assetId", "id", "filename", mode="before")
    @classmethod
    def _str_fields(cls, value: Any) -> str | None:
        return _as_str(value)

    @field_validator("fileSize", mode="before")
    @classmethod
    def _file_size(cls, value: Any) -> str | int | None:
        if isinstance(value, bool):
            return None
        if isinstance(value, str | int):
            return value
        return _as_str(value)

    @field_validator("previewUrls", mode="before")
    @classmethod
    def _preview_urls(cls, value: Any) -> list[str] | None:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [item for item in value if isinstance(item, str)]
        return None

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, value: Any) -> dict[str, Any] | None:
        return _as_dict(value)


class VendorError(_Lenient):
    """A task's ``error`` when it is an object.

    Source: useapi.net docs, POST /v1/runwayml/gen3turbo/create, "Model":
    ``{errorMessage, reason, message, moderation_category, tally_asimov}``.

    Coercions (never raising): the four text fields as in :class:`VendorArtifact` (str kept,
    number → str, else None); ``tally_asimov``: a bool, else None.
    """

    errorMessage: str | None = None
    reason: str | None = None
    message: str | None = None
    moderation_category: str | None = None
    tally_asimov: bool | None = None

    @field_validator("errorMessage", "reason", "message", "moderation_category", mode="before")
    @classmethod
    def _str_fields(cls, value: Any) -> str | None:
        return _as_str(value)

    @field_validator("tally_asimov", mode="before")
    @classmethod
    def _bool_field(cls, value: Any) -> bool | None:
        return value if isinstance(value, bool) else None

    @property
    def text(self) -> str:
        """The best human message: the first non-blank of ``errorMessage``, ``message``,
        ``reason``, then ``"moderated (<moderation_category>)"``, else ``"unknown error"``."""
        for candidate in (self.errorMessage, self.message, self.reason):
            if candidate and candidate.strip():
                return candidate.strip()
        if self.moderation_category and self.moderation_category.strip():
            return f"moderated ({self.moderation_category.strip()})"
        return "unknown error"


class VendorTask(_Lenient):
    """The task object: the answer to a create and ``GET /tasks/{taskId}``, and the body of a
    callback to ``replyUrl``.

    Source: useapi.net docs, POST /v1/runwayml/gen3turbo/create, "Responses" and "Model" (all
    fields optional), and SPEC.md section 1. Unknown fields (``image``, ``sharedAsset``,
    ``features``, anything new) are kept in ``model_extra`` and in ``model_dump()``.

    ``VendorTask.model_validate(obj)`` raises ``ValidationError`` only when ``obj`` is not a
    mapping; every field tolerates wrong types. Coercions:

    - ``taskId``, ``id``, ``name``, ``createdAt``, ``updatedAt``, ``taskType``, ``status``,
      ``progressText``, ``replyUrl``, ``replyRef``: str kept; an int or finite float becomes
      its str (``status: 3`` → ``"3"``); anything else (bool, object, list) → None.
      ``status`` stays the raw vendor string (PENDING, RUNNING, THROTTLED, SUCCEEDED, FAILED,
      CANCELLED or anything new); interpreting it is the caller's job.
    - ``options``: a dict, else None.
    - ``progressRatio`` (0..1; the vendor sends a number or a string such as ``"1"``): a number
      or numeric string as float, clamped into 0.0..1.0; bool, NaN, infinity, other strings
      and other types → None.
    - ``estimatedTimeToStartSeconds`` (seconds): a number or numeric string as float, negative
      values raised to 0.0; bool, NaN, infinity and others → None.
    - ``artifacts``: a list, each dict item becoming a :class:`VendorArtifact` and each str
      item an artifact with that ``url``; other items dropped; None or a non-list → ``[]``.
    - ``error``: None or a str kept; a dict becomes a :class:`VendorError`; a list or other
      JSON value becomes its compact JSON text, anything else its ``str``.
    - ``code``: an int or str kept; an integral float becomes an int, another float its str;
      bool and others → None.
    """

    taskId: str | None = None
    id: str | None = None
    name: str | None = None
    createdAt: str | None = None
    updatedAt: str | None = None
    taskType: str | None = None
    options: dict[str, Any] | None = None
    status: str | None = None
    progressText: str | None = None
    progressRatio: float | None = None
    estimatedTimeToStartSeconds: float | None = None
    artifacts: list[VendorArtifact] = Field(default_factory=list)
    error: VendorError | str | None = None
    code: int | str | None = None
    replyUrl: str | None = None
    replyRef: str | None = None

    @field_validator(
        "taskId",
        "id",
        "name",
        "createdAt",
        "updatedAt",
        "taskType",
        "status",
        "progressText",
        "replyUrl",
        "replyRef",
        mode="before",
    )
    @classmethod
    def _str_fields(cls, value: Any) -> str | None:
        return _as_str(value)

    @field_validator("options", mode="before")
    @classmethod
    def _options(cls, value: Any) -> dict[str, Any] | None:
        return _as_dict(value)

    @field_validator("progressRatio", mode="before")
    @classmethod
    def _progress_ratio(cls, value: Any) -> float | None:
        number = _as_float(value)
        if number is None:
            return None
        return min(1.0, max(0.0, number))

    @field_validator("estimatedTimeToStartSeconds", mode="before")
    @classmethod
    def _eta(cls, value: Any) -> float | None:
        number = _as_float(value)
        if number is None:
            return None
        return max(0.0, number)

    @field_validator("artifacts", mode="before")
    @classmethod
    def _artifacts(cls, value: Any) -> list[Any]:
        if not isinstance(value, list):
            return []
        items: list[Any] = []
        for item in value:
            if isinstance(item, dict | VendorArtifact):
                items.append(item)
            elif isinstance(item, str):
                items.append({"url": item})
        return items

    @field_validator("error", mode="before")
    @classmethod
    def _error(cls, value: Any) -> Any:
        if value is None or isinstance(value, str | dict | VendorError):
            return value
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError):
            return str(value)

    @field_validator("code", mode="before")
    @classmethod
    def _code(cls, value: Any) -> int | str | None:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | str):
            return value
        if isinstance(value, float) and math.isfinite(value):
            return int(value) if value.is_integer() else str(value)
        return None

    @property
    def error_text(self) -> str | None:
        """The error as one human message (``VendorError.text`` or the string), or None."""
        if isinstance(self.error, VendorError):
            return self.error.text
        return self.error


class SchedulerEntry(_Lenient):
    """One task the vendor is tracking, as listed by ``GET /scheduler``.

    Source: SPEC.md section 1 ("``GET /scheduler`` lists running tasks as
    ``[{taskId, replyUrl, replyRef}]``"); the same entries appear in a 429's ``runningTasks``
    (useapi.net docs: POST /v1/runwayml/gen3turbo/create). Unknown fields are kept.

    Coercions: the three fields as in :class:`VendorTask` (str kept, number → str, else None).
    """

    taskId: str | None = None
    replyUrl: str | None = None
    replyRef: str | None = None

    @field_validator("taskId", "replyUrl", "replyRef", mode="before")
    @classmethod
    def _str_fields(cls, value: Any) -> str | None:
        return _as_str(value)
