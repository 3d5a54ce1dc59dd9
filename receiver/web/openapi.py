"""The OpenAPI 3.1 document of ``/api/*``, built from the same pydantic models that validate
the requests, so the two cannot drift apart."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from client.catalog import DEFAULT_MODEL, ENDPOINT_MODELS, SOURCE, UNLISTED_MODELS, VIDEO_MODELS
from receiver.domain.statuses import DELIVERY_STATUSES
from receiver.domain.tasks import TaskStatus

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "request_id"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "request_id": {"type": ["string", "null"]},
            },
        },
        "job": {"$ref": "#/components/schemas/Job", "description": "a failed submission's job"},
    },
    "additionalProperties": False,
}

_NULLABLE_STR = {"type": ["string", "null"]}
_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_NULLABLE_OBJECT = {"type": ["object", "null"]}


def _strict(properties: dict[str, Any], *optional: str) -> dict[str, Any]:
    """An object with exactly these properties: all required but ``optional``, no others."""
    return {
        "type": "object",
        "required": [name for name in properties if name not in optional],
        "properties": properties,
        "additionalProperties": False,
    }


_JOB = _strict(
    {
        "job_id": {"type": "string"},
        "task_id": _NULLABLE_STR,
        "model": {"type": "string"},
        "status": {"enum": [s.value for s in TaskStatus]},
        "progress": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "progress_text": _NULLABLE_STR,
        "artifacts": {"type": "array", "items": {"type": "object"}},
        "error": _NULLABLE_OBJECT,
        "submit_error": _NULLABLE_OBJECT,
        "metadata": {"type": "object"},
        "request": {"type": "object"},
        "created_at": _TIME,
        "updated_at": _TIME,
        "last_callback_at": _NULLABLE_TIME,
        "finished_at": _NULLABLE_TIME,
        "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
        "callbacks": {"type": "array", "items": {"$ref": "#/components/schemas/Callback"}},
        "deliveries": {"type": "array", "items": {"$ref": "#/components/schemas/Delivery"}},
    },
    "events",
    "callbacks",
    "deliveries",
)
_EVENT = _strict(
    {
        "id": {"type": "string"},
        "type": {"type": "string"},
        "sequence": {"type": "integer", "minimum": 1},
        "created_at": _TIME,
        "data": {"type": "object", "description": "the webhook body's data"},
    }
)
_CALLBACK = _strict(
    {
        "received_at": _TIME,
        "status": _NULLABLE_STR,
        "progress": {"type": ["number", "null"]},
        "outcome": {"type": "string"},
        "body_sha256": {"type": "string"},
        "unsafe_urls": {"type": "integer", "minimum": 0},
    }
)
_SUBSCRIBER = _strict(
    {
        "id": {"type": "string"},
        "url": {"type": "string"},
        "description": _NULLABLE_STR,
        "event_types": {"type": "array", "items": {"type": "string"}},
        "enabled": {"type": "boolean"},
        "disabled_reason": _NULLABLE_STR,
        "disabled_at": _NULLABLE_TIME,
        "max_in_flight": {"type": "integer"},
        "failing_since": _NULLABLE_TIME,
        "last_success_at": _NULLABLE_TIME,
        "last_failure_at": _NULLABLE_TIME,
        "last_error": _NULLABLE_STR,
        "created_at": _TIME,
        "previous_secret_expires_at": _NULLABLE_TIME,
        "secret": {
            "type": "string",
            "pattern": "^whsec_",
            "description": "only when created or rotated",
        },
        "deliveries": {
            "type": "object",
            "additionalProperties": {"type": "integer"},
            "description": "in lists: this subscriber's deliveries counted by status",
        },
    },
    "secret",
    "deliveries",
)
_DELIVERY_STATUSES = list(DELIVERY_STATUSES)
_ATTEMPT = _strict(
    {
        "number": {"type": "integer"},
        "started_at": _TIME,
        "duration_ms": {"type": "number"},
        "status_code": {"type": ["integer", "null"]},
        "outcome": {"type": "string"},
        "error": _NULLABLE_STR,
        "response_body": _NULLABLE_STR,
    }
)
_DELIVERY = _strict(
    {
        "id": {"type": "string"},
        "event_id": {"type": "string"},
        "subscriber_id": {"type": "string"},
        "status": {"enum": _DELIVERY_STATUSES},
        "attempts": {"type": "integer"},
        "next_attempt_at": _NULLABLE_TIME,
        "leased": {"type": "boolean"},
        "last_status_code": {"type": ["integer", "null"]},
        "last_error": _NULLABLE_STR,
        "created_at": _TIME,
        "updated_at": _TIME,
        "completed_at": _NULLABLE_TIME,
        "attempt_log": {"type": "array", "items": {"$ref": "#/components/schemas/Attempt"}},
    },
    "attempt_log",
)
_REFUSED = _strict(
    {
        "id": {"type": "integer"},
        "received_at": _TIME,
        "reason": {"type": "string"},
        "detail": _NULLABLE_STR,
        "http_status": {"type": "integer"},
        "source_ip": _NULLABLE_STR,
        "body_sha256": _NULLABLE_STR,
        "body_size": {"type": "integer"},
        "job_id": _NULLABLE_STR,
    }
)

_WEBHOOK_TEST = _strict(
    {
        "subscriber_id": {"type": "string"},
        "url": {"type": "string"},
        "enabled": {"type": "boolean"},
        "webhook_id": {"type": "string", "description": "the test event's webhook-id"},
        "type": {"const": "webhook.test"},
        "ok": {"type": "boolean", "description": "true when the subscriber answered a 2xx"},
        "outcome": {
            "enum": [
                "success",
                "http_error",
                "redirect",
                "gone",
                "timeout",
                "connection_error",
                "blocked",
            ]
        },
        "status_code": {"type": ["integer", "null"]},
        "duration_ms": {"type": "number", "minimum": 0},
        "response_body": {
            "type": ["string", "null"],
            "description": "the first 1024 characters of the answer",
        },
        "error": _NULLABLE_STR,
    }
)

_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "submit at most once per key (1 to 255 printable ASCII characters, e.g. a "
    "UUID; kept at least 24 hours): the same key and body again answer the first job (no "
    "second create); another body is a 422 idempotency_key_reused; while the first request "
    "runs, a 409 idempotency_key_in_flight",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
}


def _items(ref: str) -> dict[str, Any]:
    return _strict({"items": {"type": "array", "items": {"$ref": ref}}})


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


#: What each error status means on the admin API (every error body is an ``Error``).
_ERROR_MEANING = {
    400: "the request cannot be read (query parameter, JSON body)",
    401: "missing or wrong bearer token (with WWW-Authenticate: Bearer)",
    402: "the vendor refused: insufficient credits",
    404: "no such object",
    408: "the body did not arrive whole within BODY_READ_TIMEOUT_SECONDS (the connection is "
    "closed)",
    409: "conflict with the object's state",
    413: "body larger than MAX_CONTENT_LENGTH",
    422: "the body does not fit the model",
    429: "too many failed bearer checks from this address (Retry-After), or, on a submission, "
    "the vendor is busy; retry later",
    502: "the vendor failed or its answer was lost (the job is kept as evidence)",
    503: "the admin API is off (no ADMIN_TOKEN), or the database or the vendor cannot be reached",
}


def _errors(*codes: int, meaning: dict[int, str] | None = None) -> dict[str, Any]:
    """401, 429 and 503 (every route), plus ``codes``; ``meaning`` replaces the generic
    description of some of them for this route."""
    meanings = {**_ERROR_MEANING, **(meaning or {})}
    return {
        str(code): _json({"$ref": "#/components/schemas/Error"}, meanings[code])
        for code in sorted({401, 429, 503, *codes})
    }


def _param(name: str, where: str = "query", schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema or {"type": "string"},
    }


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
        },
    }


def openapi_document(
    *,
    task_in: type[BaseModel],
    subscriber_in: type[BaseModel],
    recover_in: type[BaseModel],
    event_types: Sequence[str],
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``/api/*`` (``GET /api/openapi.json``) as a JSON-ready dict.

    :param task_in: the pydantic model of ``POST /api/tasks``'s body; its JSON schema is used.
    :param subscriber_in: the model of ``POST /api/subscribers``'s body.
    :param recover_in: the model of ``POST /api/deliveries/recover``'s body.
    :param event_types: the subscribable webhook event types
        (:data:`receiver.domain.events.EVENT_TYPES`), the enum of ``Event.type``.
    :returns: ``{"openapi", "info", "components", "paths", "security"}``; raises nothing.
    """
    schemas: dict[str, Any] = {
        "Error": _ERROR,
        "Job": _JOB,
        "Event": {
            **_EVENT,
            "properties": {**_EVENT["properties"], "type": {"enum": list(event_types)}},
        },
        "Callback": _CALLBACK,
        "Subscriber": _SUBSCRIBER,
        "Delivery": _DELIVERY,
        "Attempt": _ATTEMPT,
        "Refused": _REFUSED,
        "WebhookTest": _WEBHOOK_TEST,
    }
    for model in (task_in, subscriber_in, recover_in):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    limit = _param("limit", schema={"type": "integer", "minimum": 1, "maximum": 200})
    job_id = _param("job_id", "path")
    sub_id = _param("subscriber_id", "path")
    dlv_id = _param("delivery_id", "path")
    ref = "#/components/schemas/"
    paths: dict[str, Any] = {
        "/api/tasks": {
            "post": {
                "summary": "Submit a task (upload images, create the vendor task)",
                "parameters": [_IDEMPOTENCY_KEY],
                "requestBody": _body(task_in),
                "responses": {
                    "201": {
                        **_json({"$ref": ref + "Job"}, "the job"),
                        "headers": {
                            "Idempotent-Replayed": {
                                "description": "true when this is the first answer to a "
                                "request with the same Idempotency-Key and body, again",
                                "schema": {"const": "true"},
                            }
                        },
                    },
                    **_errors(
                        400,
                        402,
                        408,
                        409,
                        413,
                        422,
                        429,
                        502,
                        meaning={
                            409: "idempotency_key_in_flight: the first request with this "
                            "Idempotency-Key is still running (Retry-After)",
                            422: "the body does not fit the model; idempotency_key_reused (this "
                            "Idempotency-Key came with another body); invalid_image; or the "
                            "vendor refused the prompt or image (moderation)",
                        },
                    ),
                },
            },
            "get": {
                "summary": "List jobs, newest first",
                "parameters": [
                    _param("status"),
                    _param("model"),
                    _param("since", schema={"type": "string", "format": "date-time"}),
                    _param("before"),
                    limit,
                ],
                "responses": {"200": _json(_items(ref + "Job"), "jobs"), **_errors(400)},
            },
        },
        "/api/tasks/{job_id}": {
            "get": {
                "summary": "A job with its events, callbacks and deliveries",
                "parameters": [job_id],
                "responses": {"200": _json({"$ref": ref + "Job"}, "the job"), **_errors(404)},
            }
        },
        "/api/subscribers": {
            "post": {
                "summary": "Register a subscriber (its secret is shown once)",
                "requestBody": _body(subscriber_in),
                "responses": {
                    "201": _json({"$ref": ref + "Subscriber"}, "the subscriber with its secret"),
                    **_errors(400, 408, 413, 422),
                },
            },
            "get": {
                "summary": "List subscribers",
                "responses": {"200": _json(_items(ref + "Subscriber"), "subscribers"), **_errors()},
            },
        },
        "/api/subscribers/{subscriber_id}": {
            "get": {
                "summary": "One subscriber",
                "parameters": [sub_id],
                "responses": {
                    "200": _json({"$ref": ref + "Subscriber"}, "subscriber"),
                    **_errors(404),
                },
            },
            "delete": {
                "summary": "Remove a subscriber; its pending deliveries are cancelled",
                "parameters": [sub_id],
                "responses": {"204": {"description": "removed"}, **_errors(404)},
            },
        },
        **{
            f"/api/subscribers/{{subscriber_id}}/{action}": {
                "post": {
                    "summary": summary,
                    "parameters": [sub_id],
                    "responses": {
                        "200": _json({"$ref": ref + "Subscriber"}, "subscriber"),
                        **_errors(404),
                    },
                }
            }
            for action, summary in (
                ("rotate-secret", "New secret; the old one keeps signing during the grace period"),
                ("enable", "Enable a subscriber and clear its failure streak"),
                ("disable", "Disable a subscriber"),
            )
        },
        "/api/subscribers/{subscriber_id}/test": {
            "post": {
                "summary": "Send one signed webhook.test now and return the subscriber's answer",
                "parameters": [sub_id],
                "responses": {
                    "200": _json({"$ref": ref + "WebhookTest"}, "the subscriber's answer"),
                    **_errors(404),
                },
            }
        },
        "/api/deliveries": {
            "get": {
                "summary": "List deliveries, newest first",
                "parameters": [
                    _param("status", schema={"enum": _DELIVERY_STATUSES}),
                    _param("subscriber_id"),
                    _param("event_id"),
                    _param("before"),
                    limit,
                ],
                "responses": {"200": _json(_items(ref + "Delivery"), "deliveries"), **_errors(400)},
            }
        },
        "/api/deliveries/{delivery_id}": {
            "get": {
                "summary": "A delivery with its attempt log",
                "parameters": [dlv_id],
                "responses": {"200": _json({"$ref": ref + "Delivery"}, "delivery"), **_errors(404)},
            }
        },
        "/api/deliveries/{delivery_id}/retry": {
            "post": {
                "summary": "Send a finished delivery again now (same webhook-id)",
                "parameters": [dlv_id],
                "responses": {
                    "200": _json({"$ref": ref + "Delivery"}, "delivery"),
                    **_errors(404, 409),
                },
            }
        },
        "/api/deliveries/recover": {
            "post": {
                "summary": "Send again every delivery that failed since a time",
                "requestBody": _body(recover_in),
                "responses": {
                    "200": _json(
                        _strict({"requeued": {"type": "integer", "minimum": 0}}),
                        "how many were queued again",
                    ),
                    **_errors(400, 408, 413, 422),
                },
            }
        },
        "/api/refused-callbacks": {
            "get": {
                "summary": "The bounded log of refused callbacks",
                "parameters": [limit],
                "responses": {
                    "200": _json(_items("#/components/schemas/Refused"), "refusals"),
                    **_errors(400),
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": _json({"type": "object", "required": ["openapi", "paths"]}, "OpenAPI"),
                    **_errors(),
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "runway-relay admin API",
            "version": "0.1.0",
            "description": "Webhook event types: " + ", ".join(event_types),
        },
        "components": {
            "schemas": schemas,
            # The table of POST /videos/create models (client.catalog), as data.
            "x-video-models": {
                "source": SOURCE,
                "default": DEFAULT_MODEL,
                "models": [spec.to_json() for spec in VIDEO_MODELS.values()],
                "passed_through_unchecked": list(UNLISTED_MODELS),
                "own_endpoints": dict(ENDPOINT_MODELS),
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
