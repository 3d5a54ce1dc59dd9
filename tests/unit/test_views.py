"""The read side's place: receiver/views imports neither the web layer, the CLI nor the
services, and the OpenAPI document's schemas are the response models' own."""

from __future__ import annotations

import ast
from pathlib import Path

import receiver.views
from receiver.domain.events import EVENT_TYPES
from receiver.views import schemas
from receiver.web.api import api_document
from receiver.web.openapi import REF_TEMPLATE, RESPONSE_MODELS
from receiver.web.schemas import RecoverIn, SubscriberIn, TaskSubmissionIn

FORBIDDEN = ("receiver.web", "receiver.cli", "receiver.services", "flask", "click")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_views_import_neither_web_nor_cli_nor_services() -> None:
    package = Path(receiver.views.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert len(modules) >= 5
    for module in modules:
        bad = {n for n in _imports(module) if n.startswith(FORBIDDEN)}
        assert bad == set(), (module.name, bad)


def test_the_documents_schemas_are_the_models_schemas() -> None:
    doc = api_document()
    components = doc["components"]["schemas"]
    for model in (*RESPONSE_MODELS, TaskSubmissionIn, SubscriberIn, RecoverIn):
        own = model.model_json_schema(ref_template=REF_TEMPLATE)
        own.pop("$defs", None)
        assert components[model.__name__] == own, model.__name__
    job = components["Job"]
    assert job["additionalProperties"] is False
    assert set(job["required"]) == set(schemas.Job.model_fields)
    assert components["Event"]["properties"]["type"]["enum"] == list(EVENT_TYPES)
    assert "secret" not in components["Subscriber"]["properties"]
    assert components["SubscriberCreated"]["properties"]["secret"]["pattern"] == "^whsec_"
