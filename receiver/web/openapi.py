"""The OpenAPI 3.1 document of ``/api/*``, built from the same pydantic models that validate
the requests, so the two cannot drift apart."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "request_id": {"type": ["string", "null"]},
            },
        }
    },
}

_NULLABLE_STR = {"type": ["string", "null"]}
_JOB = {
    "type": "object",
    "required": ["job_id", "status", "model", "artifacts", "metadata"],
    "properties": {
        "job_id": {"type": "string"},
        "task_id": _NULLABLE_STR,
        "model": {"type": "string"},
        "status": {"type": "string"},
        "progress": {"type": ["number", "null"]},
        "progress_text": _NULLABLE_STR,
        "artifacts": {"type": "array", "items": {"type": "object"}},
        "error": {"type": ["object", "null"]},
        "submit_error": {"type": ["object", "null"]},
        "metadata": {"type": "object"},
        "request": {"type": "object"},
        "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
        "last_callback_at": _NULLABLE_STR,
        "finished_at": _NULLABLE_STR,
        "events": {"type": "array", "items": {"type": "object"}},
        "callbacks": {"type": "array", "items": {"type": "object"}},
        "deliveries": {"type": "array", "items": {"type": "object"}},
    },
}
_SUBSCRIBER = {
    "type": "object",
    "required": ["id", "url", "event_types", "enabled"],
    "properties": {
        "id": {"type": "string"},
        "url": {"type": "string"},
        "description": _NULLABLE_STR,
        "event_types": {"type": "array", "items": {"type": "string"}},
        "enabled": {"type": "boolean"},
        "disabled_reason": _NULLABLE_STR,
        "max_in_flight": {"type": "integer"},
        "secret": {"type": "string", "description": "only when created or rotated"},
    },
}
_DELIVERY = {
    "type": "object",
    "required": ["id", "event_id", "subscriber_id", "status", "attempts"],
    "properties": {
        "id": {"type": "string"},
        "event_id": {"type": "string"},
        "subscriber_id": {"type": "string"},
        "status": {"enum": ["pending", "succeeded", "failed", "cancelled"]},
        "attempts": {"type": "integer"},
        "next_attempt_at": _NULLABLE_STR,
        "last_status_code": {"type": ["integer", "null"]},
        "last_error": _NULLABLE_STR,
        "attempt_log": {"type": "array", "items": {"type": "object"}},
    },
}


def _items(ref: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": {"$ref": ref}}},
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    out = {"401": _json({"$ref": "#/components/schemas/Error"}, "missing or wrong bearer token")}
    for code in codes:
        out[str(code)] = _json({"$ref": "#/components/schemas/Error"}, "error")
    return out


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
    """The document as a JSON-ready dict."""
    schemas: dict[str, Any] = {
        "Error": _ERROR,
        "Job": _JOB,
        "Subscriber": _SUBSCRIBER,
        "Delivery": _DELIVERY,
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
                "requestBody": _body(task_in),
                "responses": {
                    "201": _json({"$ref": ref + "Job"}, "the job"),
                    **_errors(400, 402, 422, 429, 502, 503),
                },
            },
            "get": {
                "summary": "List jobs, newest first",
                "parameters": [
                    _param("status"),
                    _param("model"),
                    _param("since"),
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
                    **_errors(400, 422),
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
        "/api/deliveries": {
            "get": {
                "summary": "List deliveries, newest first",
                "parameters": [
                    _param(
                        "status", schema={"enum": ["pending", "succeeded", "failed", "cancelled"]}
                    ),
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
                        {"type": "object", "properties": {"requeued": {"type": "integer"}}},
                        "how many were queued again",
                    ),
                    **_errors(400, 422),
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
    }
    schemas["Refused"] = {"type": "object", "required": ["id", "reason", "received_at"]}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "runway-relay admin API",
            "version": "0.1.0",
            "description": "Webhook event types: " + ", ".join(event_types),
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
