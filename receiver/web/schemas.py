"""The admin API's own shapes: the request bodies (validated with these models), the error body,
the list envelopes and the answer of a recovery. The resources' shapes are in
:mod:`receiver.views.schemas`; :mod:`receiver.web.openapi` generates the document's schemas
from both."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from client.catalog import DEFAULT_MODEL, ENDPOINT_MODELS, VIDEO_MODELS, model_description
from receiver import submission
from receiver.domain.events import EventType
from receiver.views.schemas import Delivery, Job, Refused, Shape, SubscriberListed

# -- request bodies -------------------------------------------------------------------------


class TaskSubmissionIn(BaseModel):
    """``POST /api/tasks`` body. Images are https URLs or ``data:`` URIs. ``model``'s
    description and examples come from the table of models (:mod:`client.catalog`)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        DEFAULT_MODEL,
        min_length=1,
        max_length=submission.MAX_MODEL_NAME_LENGTH,
        pattern=r"^\S+$",
        description=model_description(),
        examples=[*VIDEO_MODELS, *ENDPOINT_MODELS],
    )
    video_model: str | None = Field(
        None, description="alias: with model videos, the vendor's model (same as model)"
    )
    account: str | None = Field(
        None,
        description="the useapi.net account (email) that uploads and generates; default "
        "USEAPI_ACCOUNT_EMAIL; required by the vendor when several accounts are configured",
    )
    image: str | None = Field(None, description="first frame: https URL or data: URI")
    middle_image: str | None = Field(None, description="gen3turbo only")
    last_image: str | None = Field(
        None, description="last frame: gen3turbo, kling-3.0-*, seedance-2 (end frame)"
    )
    reference_images: list[str] = Field(
        default_factory=list,
        max_length=11,
        description="seedance-2 reference images (imageAssetId1..11)",
    )
    prompt: str | None = Field(None, description="text prompt")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="the model's other request fields (e.g. duration, seed, aspect_ratio, "
        "resolution; seconds for gen3turbo and gen4turbo)",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="your own data, echoed in every webhook"
    )


class SubscriberIn(BaseModel):
    """``POST /api/subscribers`` body."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(..., max_length=2048)
    event_types: list[EventType] | None = None
    description: str | None = Field(None, max_length=500)
    max_in_flight: int | None = Field(None, ge=1, le=256)


class RecoverIn(BaseModel):
    """``POST /api/deliveries/recover`` body."""

    model_config = ConfigDict(extra="forbid")

    since: datetime
    subscriber_id: str | None = None


# -- answers --------------------------------------------------------------------------------


class ErrorDetail(Shape):
    """What went wrong: a stable ``code``, a message for people, and the request's id."""

    code: str
    message: str
    request_id: str | None


class Error(BaseModel):
    """Every error body of the admin API; ``job`` only on a failed submission."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail
    job: Job | None = Field(None, description="a failed submission's job")


class JobList(Shape):
    """``GET /api/tasks``: jobs, newest first."""

    items: list[Job]


class SubscriberList(Shape):
    """``GET /api/subscribers``: subscribers with their delivery counts."""

    items: list[SubscriberListed]


class DeliveryList(Shape):
    """``GET /api/deliveries``: deliveries, newest first."""

    items: list[Delivery]


class RefusedList(Shape):
    """``GET /api/refused-callbacks``: refused callbacks, newest first."""

    items: list[Refused]


class Requeued(Shape):
    """``POST /api/deliveries/recover``: how many failed deliveries were queued again."""

    requeued: int = Field(ge=0)
