"""OpenAPI completion: every status code a route can return, with the one error shape.

FastAPI documents what a route declares.  The refusals that come from the
request's path through the server are the same for whole classes of routes,
so they are derived here from each route instead of being repeated by hand:

* every route under ``/api/``: 429 (the request guard's throttle of failed
  authentications) and 503 (database or Redis unavailable);
* a route that needs a credential: 401; one that needs a role above viewer, or
  a node's own token: 403;
* a write (POST, PUT, PATCH, DELETE) under ``/api/``: 400 (an unreadable
  ``Content-Length``), 401 and 413 from the request guard, before any route;
* a route with parameters or a body: 422; a route with a path parameter: 404.

Codes a route declares itself (404 for an unknown body reference, 409 for a
taken name, ...) keep their description.  Every 4xx and 5xx is documented
with :class:`errors.ErrorOut`; FastAPI's own 422 schema is replaced by it.
"""

from __future__ import annotations

import http
from collections.abc import Iterable

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from facegrid.contract import API_PREFIX

from .deps import api_scheme, node_scheme
from .errors import ErrorOut
from .roles import Role

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_REF = "#/components/schemas/"
_DESCRIPTIONS = {
    400: "Unreadable request (Content-Length is not a number)",
    401: "No credential, or the credential is refused (unknown, expired, revoked)",
    403: "The credential's role (or node) may not do this",
    404: "No such resource",
    409: "Conflicts with existing data",
    413: "Request body over the server's limit (FACEGRID_MAX_BODY_BYTES)",
    422: "Invalid request: a value is out of range or malformed",
    429: "Too many failed authentications from this client: wait Retry-After seconds",
    503: "The database or Redis is unavailable",
}
_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds to wait",
                          "schema": {"type": "string", "pattern": "^[0-9]+$"}}},
}


def _dependencies(dependant: Dependant) -> Iterable[Dependant]:
    for dep in dependant.dependencies:
        yield dep
        yield from _dependencies(dep)


def api_routes(routes: Iterable) -> Iterable:
    """The API routes of an app as included (prefix and router dependencies applied).

    FastAPI >= 0.16x keeps included routers lazy and flattens them through
    ``iter_route_contexts``; older versions list flattened ``APIRoute`` objects.
    """
    contexts = getattr(routing, "iter_route_contexts", None)
    if contexts is None:
        yield from (r for r in routes if isinstance(r, APIRoute))
        return
    for ctx in contexts(list(routes)):
        if isinstance(ctx.original_route, APIRoute):
            yield ctx


def error_codes(route) -> set[int]:
    """The error statuses ``route`` can answer with, apart from those it declares."""
    codes: set[int] = set()
    under_api = route.path.startswith(f"{API_PREFIX}/")
    if under_api:
        codes |= {429, 503}
        if route.methods & BODY_METHODS:
            codes |= {400, 401, 413}
    for dep in _dependencies(route.dependant):
        if dep.call is api_scheme:
            codes.add(401)
        elif dep.call is node_scheme:
            codes |= {401, 403}
        needed = getattr(dep.call, "needed_role", None)
        if needed is not None and needed != Role.viewer:
            codes.add(403)
    every = [route.dependant, *_dependencies(route.dependant)]
    if any(d.path_params for d in every):
        codes.add(404)
    if route.body_field or any(d.path_params or d.query_params or d.header_params
                               or d.cookie_params for d in every):
        codes.add(422)
    return codes


def _error_response(code: int, description: str | None) -> dict:
    out = {"description": description or _DESCRIPTIONS.get(code)
           or http.HTTPStatus(code).phrase,
           "content": {"application/json": {"schema": {"$ref": f"{_REF}ErrorOut"}}}}
    if code in _HEADERS:
        out["headers"] = _HEADERS[code]
    return out


def complete(schema: dict, routes: Iterable) -> dict:
    """Add the derived error codes to ``schema`` and give every error the ErrorOut shape."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    model = ErrorOut.model_json_schema(ref_template=_REF + "{model}")
    components.update(model.pop("$defs", {}))
    components["ErrorOut"] = model
    for route in api_routes(routes):
        if not route.include_in_schema:
            continue
        derived = error_codes(route)
        for method in route.methods:
            operation = schema["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for code in sorted(derived | {int(c) for c in responses
                                          if c.isdigit() and int(c) >= 400}):
                declared = responses.get(str(code), {})
                if "application/json" in declared.get("content", {}) and \
                        "HTTPValidationError" not in str(declared):
                    continue  # a route's own body for this code (readyz's 503)
                description = declared.get("description")
                if description == "Validation Error":
                    description = None
                responses[str(code)] = _error_response(code, description)
            operation["responses"] = dict(sorted(responses.items()))
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the completed schema (built once)."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = complete(build(), app.routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
