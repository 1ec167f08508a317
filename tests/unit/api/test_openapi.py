"""The OpenAPI document declares every error a route can answer, in the one ErrorOut shape."""

from __future__ import annotations

import pytest
import redis
from facegrid_services.api.app import create_app
from facegrid_services.api.errors import ErrorOut, Reason, error_body, validation_detail
from facegrid_services.api.settings import ServerSettings
from facegrid_services.store import db

from facegrid import tokens
from facegrid.contract import API_PREFIX

pytestmark = pytest.mark.unit
ERROR_REF = "#/components/schemas/ErrorOut"


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    d = tmp_path_factory.mktemp("openapi")
    pub = d / "signing.pub"
    pub.write_bytes(tokens.public_pem(tokens.generate_private_key()))
    settings = ServerSettings(admin_token="a" * 32, database_url=f"sqlite:///{d / 'x.db'}",
                              redis_url="redis://127.0.0.1:1", public_key_file=pub)
    engine = db.make_engine(settings.database_url)
    # Nothing connects: the app is only built and asked for its schema.
    app = create_app(settings, sessions=db.session_factory(engine),
                     redis_client=redis.Redis(port=1),
                     verifier=tokens.TokenVerifier.from_pem(pub))
    yield app.openapi()
    engine.dispose()


def _operations(schema):
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op


def test_every_error_has_the_one_shape(schema):
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert "ErrorOut" in schema["components"]["schemas"]
    for method, path, op in _operations(schema):
        for code, resp in op["responses"].items():
            if int(code) < 400 or path == "/readyz":
                continue
            assert resp["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, (
                method, path, code)


def test_cross_cutting_codes_are_declared(schema):
    ops = {(m, p): set(op["responses"]) for m, p, op in _operations(schema)}
    for (method, path), codes in ops.items():
        if not path.startswith(API_PREFIX):
            continue
        assert {"401", "429", "503"} <= codes, (method, path, codes)
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            assert {"400", "413"} <= codes, (method, path, codes)
        if "{" in path:
            assert {"404", "422"} <= codes, (method, path, codes)
    # Roles: a viewer route never answers 403, an operator or admin route can.
    assert "403" not in ops[("GET", f"{API_PREFIX}/people")]
    assert "403" in ops[("POST", f"{API_PREFIX}/people")]
    assert "403" in ops[("GET", f"{API_PREFIX}/audit")]
    # A node's own token (wrong node: 403).
    assert "403" in ops[("POST", f"{API_PREFIX}/nodes/{{node_id}}/heartbeat")]
    # Declared by the route itself, kept with its own description.
    created = dict(_operations_by_key(schema))[("POST", f"{API_PREFIX}/people")]
    assert "name or external_id" in created["responses"]["409"]["description"]
    assert "Retry-After" in created["responses"]["429"]["headers"]
    assert "WWW-Authenticate" in created["responses"]["401"]["headers"]


def _operations_by_key(schema):
    for m, p, op in _operations(schema):
        yield (m, p), op


def test_error_body_matches_the_model():
    body = error_body(404, "person 3 does not exist")
    assert ErrorOut.model_validate(body).reason is Reason.not_found
    errors = [{"loc": ["query", "limit"], "msg": "too big", "type": "less_than_equal"}]
    assert validation_detail(errors) == "query.limit: too big"
    assert len(validation_detail(errors * 500, limit=100)) == 100


def test_every_list_is_paginated_the_same_way(schema):
    """No route answers a bare array; every list is {items, total, limit, offset} with
    the same limit (1-1000, default 100) and offset parameters."""
    comps = schema["components"]["schemas"]
    lists = []
    for method, path, op in _operations(schema):
        ok = op["responses"].get("200", op["responses"].get("201", {}))
        body = ok.get("content", {}).get("application/json", {}).get("schema", {})
        assert body.get("type") != "array", (method, path)
        ref = body.get("$ref", "")
        props = comps.get(ref.rsplit("/", 1)[-1], {}).get("properties", {}) if ref else {}
        if props.get("items", {}).get("type") != "array":
            continue
        lists.append(path)
        assert {"total", "limit", "offset"} <= set(props), (path, sorted(props))
        params = {p["name"]: p["schema"] for p in op.get("parameters", [])}
        assert params["limit"] == {"type": "integer", "maximum": 1000, "minimum": 1,
                                   "default": 100, "description": "Page size (1–1000)",
                                   "title": "Limit"}, (path, params["limit"])
        assert params["offset"]["minimum"] == 0 and params["offset"]["default"] == 0, path
    for path in ("/nodes", "/people", "/people/{person_id}/embeddings", "/sightings",
                 "/presences", "/strangers", "/attendance", "/alerts", "/dead-letters",
                 "/api-tokens", "/audit", "/groups", "/groups/{group_id}/members",
                 "/schedules", "/closures", "/statuses", "/corrections", "/webhooks",
                 "/webhooks/{subscription_id}/deliveries"):
        assert f"{API_PREFIX}{path}" in lists, path
