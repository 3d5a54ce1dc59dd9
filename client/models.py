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
The answers (lenient) live in :mod:`client.answers` and are re-exported here.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from client.answers import SchedulerEntry, VendorArtifact, VendorError, VendorTask
from client.catalog import check_video_request
from client.replyref import MAX_REPLY_REF_LENGTH

__all__ = [
    "MAX_REPLY_URL_LENGTH",
    "REQUEST_TYPES",
    "Email",
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
# The longest ``replyRef`` is client.replyref's MAX_REPLY_REF_LENGTH (same page, "replyRef").


# ---------------------------------------------------------------------------------------------
# Request field types (strict)
# ---------------------------------------------------------------------------------------------


def _require_exact_int(value: Any) -> Any:
    """Reject bools and floats before a ``Literal[5, 10]`` check, which would accept 5.0."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer (not a bool, float or string)")
    return value


def _check_callback_field(name: str, value: Any, limit: int) -> None:
    """Refuse a callback field (``reply_url``, ``reply_ref``) that is not a non-empty string of
    at most ``limit`` characters.

    :raises ValueError: saying which, with ``name`` in the message.
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    if len(value) > limit:
        raise ValueError(f"{name} is {len(value)} characters; useapi.net accepts at most {limit}")


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
#: A useapi.net account: the Runway account's email as configured at useapi.net ("email is
#: optional when only one account is configured; if you have multiple accounts configured, this
#: parameter becomes required": useapi.net accounts pages).
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]


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

    #: The useapi.net account that runs the task (vendor field ``email``); required by the
    #: vendor when several accounts are configured. Use the account that uploaded the assets.
    email: Email | None = None

    def vendor_fields(self) -> dict[str, Any]:
        """The request's own fields under their vendor names, ``None`` fields left out (no
        ``replyUrl``/``replyRef``)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

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
        _check_callback_field("reply_url", reply_url, MAX_REPLY_URL_LENGTH)
        if not reply_url.lower().startswith(("https://", "http://")):
            raise ValueError("reply_url must be an http:// or https:// URL")
        _check_callback_field("reply_ref", reply_ref, MAX_REPLY_REF_LENGTH)
        payload = self.vendor_fields()
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

    Sources: useapi.net docs, POST /v1/runwayml/videos/create (its model table, kept in
    :data:`client.catalog.VIDEO_MODELS` with its dates) and useapi.net's script for that
    endpoint (``runwayml.mjs`` v3.1), whose body uses ``model``, ``email``, ``text_prompt``,
    ``aspect_ratio``, ``duration``, ``seed``, ``exploreMode``, ``imageAssetId1`` (start frame)
    and ``imageAssetId2`` (end frame); ``resolution`` from third-party code; Seedance's
    ``imageAssetId1..11``, ``videoAssetId1..3``, ``startFrameAssetId``/``endFrameAssetId``.

    A model in the table is checked against its row (:func:`client.catalog.check_video_request`)
    when the request is built; any other model name passes (the vendor decides).

    Fields (vendor name in brackets):
        model [model]: REQUIRED vendor model name, e.g. ``"gen4.5"``.
        email [email]: the account (see :class:`CreateRequest`).
        text_prompt [text_prompt]: str.
        first_image_asset_id [imageAssetId1], last_image_asset_id [imageAssetId2]: start and
            end frame (Gen-4.x, Kling); Python names as in the other requests, so one mapping
            of image slots serves every model.
        reference_asset_ids [imageAssetId1..N]: Seedance's reference images (not with the two
            above). video_asset_ids [videoAssetId1..N]: Seedance's reference videos.
        start_frame_asset_id [startFrameAssetId], end_frame_asset_id [endFrameAssetId]:
            Seedance's keyframe mode.
        aspect_ratio [aspect_ratio]: str such as ``"16:9"``. resolution [resolution]: str such
            as ``"720p"``. duration [duration]: int seconds, 1..60 (the row narrows it).
        seed [seed]: int 1..4294967294. explore_mode [exploreMode]: bool.
        max_jobs [maxJobs]: int 1..10.

    Raises (on construction): ``ValidationError`` as for :class:`CreateRequest`, and with the
    table's message (naming the field and the allowed values) when the row refuses it.
    """

    ENDPOINT: ClassVar[str] = "/videos/create"
    MODEL: ClassVar[str] = "videos"

    model: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^\S+$")]
    text_prompt: str | None = None
    first_image_asset_id: AssetId | None = _vendor_name("imageAssetId1")
    last_image_asset_id: AssetId | None = _vendor_name("imageAssetId2")
    reference_asset_ids: tuple[AssetId, ...] | None = None
    video_asset_ids: tuple[AssetId, ...] | None = None
    start_frame_asset_id: AssetId | None = _vendor_name("startFrameAssetId")
    end_frame_asset_id: AssetId | None = _vendor_name("endFrameAssetId")
    aspect_ratio: Annotated[str, StringConstraints(min_length=1, max_length=20)] | None = None
    resolution: Annotated[str, StringConstraints(min_length=1, max_length=20)] | None = None
    duration: Annotated[int, Field(strict=True, ge=1, le=60)] | None = None
    seed: Seed | None = None
    explore_mode: bool | None = _vendor_name("exploreMode")
    max_jobs: MaxJobs | None = _vendor_name("maxJobs")

    def vendor_fields(self) -> dict[str, Any]:
        """As :meth:`CreateRequest.vendor_fields`, with ``reference_asset_ids`` spread over
        ``imageAssetId1..N`` and ``video_asset_ids`` over ``videoAssetId1..N``."""
        body = self.model_dump(
            by_alias=True,
            exclude_none=True,
            mode="json",
            exclude={"reference_asset_ids", "video_asset_ids"},
        )
        for i, asset in enumerate(self.reference_asset_ids or (), start=1):
            body[f"imageAssetId{i}"] = asset
        for i, asset in enumerate(self.video_asset_ids or (), start=1):
            body[f"videoAssetId{i}"] = asset
        return body

    @model_validator(mode="after")
    def _fits_the_table(self) -> VideosCreateRequest:
        if self.reference_asset_ids and (self.first_image_asset_id or self.last_image_asset_id):
            raise ValueError(
                "reference_asset_ids fill imageAssetId1..N: not with first_image_asset_id "
                "(imageAssetId1) or last_image_asset_id (imageAssetId2)"
            )
        check_video_request(self.model, self.vendor_fields())
        return self


#: Our short model names (``CreateRequest.MODEL``) to request classes.
REQUEST_TYPES: dict[str, type[CreateRequest]] = {
    "gen3turbo": Gen3TurboRequest,
    "gen4turbo": Gen4TurboRequest,
    "videos": VideosCreateRequest,
}
