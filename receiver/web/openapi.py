"""The OpenAPI 3.1 document of ``/api/*``. Its ``components/schemas`` are generated from the
pydantic models that validate the requests (:mod:`receiver.web.schemas`) and that serialise
the responses (:mod:`receiver.views.schemas`), so neither can drift from the document; the
paths (which route answers which model) are written here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from client.catalog import DEFAULT_MODEL, ENDPOINT_MODELS, SOURCE, UNLISTED_MODELS, VIDEO_MODELS
from receiver.domain.statuses import DELIVERY_STATUSES
from receiver.views.schemas import (
    Attempt,
    Callback,
    Delivery,
    DeliveryDetail,
    Event,
    Job,
    JobDetail,
    Refused,
    Subscriber,
    SubscriberCreated,
    SubscriberListed,
    WebhookTest,
)
from receiver.web.schemas import (
    DeliveryList,
    Error,
    JobList,
    RefusedList,
    Requeued,
    SubscriberList,
)

#: The models whose schemas are the document's ``components/schemas`` (each under its class
#: name), besides the request bodies given to :func:`openapi_document`.
RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    Error,
    Job,
    JobDetail,
    JobList,
    Event,
    Callback,
    Subscriber,
    SubscriberCreated,
    SubscriberListed,
    SubscriberList,
    Delivery,
    DeliveryDetail,
    DeliveryList,
    Attempt,
    Refused,
    RefusedList,
    WebhookTest,
    Requeued,
)
REF_TEMPLATE = "#/components/schemas/{model}"


def component_schemas(models: Sequence[type[BaseModel]]) -> dict[str, Any]:
    """The JSON schemas of ``models`` and of every model they use, by class name, with their
    references as ``#/components/schemas/<name>`` (pydantic's
    :func:`~pydantic.json_schema.models_json_schema`). Raises nothing for these models."""
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF_TEMPLATE)
    return dict(top.get("$defs", {}))


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


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
        str(code): _json(_ref(Error), meanings[code]) for code in sorted({401, 429, 503, *codes})
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
        "content": {"application/json": {"schema": _ref(model)}},
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
        (:data:`receiver.domain.events.EVENT_TYPES`), listed in the document's description
        (``Event.type``'s enum is the same list, from its model).
    :returns: ``{"openapi", "info", "components", "paths", "security"}``; raises nothing.
    """
    schemas = component_schemas([*RESPONSE_MODELS, task_in, subscriber_in, recover_in])
    limit = _param("limit", schema={"type": "integer", "minimum": 1, "maximum": 200})
    job_id = _param("job_id", "path")
    sub_id = _param("subscriber_id", "path")
    dlv_id = _param("delivery_id", "path")
    paths: dict[str, Any] = {
        "/api/tasks": {
            "post": {
                "summary": "Submit a task (upload images, create the vendor task)",
                "parameters": [_IDEMPOTENCY_KEY],
                "requestBody": _body(task_in),
                "responses": {
                    "201": {
                        **_json(_ref(Job), "the job"),
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
                "responses": {"200": _json(_ref(JobList), "jobs"), **_errors(400)},
            },
        },
        "/api/tasks/{job_id}": {
            "get": {
                "summary": "A job with its events, callbacks and deliveries",
                "parameters": [job_id],
                "responses": {
                    "200": _json(_ref(JobDetail), "the job with its history"),
                    **_errors(404),
                },
            }
        },
        "/api/subscribers": {
            "post": {
                "summary": "Register a subscriber (its secret is shown once)",
                "requestBody": _body(subscriber_in),
                "responses": {
                    "201": _json(_ref(SubscriberCreated), "the subscriber with its secret"),
                    **_errors(400, 408, 413, 422),
                },
            },
            "get": {
                "summary": "List subscribers",
                "responses": {"200": _json(_ref(SubscriberList), "subscribers"), **_errors()},
            },
        },
        "/api/subscribers/{subscriber_id}": {
            "get": {
                "summary": "One subscriber",
                "parameters": [sub_id],
                "responses": {
                    "200": _json(_ref(Subscriber), "subscriber"),
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
                        "200": _json(_ref(answer), "subscriber"),
                        **_errors(404),
                    },
                }
            }
            for action, summary, answer in (
                (
                    "rotate-secret",
                    "New secret; the old one keeps signing during the grace period",
                    SubscriberCreated,
                ),
                ("enable", "Enable a subscriber and clear its failure streak", Subscriber),
                ("disable", "Disable a subscriber", Subscriber),
            )
        },
        "/api/subscribers/{subscriber_id}/test": {
            "post": {
                "summary": "Send one signed webhook.test now and return the subscriber's answer",
                "parameters": [sub_id],
                "responses": {
                    "200": _json(_ref(WebhookTest), "the subscriber's answer"),
                    **_errors(404),
                },
            }
        },
        "/api/deliveries": {
            "get": {
                "summary": "List deliveries, newest first",
                "parameters": [
                    _param("status", schema={"enum": list(DELIVERY_STATUSES)}),
                    _param("subscriber_id"),
                    _param("event_id"),
                    _param("before"),
                    limit,
                ],
                "responses": {"200": _json(_ref(DeliveryList), "deliveries"), **_errors(400)},
            }
        },
        "/api/deliveries/{delivery_id}": {
            "get": {
                "summary": "A delivery with its attempt log",
                "parameters": [dlv_id],
                "responses": {
                    "200": _json(_ref(DeliveryDetail), "delivery with its attempts"),
                    **_errors(404),
                },
            }
        },
        "/api/deliveries/{delivery_id}/retry": {
            "post": {
                "summary": "Send a finished delivery again now (same webhook-id)",
                "parameters": [dlv_id],
                "responses": {
                    "200": _json(_ref(Delivery), "delivery"),
                    **_errors(404, 409),
                },
            }
        },
        "/api/deliveries/recover": {
            "post": {
                "summary": "Send again every delivery that failed since a time",
                "requestBody": _body(recover_in),
                "responses": {
                    "200": _json(_ref(Requeued), "how many were queued again"),
                    **_errors(400, 408, 413, 422),
                },
            }
        },
        "/api/refused-callbacks": {
            "get": {
                "summary": "The bounded log of refused callbacks",
                "parameters": [limit],
                "responses": {
                    "200": _json(_ref(RefusedList), "refusals"),
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
