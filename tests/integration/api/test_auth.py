"""Every protected route refuses a missing or wrong credential (enumerated from OpenAPI)."""

from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

SAMPLES = {"person_id": "1", "node_id": "cam-1", "entry_id": "1-0", "alert_id": "1",
           "embedding_id": "1", "token_id": "1", "subscription_id": "1", "delivery_id": "1",
           "stranger_id": "1", "schedule_id": "1", "group_id": "1", "closure_id": "1",
           "day": "2026-03-02"}


def operations(api, scheme):
    spec = api.client.get("/openapi.json").json()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if any(scheme in s for s in op.get("security", [])):
                url = re.sub(r"{(\w+)}", lambda m: SAMPLES[m.group(1)], path)
                yield method.upper(), url


def test_admin_routes_refuse_missing_and_wrong_tokens(api):
    ops = list(operations(api, "ApiToken"))
    assert len(ops) >= 18, ops
    for method, url in ops:
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789abcdef"},
                        {"Authorization": "Bearer fgk_abcdefgh_" + "A" * 43},
                        {"Authorization": "Basic YWRtaW46YWRtaW4="},
                        api.node_headers("cam-1")):
            r = api.client.request(method, url, headers=headers, json={})
            assert r.status_code == 401, (method, url, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"


def test_node_routes_refuse_missing_and_admin_tokens(api):
    ops = list(operations(api, "NodeToken"))
    assert {u for _, u in ops} == {"/api/v1/nodes/register", "/api/v1/nodes/cam-1/heartbeat"}
    body = {"node_id": "cam-1", "timezone": "UTC", "model": "m", "version": "1",
            "sent_at": 1.0, "state": "active", "state_seconds": 0, "fps": 0,
            "drift_offset_ms": 0, "lamport": 0, "camera_up": True, "events_sent": 0,
            "events_dropped": 0, "backlog": 0}
    for method, url in ops:
        payload = {k: body[k] for k in (("node_id", "timezone", "model", "version")
                                        if url.endswith("register") else list(body)[4:])}
        for headers in ({}, api.admin):
            r = api.client.request(method, url, headers=headers, json=payload)
            assert r.status_code == 401, (url, headers, r.text)


def test_open_routes(api):
    for url in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/dashboard/"):
        assert api.client.get(url).status_code == 200, url
