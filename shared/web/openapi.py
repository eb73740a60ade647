"""Every service's OpenAPI document says what its routes really do (issue 17).

One error schema (`ErrorBody`, SPEC §7) for every error answer; `errors(...)` is the one way a
route names the errors its own code raises (404, 409, ...). The errors that come from the
platform, not the route, are added here from what the route is: the request gate answers 401
and the role guard 403 on a guarded route (which is also marked with the bearer scheme), the
gate 413 and the JSON decoder 400 on a route that takes a body, and validation 422 on one with parameters or a body.
Operation ids are `<service>.<function name>`.
"""
from __future__ import annotations

from typing import Any, Iterable

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

BEARER = "bearer"
ERROR_DESCRIPTIONS = {
    400: "The request is malformed",
    401: "No valid bearer token (checked before the body is read; the refusal is audited)",
    403: "The token's role may not do this (the denial is audited)",
    404: "Not found, or not visible to the caller",
    409: "Conflicts with the current state",
    413: "The body is larger than the route's limit",
    422: "Invalid input; `fields` names each bad field and the rule it breaks",
    423: "Locked for now",
    429: "Too many requests; see the Retry-After header",
    503: "A dependency (the database) is not available; retry",
}


class ErrorBody(BaseModel):
    """SPEC §7: every error answer. `fields` maps a bad field to the rule it breaks (never its value)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"error": "validation_error", "message": "invalid input: email: not a valid email address",
         "fields": {"email": "not a valid email address"}}]})

    error: str = Field(description="A stable code: unauthenticated, forbidden, not_found, conflict, too_large,"
                                   " validation_error, too_many_requests, ...")
    message: str = Field(description="What went wrong, for people; names fields and rules, never values")
    fields: dict[str, str] = Field(description="Bad field → the rule it breaks; empty when no field is at fault")


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entries for the errors a route itself raises, each with `ErrorBody`."""
    return {status: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[status]} for status in statuses}


def operation_id(service: str) -> Any:
    """`generate_unique_id_function` for a service: `billing.put_meter`."""

    def generate(route: APIRoute) -> str:
        return f"{service}.{route.name}"

    return generate


def with_example(example: Any) -> dict[str, Any]:
    """`json_schema_extra` of a model: one example of it."""
    return {"examples": [example]}


def _error_response(status: int) -> dict[str, Any]:
    return {"description": ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}


def platform_errors(route: Any, guarded: bool) -> list[int]:
    """The errors the platform (not the route's own code) can answer for this route."""
    statuses = []
    if guarded:
        statuses += [401, 403]
    if route.body_field is not None:  # 400: a body that is not JSON at all (found by the fuzzing conformance check)
        statuses += [400, 413]
    dependant = route.dependant
    if route.body_field is not None or dependant.path_params or dependant.query_params or dependant.header_params:
        statuses.append(422)
    return statuses


def api_routes(app: FastAPI) -> Iterable[Any]:
    """Every documented API route of the app, included routers flattened (FastAPI keeps them nested)."""
    for route in app.routes:
        contexts = route.effective_route_contexts() if hasattr(route, "effective_route_contexts") else [route]
        for ctx in contexts:
            if getattr(ctx, "dependant", None) is not None and getattr(ctx, "include_in_schema", False) \
                    and getattr(ctx, "methods", None):
                yield ctx


def build_document(app: FastAPI, is_guarded: Any) -> dict[str, Any]:
    """FastAPI's document, made truthful: ErrorBody everywhere, security, the platform's errors."""
    doc = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                      description=app.description, routes=app.routes, tags=app.openapi_tags)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["ErrorBody"] = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    doc["components"]["securitySchemes"] = {BEARER: {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A token minted by `rekisteri token` (staff, services) or by contacts' POST /auth/login"
                       " (self-service), for this service's audience (SPEC §5)"}}
    for route in api_routes(app):
        guarded = is_guarded(route)
        for method in route.methods:
            op = doc["paths"][route.path_format][method.lower()]
            responses = op.setdefault("responses", {})
            for status in platform_errors(route, guarded):
                responses[str(status)] = _error_response(status)
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = _error_response(int(status))["content"]
            # Public routes say so (`security: []`) rather than leave it unsaid (Redocly's security-defined).
            op["security"] = [{BEARER: []}] if guarded else []
    # Where a client finds the service: the embedded stack's port (docker-compose and Kubernetes
    # publish the same port; README "The two commands").
    port = getattr(getattr(app.state, "runtime", None), "settings", None)
    if port is not None and getattr(port, "port", None):
        doc["servers"] = [{"url": f"http://127.0.0.1:{port.port}", "description": "rekisteri up (embedded stack)"}]
    doc["info"]["license"] = {"name": "Proprietary: the company's own register", "identifier": "LicenseRef-Proprietary"}
    for schema in schemas.values():
        for example in schema.get("examples", []):
            _restore_nulls(example, schema, schemas)
    return doc


def _nullable(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "null" or any(s.get("type") == "null" for s in schema.get("anyOf", []))


def _restore_nulls(example: Any, schema: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Put back the `null`s FastAPI drops from examples (it encodes the document with
    exclude_none), so an example keeps every required field and validates against its schema."""
    ref = schema.get("$ref")
    if ref:
        schema = schemas.get(ref.rsplit("/", 1)[-1], {})
    if isinstance(example, list) and "items" in schema:
        for item in example:
            _restore_nulls(item, schema["items"], schemas)
    if not isinstance(example, dict):
        return
    properties = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in example and _nullable(properties.get(name, {})):
            example[name] = None
    for name, value in example.items():
        if name in properties:
            for choice in [properties[name], *properties[name].get("anyOf", [])]:
                _restore_nulls(value, choice, schemas)


def install_openapi(app: FastAPI, is_guarded: Any) -> None:
    """Serve the truthful document at `app.openapi_url` (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_document(app, is_guarded)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def media(examples: dict[str, Any]) -> dict[str, Any]:
    """A `responses` entry for a route that also answers other media types than JSON (CSV, PDF,
    HTML, ZIP, XML): each type with its example; a binary type (example None) as a byte string."""
    content = {}
    for media_type, example in examples.items():
        if example is None:
            content[media_type] = {"schema": {"type": "string", "format": "binary"},
                                   "example": f"(the {media_type} bytes)"}
        else:
            content[media_type] = {"schema": {"type": "string"}, "example": example}
    return {"content": content}
