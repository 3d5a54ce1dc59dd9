"""Pydantic models of the useapi.net Runway API's answers (lenient): the task object, its
artifacts and error, and the scheduler's entries.

Answers are lenient (``extra="allow"``, every field optional, wrong types coerced or dropped as
each field documents) because the receiver validates untrusted callback bodies with them and
must keep fields the vendor adds. Source: useapi.net docs, POST /v1/runwayml/gen3turbo/create,
"Responses" and "Model", and SPEC.md section 1.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any
from urllib.parse import quote

import requests
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from client.errors import UnexpectedResponse

__all__ = [
    "SchedulerEntry",
    "VendorArtifact",
    "VendorError",
    "VendorTask",
    "account_items",
    "json_object",
    "parse_json",
    "quote_task_id",
    "scheduler_items",
    "unwrap_task",
    "with_email",
]


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


def _as_float_in(value: Any, low: float, high: float = math.inf) -> float | None:
    """:func:`_as_float`, clamped into ``low..high``."""
    number = _as_float(value)
    return None if number is None else min(high, max(low, number))


def _as_str_or_int(value: Any) -> str | int | None:
    """str or int kept (bool → None); anything else as :func:`_as_str`."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str | int):
        return value
    return _as_str(value)


def _as_dict(value: Any) -> dict[str, Any] | None:
    """A dict kept; anything else → None."""
    return value if isinstance(value, dict) else None


#: The lenient field types: the coercion runs before pydantic validates (and never raises).
_Text = Annotated[str | None, BeforeValidator(_as_str)]
_TextOrInt = Annotated[str | int | None, BeforeValidator(_as_str_or_int)]
_Object = Annotated[dict[str, Any] | None, BeforeValidator(_as_dict)]


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

    url: _Text = None
    assetId: _Text = None
    id: _Text = None
    filename: _Text = None
    fileSize: _TextOrInt = None
    previewUrls: list[str] | None = None
    metadata: _Object = None

    @field_validator("previewUrls", mode="before")
    @classmethod
    def _preview_urls(cls, value: Any) -> list[str] | None:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [item for item in value if isinstance(item, str)]
        return None


class VendorError(_Lenient):
    """A task's ``error`` when it is an object.

    Source: useapi.net docs, POST /v1/runwayml/gen3turbo/create, "Model":
    ``{errorMessage, reason, message, moderation_category, tally_asimov}``.

    Coercions (never raising): the four text fields as in :class:`VendorArtifact` (str kept,
    number → str, else None); ``tally_asimov``: a bool, else None.
    """

    errorMessage: _Text = None
    reason: _Text = None
    message: _Text = None
    moderation_category: _Text = None
    tally_asimov: bool | None = None

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

    taskId: _Text = None
    id: _Text = None
    name: _Text = None
    createdAt: _Text = None
    updatedAt: _Text = None
    taskType: _Text = None
    options: _Object = None
    status: _Text = None
    progressText: _Text = None
    progressRatio: float | None = None
    estimatedTimeToStartSeconds: float | None = None
    artifacts: list[VendorArtifact] = Field(default_factory=list)
    error: VendorError | str | None = None
    code: int | str | None = None
    replyUrl: _Text = None
    replyRef: _Text = None

    @field_validator("progressRatio", mode="before")
    @classmethod
    def _progress_ratio(cls, value: Any) -> float | None:
        return _as_float_in(value, 0.0, 1.0)

    @field_validator("estimatedTimeToStartSeconds", mode="before")
    @classmethod
    def _eta(cls, value: Any) -> float | None:
        return _as_float_in(value, 0.0)

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
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        return _as_str_or_int(value)

    @property
    def error_text(self) -> str | None:
        """The error as one human message (``VendorError.text`` or the string), or None."""
        if isinstance(self.error, VendorError):
            return self.error.text
        return self.error


class SchedulerEntry(_Lenient):
    """One task the vendor is tracking, as listed by ``GET /scheduler/``.

    Source: SPEC.md section 1 ("``GET /scheduler`` lists running tasks as
    ``[{taskId, replyUrl, replyRef}]``"); the same entries appear in a 429's ``runningTasks``
    (useapi.net docs: POST /v1/runwayml/gen3turbo/create). Unknown fields are kept.

    Coercions: the three fields as in :class:`VendorTask` (str kept, number → str, else None).
    """

    taskId: _Text = None
    replyUrl: _Text = None
    replyRef: _Text = None


def with_email(params: dict[str, str], email: str | None) -> dict[str, str]:
    """``params`` with ``email`` first when an account is given (``?email=…&name=…``)."""
    return {"email": email, **params} if email else params


def unwrap_task(body: dict[str, Any]) -> dict[str, Any]:
    """The task object of an answer: the body itself, or its ``task`` object when the body
    carries no ``taskId`` of its own (``{"task": {...}, "code": 200}``; useapi-2026.md)."""
    inner = body.get("task")
    if "taskId" not in body and isinstance(inner, dict):
        return {**{k: v for k, v in body.items() if k != "task"}, **inner}
    return body


def scheduler_items(parsed: Any) -> list[dict[str, Any]] | None:
    """The entry objects inside a ``GET /scheduler/`` answer: a JSON array of entries, or an
    object wrapping such arrays (``{"tasks": […]}``, or like a 429's ``runningTasks``,
    ``{email: […]}``; up to two levels deep), or one entry; items that are not objects are
    skipped. None when ``parsed`` is neither an array nor an object."""
    if isinstance(parsed, list):
        return [item for item in parsed if isinstance(item, dict)]
    if not isinstance(parsed, dict):
        return None
    if "taskId" in parsed:
        return [parsed]
    items: list[dict[str, Any]] = []
    for value in parsed.values():
        if isinstance(value, list):
            items.extend(item for item in value if isinstance(item, dict))
        elif isinstance(value, dict):
            for inner in value.values():
                if isinstance(inner, list):
                    items.extend(item for item in inner if isinstance(item, dict))
    return items


def account_items(parsed: Any) -> list[dict[str, Any]] | None:
    """The accounts of a ``GET /accounts`` answer: an object keyed by email (each value an
    object), an array of objects, or ``{"accounts": …}`` of either. Each comes back as a dict
    with at least ``email`` (str) and ``error`` (the pending error, or None). None when
    ``parsed`` is neither an array nor an object."""
    if isinstance(parsed, dict) and isinstance(parsed.get("accounts"), dict | list):
        parsed = parsed["accounts"]
    items: list[tuple[str | None, Any]]
    if isinstance(parsed, list):
        items = [(None, item) for item in parsed]
    elif isinstance(parsed, dict):
        items = list(parsed.items())
    else:
        return None
    accounts: list[dict[str, Any]] = []
    for key, value in items:
        if not isinstance(value, dict):
            continue
        email = value.get("email") if isinstance(value.get("email"), str) else key
        if not isinstance(email, str) or not email:
            continue
        error = value.get("error")
        accounts.append({**value, "email": email, "error": error if error else None})
    return accounts


# useapi.net task ids look like "user:<id>-runwayml:<email>-task:<uuid>"; ":" and "@" are legal
# in a path segment and the vendor's own examples send them unescaped (useapi's comparison script:
# encoding them breaks the path match). Everything else that is not unreserved (notably "/",
# "?", "#", "%", spaces) is percent-encoded.
_PATH_SAFE = ":@"


def quote_task_id(task_id: str) -> str:
    """A task id as a path segment: ``:`` and ``@`` raw, everything else percent-encoded.

    Raises:
        ValueError: ``task_id`` is empty or not a string.
    """
    if not isinstance(task_id, str) or not task_id:
        raise ValueError("task_id must be a non-empty string")
    return quote(task_id, safe=_PATH_SAFE)


def parse_json(response: requests.Response) -> Any:
    """The body as JSON; ``UnexpectedResponse`` (with the status) if it is not JSON."""
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise UnexpectedResponse(
            "the vendor's answer is not JSON", http_status=response.status_code
        ) from e


def json_object(response: requests.Response) -> dict[str, Any]:
    """The body as a JSON object; ``UnexpectedResponse`` if it is anything else."""
    parsed = parse_json(response)
    if not isinstance(parsed, dict):
        raise UnexpectedResponse(
            f"the vendor's answer is JSON {type(parsed).__name__}, not an object",
            http_status=response.status_code,
        )
    return parsed
