"""A thin ``requests`` client of the useapi.net Runway API, and the signed ``replyRef``.

A leaf package: it imports nothing from ``receiver`` or ``simulator``.

- :class:`UseapiClient` (``client.session``): assets, create, tasks, scheduler.
- Request models (strict) and the task object (lenient) (``client.models``).
- The error tree and the one status-to-class mapping (``client.errors``).
- :class:`ReplyRefSigner` and its claims and errors (``client.replyref``).
- :func:`load_image` (``client.images``).
"""

from client.errors import (
    AccountBusy,
    BadRequest,
    ConnectFailed,
    InsufficientCredits,
    Moderated,
    NotFound,
    OutcomeUnknown,
    TransportError,
    Unauthorized,
    UnexpectedResponse,
    UseapiError,
    VendorServerError,
    from_response,
    map_transport_errors,
)
from client.images import ImageError, LoadedImage, detect_image_type, load_image
from client.models import (
    REQUEST_TYPES,
    CreateRequest,
    Gen3TurboRequest,
    Gen4TurboRequest,
    SchedulerEntry,
    VendorArtifact,
    VendorError,
    VendorTask,
    VideosCreateRequest,
)
from client.replyref import (
    MAX_REPLY_REF_LENGTH,
    ReplyRefClaims,
    ReplyRefError,
    ReplyRefExpired,
    ReplyRefInvalid,
    ReplyRefSigner,
    ReplyRefTooLong,
)
from client.session import DEFAULT_BASE_URL, UseapiClient

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_REPLY_REF_LENGTH",
    "REQUEST_TYPES",
    "AccountBusy",
    "BadRequest",
    "ConnectFailed",
    "CreateRequest",
    "Gen3TurboRequest",
    "Gen4TurboRequest",
    "ImageError",
    "InsufficientCredits",
    "LoadedImage",
    "Moderated",
    "NotFound",
    "OutcomeUnknown",
    "ReplyRefClaims",
    "ReplyRefError",
    "ReplyRefExpired",
    "ReplyRefInvalid",
    "ReplyRefSigner",
    "ReplyRefTooLong",
    "SchedulerEntry",
    "TransportError",
    "Unauthorized",
    "UnexpectedResponse",
    "UseapiClient",
    "UseapiError",
    "VendorArtifact",
    "VendorError",
    "VendorServerError",
    "VendorTask",
    "VideosCreateRequest",
    "detect_image_type",
    "from_response",
    "load_image",
    "map_transport_errors",
]
