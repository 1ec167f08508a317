"""Every 4xx has the one documented shape (errors.ErrorOut): route refusals, request
validation, the request guard, unknown paths and methods."""

from __future__ import annotations

import pytest
from facegrid_services.api.errors import ErrorOut
from fastapi.testclient import TestClient
from fixtures.api import build_api

from facegrid.contract import API_PREFIX

pytestmark = pytest.mark.integration


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'facegrid.db'}"


def _error(r, status: int, reason: str) -> ErrorOut:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = ErrorOut.model_validate(r.json())
    assert body.status == status and body.reason == reason and body.detail, r.json()
    return body


def test_route_and_validation_errors(api):
    h = api.admin
    _error(api.client.get(f"{API_PREFIX}/people/999", headers=h), 404, "not_found")
    body = _error(api.client.get(f"{API_PREFIX}/people?limit=0", headers=h), 422,
                  "validation_failed")
    assert body.errors[0].loc == ["query", "limit"] and "query.limit" in body.detail
    body = _error(api.client.post(f"{API_PREFIX}/people", headers=h, json={"nom": "x"}), 422,
                  "validation_failed")
    assert {tuple(e.loc) for e in body.errors} == {("body", "name"), ("body", "nom")}
    # A semantic refusal of a well-formed request.
    body = _error(api.client.get(f"{API_PREFIX}/statuses", headers=h,
                                 params={"start": "2026-03-02", "end": "2026-03-01"}),
                  422, "invalid_value")
    assert body.errors == [] and "before" in body.detail
    # Unix times are not ISO-8601 dates, whatever pydantic would make of them.
    _error(api.client.get(f"{API_PREFIX}/sightings?start=0.5", headers=h), 422,
           "validation_failed")
    api.client.post(f"{API_PREFIX}/people", headers=h, json={"name": "Ada"})
    body = _error(api.client.post(f"{API_PREFIX}/people", headers=h, json={"name": "Ada"}),
                  409, "conflict")
    assert "already exists" in body.detail


def test_auth_errors(api):
    r = api.client.get(f"{API_PREFIX}/people")
    _error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    r = api.client.post(f"{API_PREFIX}/people", json={"name": "x"})  # the guard's 401
    _error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    viewer = api.client.post(f"{API_PREFIX}/api-tokens", headers=api.admin,
                             json={"name": "v", "role": "viewer"}).json()["token"]
    body = _error(api.client.post(f"{API_PREFIX}/people", json={"name": "x"},
                                  headers={"Authorization": f"Bearer {viewer}"}),
                  403, "forbidden")
    assert "operator role" in body.detail


def test_guard_and_router_errors(api):
    big = b"x" * (api.settings.max_body_bytes + 1)
    _error(api.client.post(f"{API_PREFIX}/people", headers=api.admin, content=big),
           413, "body_too_large")
    _error(api.client.get(f"{API_PREFIX}/no-such-route", headers=api.admin), 404, "not_found")
    r = api.client.put(f"{API_PREFIX}/alerts", headers=api.admin)
    _error(r, 405, "method_not_allowed")
    assert "GET" in r.headers["allow"]


def test_throttle_error(database_url, redis_url, signing_key, tmp_path):
    app, r, engine, _settings, _clock = build_api(database_url, redis_url, signing_key,
                                                  tmp_path, auth_failures_max=2)
    with TestClient(app) as client:
        for _ in range(2):
            _error(client.get(f"{API_PREFIX}/people"), 401, "unauthorized")
        reply = client.get(f"{API_PREFIX}/people")
        _error(reply, 429, "auth_throttled")
        assert int(reply.headers["retry-after"]) >= 1
    r.close()
    engine.dispose()
