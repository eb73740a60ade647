"""The OpenAPI documents tell the truth, route by route (issue 17, SPEC §7).

Each service's document is a valid OpenAPI 3.1 document; every protected route declares the
bearer scheme and its 401/403; every error answer is the one `ErrorBody`; every operation has
an id `<service>.<verb_noun>`, tags, a typed success schema, and examples for its bodies.
The apps are built, not started: no database or broker is needed.
"""
from __future__ import annotations

import importlib
import json
import re
from functools import cache
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from shared.web.http import _has_role_guard
from shared.web.openapi import api_routes

SERVICES = ("contacts", "consent", "retention", "billing")
# Public by design: operations, login and activation, and the text of a privacy notice (a notice is public).
OPEN = {"/healthz", "/readyz", "/metrics", "/asyncapi.json", "/auth/login", "/auth/activate", "/notices/{version}"}
ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


@cache
def app_of(service: str) -> Any:
    return importlib.import_module(f"services.{service}.app").build_app()


@cache
def document(service: str) -> dict[str, Any]:
    return app_of(service).openapi()


def operations(service: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in document(service)["paths"].items()
            for method, op in item.items()]


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def has_example(doc: dict[str, Any], media: dict[str, Any]) -> bool:
    if "example" in media or "examples" in media:
        return True
    schema = resolve(doc, media.get("schema", {}))
    if "examples" in schema or "example" in schema:
        return True
    items = schema.get("items")
    return bool(items) and ("examples" in resolve(doc, items))


def problems_of(service: str) -> list[str]:
    """Every rule an operation of the service breaks, as `METHOD path: rule`."""
    doc = document(service)
    guarded = {(m, r.path_format): _has_role_guard(r.dependant) for r in api_routes(app_of(service)) for m in r.methods}
    found = []
    for method, path, op in operations(service):
        where = f"{method} {path}"
        if not re.fullmatch(rf"{service}\.[a-z]+(_[a-z0-9]+)+", op.get("operationId", "")):
            found.append(f"{where}: operationId {op.get('operationId')!r} is not {service}.verb_noun")
        if not op.get("tags"):
            found.append(f"{where}: no tags")
        responses = op["responses"]
        if guarded[(method, path)]:
            if op.get("security") != [{"bearer": []}]:
                found.append(f"{where}: protected but no bearer security")
            found += [f"{where}: protected but no {s}" for s in ("401", "403") if s not in responses]
        elif op.get("security"):
            found.append(f"{where}: open but declares security")
        for status, response in responses.items():
            if int(status) >= 400:
                if response.get("content", {}).get("application/json", {}).get("schema") != ERROR_REF:
                    found.append(f"{where}: {status} is not ErrorBody")
            elif status != "204":
                content = response.get("content") or {}
                if not content:
                    found.append(f"{where}: {status} has no content")
                for media_type, media in content.items():
                    schema = resolve(doc, media.get("schema", {}))
                    if media_type == "application/json" and not (
                            schema.get("properties") or schema.get("items") or schema.get("anyOf")):
                        found.append(f"{where}: {status} {media_type} has no response model")
                    if not has_example(doc, media):
                        found.append(f"{where}: {status} {media_type} has no example")
        body = op.get("requestBody", {}).get("content", {})
        found += [f"{where}: request {t} has no example" for t, m in body.items() if not has_example(doc, m)]
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_document_is_valid_openapi(service: str) -> None:
    validate(document(service))


@pytest.mark.parametrize("service", SERVICES)
def test_no_framework_validation_error_schema(service: str) -> None:
    """One error schema (SPEC §7): FastAPI's own HTTPValidationError is nowhere."""
    text = json.dumps(document(service))
    assert "HTTPValidationError" not in text and '"ValidationError"' not in text


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_follows_the_contract_rules(service: str) -> None:
    assert problems_of(service) == []


@pytest.mark.parametrize("service", SERVICES)
def test_open_routes_are_exactly_operations_and_login(service: str) -> None:
    """Only health, readiness, metrics, the AsyncAPI document and login/activation go without a token."""
    open_ops = {path for method, path, op in operations(service) if "security" not in op}
    assert open_ops <= OPEN


@pytest.mark.parametrize("service", SERVICES)
def test_operation_ids_are_unique(service: str) -> None:
    ids = [op["operationId"] for _, _, op in operations(service)]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("service", SERVICES)
def test_docs_pages_use_local_assets(service: str) -> None:
    """/docs and /redoc load Swagger UI and ReDoc from the service itself, not a CDN (works offline)."""
    client = TestClient(app_of(service))
    for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = client.get(page).text
        assert "cdn." not in html and "unpkg" not in html
        src = re.search(rf'src="([^"]*{asset})"', html)
        assert src and src.group(1).startswith("/")
        assert client.get(src.group(1)).status_code == 200


def example_problems(service: str) -> list[str]:
    """Every example a component schema gives that its own schema refuses (an untrue document:
    Redocly's no-invalid-schema-examples found 15 such on the first try)."""
    import jsonschema

    doc = document(service)
    found = []
    for name, schema in doc["components"]["schemas"].items():
        for example in schema.get("examples", []):
            root = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
            for error in jsonschema.Draft202012Validator(root).iter_errors(example):
                found.append(f"{name}: {error.message} at {'/'.join(map(str, error.absolute_path)) or '(top)'}")
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_example_validates_against_its_own_schema(service: str) -> None:
    assert example_problems(service) == []
