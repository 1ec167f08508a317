"""Roles over every route: generated from the OpenAPI document against the role table below.

A route that is not in ROLE_TABLE fails the test (every new route needs a rule),
and so does a rule for a route that no longer exists.  Each role must get 403
exactly where the table says it lacks the rights, and never 401 on a route
its token may use.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from facegrid_services.api.roles import Role
from facegrid_services.store.models import ApiToken, AuditEntry
from sqlalchemy import select

from facegrid.contract import API_PREFIX

pytestmark = pytest.mark.integration

VIEW, OPER, ADMIN = "viewer", "operator", "admin"
NODE, OPEN = "node", "open"

#: (method, OpenAPI path) → the lowest role that may call it (or node / open).
ROLE_TABLE: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): OPEN,
    ("GET", "/readyz"): OPEN,
    ("GET", "/metrics"): OPEN,
    ("POST", f"{API_PREFIX}/nodes/register"): NODE,
    ("POST", f"{API_PREFIX}/nodes/{{node_id}}/heartbeat"): NODE,
    ("GET", f"{API_PREFIX}/nodes"): VIEW,
    ("GET", f"{API_PREFIX}/nodes/{{node_id}}"): VIEW,
    ("GET", f"{API_PREFIX}/people"): VIEW,
    ("POST", f"{API_PREFIX}/people"): OPER,
    ("GET", f"{API_PREFIX}/people/{{person_id}}"): VIEW,
    ("PATCH", f"{API_PREFIX}/people/{{person_id}}"): OPER,
    ("DELETE", f"{API_PREFIX}/people/{{person_id}}"): ADMIN,
    ("GET", f"{API_PREFIX}/people/{{person_id}}/embeddings"): OPER,
    ("POST", f"{API_PREFIX}/people/{{person_id}}/embeddings"): OPER,
    ("DELETE", f"{API_PREFIX}/people/{{person_id}}/embeddings/{{embedding_id}}"): OPER,
    ("GET", f"{API_PREFIX}/sightings"): VIEW,
    ("GET", f"{API_PREFIX}/presences"): VIEW,
    ("GET", f"{API_PREFIX}/strangers"): VIEW,
    ("DELETE", f"{API_PREFIX}/strangers/{{stranger_id}}"): ADMIN,
    ("GET", f"{API_PREFIX}/stats/calibration"): OPER,
    ("GET", f"{API_PREFIX}/attendance"): VIEW,
    ("GET", f"{API_PREFIX}/alerts"): VIEW,
    ("POST", f"{API_PREFIX}/alerts/{{alert_id}}/acknowledge"): OPER,
    ("GET", f"{API_PREFIX}/stats/thresholds"): OPER,
    ("GET", f"{API_PREFIX}/stream"): OPER,
    ("GET", f"{API_PREFIX}/dead-letters"): OPER,
    ("GET", f"{API_PREFIX}/dead-letters/{{entry_id}}"): OPER,
    ("POST", f"{API_PREFIX}/dead-letters/{{entry_id}}/replay"): ADMIN,
    ("DELETE", f"{API_PREFIX}/dead-letters/{{entry_id}}"): ADMIN,
    ("POST", f"{API_PREFIX}/tokens/revoke"): ADMIN,
    ("POST", f"{API_PREFIX}/tokens/revoke-node"): ADMIN,
    ("GET", f"{API_PREFIX}/auth/me"): VIEW,
    ("GET", f"{API_PREFIX}/api-tokens"): ADMIN,
    ("POST", f"{API_PREFIX}/api-tokens"): ADMIN,
    ("DELETE", f"{API_PREFIX}/api-tokens/{{token_id}}"): ADMIN,
    ("GET", f"{API_PREFIX}/audit"): ADMIN,
    ("GET", f"{API_PREFIX}/webhooks"): ADMIN,
    ("POST", f"{API_PREFIX}/webhooks"): ADMIN,
    ("GET", f"{API_PREFIX}/webhooks/{{subscription_id}}"): ADMIN,
    ("PATCH", f"{API_PREFIX}/webhooks/{{subscription_id}}"): ADMIN,
    ("DELETE", f"{API_PREFIX}/webhooks/{{subscription_id}}"): ADMIN,
    ("GET", f"{API_PREFIX}/webhooks/{{subscription_id}}/deliveries"): ADMIN,
    ("POST", f"{API_PREFIX}/webhooks/{{subscription_id}}/deliveries/{{delivery_id}}/replay"): ADMIN,
    ("POST", f"{API_PREFIX}/webhooks/{{subscription_id}}/replay"): ADMIN,
    ("GET", f"{API_PREFIX}/schedules"): VIEW,
    ("POST", f"{API_PREFIX}/schedules"): OPER,
    ("GET", f"{API_PREFIX}/schedules/{{schedule_id}}"): VIEW,
    ("PUT", f"{API_PREFIX}/schedules/{{schedule_id}}"): OPER,
    ("DELETE", f"{API_PREFIX}/schedules/{{schedule_id}}"): OPER,
    ("GET", f"{API_PREFIX}/closures"): VIEW,
    ("POST", f"{API_PREFIX}/closures"): OPER,
    ("DELETE", f"{API_PREFIX}/closures/{{closure_id}}"): OPER,
    ("GET", f"{API_PREFIX}/groups"): VIEW,
    ("POST", f"{API_PREFIX}/groups"): OPER,
    ("GET", f"{API_PREFIX}/groups/{{group_id}}"): VIEW,
    ("PUT", f"{API_PREFIX}/groups/{{group_id}}"): OPER,
    ("DELETE", f"{API_PREFIX}/groups/{{group_id}}"): OPER,
    ("GET", f"{API_PREFIX}/groups/{{group_id}}/members"): VIEW,
    ("PUT", f"{API_PREFIX}/groups/{{group_id}}/members/{{person_id}}"): OPER,
    ("DELETE", f"{API_PREFIX}/groups/{{group_id}}/members/{{person_id}}"): OPER,
    ("GET", f"{API_PREFIX}/statuses"): VIEW,
    ("GET", f"{API_PREFIX}/corrections"): VIEW,
    ("POST", f"{API_PREFIX}/corrections"): OPER,
    ("GET", f"{API_PREFIX}/people/{{person_id}}/days/{{day}}"): VIEW,
}

SAMPLES = {"person_id": "999", "node_id": "cam-1", "entry_id": "1-0", "alert_id": "999",
           "embedding_id": "999", "token_id": "999", "subscription_id": "999",
           "delivery_id": "999", "schedule_id": "999", "group_id": "999",
           "closure_id": "999", "day": "2026-03-02",
           "stranger_id": "999"}


def spec_operations(api) -> list[tuple[str, str, dict]]:
    spec = api.client.get("/openapi.json").json()
    return [(method.upper(), path, op) for path, item in spec["paths"].items()
            for method, op in item.items()]


def url_of(path: str) -> str:
    return re.sub(r"{(\w+)}", lambda m: SAMPLES[m.group(1)], path)


def make_token(api, name: str, role: str, **kw) -> str:
    r = api.client.post(f"{API_PREFIX}/api-tokens", headers=api.admin,
                        json={"name": name, "role": role, **kw})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_every_route_has_a_rule_and_the_openapi_security_matches(api):
    ops = spec_operations(api)
    seen = {(m, p) for m, p, _ in ops}
    assert seen - ROLE_TABLE.keys() == set(), "routes without a role rule"
    assert ROLE_TABLE.keys() - seen == set(), "rules for routes that do not exist"
    for method, path, op in ops:
        schemes = {k for s in op.get("security", []) for k in s}
        rule = ROLE_TABLE[(method, path)]
        expected = {OPEN: set(), NODE: {"NodeToken"}}.get(rule, {"ApiToken"})
        assert schemes == expected, (method, path, schemes)


def test_each_role_gets_403_exactly_where_the_table_says(api):
    tokens = {role: make_token(api, f"t-{role}", role) for role in (VIEW, OPER, ADMIN)}
    tokens["bootstrap"] = api.admin["Authorization"].removeprefix("Bearer ")
    checked = 0
    for method, path, _ in spec_operations(api):
        needed = ROLE_TABLE[(method, path)]
        if needed in (OPEN, NODE):
            continue
        for who, token in tokens.items():
            role = Role.admin if who == "bootstrap" else Role(who)
            r = api.client.request(method, url_of(path), headers=bearer(token), json={})
            if role.allows(Role(needed)):
                assert r.status_code not in (401, 403), (who, method, path, r.text)
            else:
                assert r.status_code == 403, (who, method, path, r.status_code, r.text)
                assert f"needs the {needed} role" in r.json()["detail"]
            checked += 1
    assert checked == 4 * sum(rule not in (OPEN, NODE) for rule in ROLE_TABLE.values())


def test_token_shown_once_stored_hashed_expiry_revocation_last_used(api):
    r = api.client.post(f"{API_PREFIX}/api-tokens", headers=api.admin,
                        json={"name": "hr reports", "role": "viewer"})
    created = r.json()
    token = created["token"]
    assert token.startswith(f"fgk_{created['prefix']}_") and len(token) >= 50
    listed = api.client.get(f"{API_PREFIX}/api-tokens", headers=api.admin).json()["items"]
    assert [t["name"] for t in listed] == ["hr reports"]
    assert "token" not in listed[0] and listed[0]["last_used_at"] is None
    with api.sessions() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.name == "hr reports"))
        assert token not in (row.secret_hash, row.prefix) and len(row.secret_hash) == 64

    me = api.client.get(f"{API_PREFIX}/auth/me", headers=bearer(token)).json()
    assert me["role"] == "viewer" and me["name"] == "hr reports"
    assert me["can"] == ["read"]
    listed = api.client.get(f"{API_PREFIX}/api-tokens", headers=api.admin).json()["items"]
    assert listed[0]["last_used_at"] is not None

    # a wrong secret with a real prefix, and a name clash
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert api.client.get(f"{API_PREFIX}/sightings", headers=bearer(forged)).status_code == 401
    again = api.client.post(f"{API_PREFIX}/api-tokens", headers=api.admin,
                            json={"name": "hr reports", "role": "admin"})
    assert again.status_code == 409

    # revocation works on the next request
    d = api.client.delete(f"{API_PREFIX}/api-tokens/{created['id']}", headers=api.admin)
    assert d.status_code == 200 and d.json()["revoked_at"]
    r = api.client.get(f"{API_PREFIX}/sightings", headers=bearer(token))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]

    # expiry
    soon = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
    short = make_token(api, "short", "operator", expires_at=soon)
    assert api.client.get(f"{API_PREFIX}/stream", headers=bearer(short)).status_code == 200
    with api.sessions() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.name == "short"))
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        s.commit()
    r = api.client.get(f"{API_PREFIX}/stream", headers=bearer(short))
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    r = api.client.post(f"{API_PREFIX}/api-tokens", headers=api.admin,
                        json={"name": "old", "role": "viewer", "expires_at": past})
    assert r.status_code == 422


def test_every_write_is_audited_with_its_token(api):
    op = make_token(api, "desk", "operator")
    viewer = make_token(api, "hr", "viewer")
    r = api.client.post(f"{API_PREFIX}/people", headers=bearer(op), json={"name": "Ada"})
    assert r.status_code == 201
    pid = r.json()["id"]
    refused = api.client.delete(f"{API_PREFIX}/people/{pid}", headers=bearer(viewer))
    assert refused.status_code == 403
    assert api.client.delete(f"{API_PREFIX}/people/{pid}", headers=api.admin).status_code == 200
    api.client.get(f"{API_PREFIX}/people", headers=bearer(op))  # reads are not audited
    page = api.client.get(f"{API_PREFIX}/audit", headers=api.admin).json()
    rows = [(e["actor"], e["role"], e["method"], e["route"], e["status"])
            for e in reversed(page["items"])]
    assert rows == [
        ("bootstrap-admin", "admin", "POST", f"{API_PREFIX}/api-tokens", 201),
        ("bootstrap-admin", "admin", "POST", f"{API_PREFIX}/api-tokens", 201),
        ("desk", "operator", "POST", f"{API_PREFIX}/people", 201),
        ("hr", "viewer", "DELETE", f"{API_PREFIX}/people/{{person_id}}", 403),
        ("bootstrap-admin", "admin", "DELETE", f"{API_PREFIX}/people/{{person_id}}", 200),
    ]
    with api.sessions() as s:
        desk = s.scalar(select(ApiToken).where(ApiToken.name == "desk"))
        entry = s.scalar(select(AuditEntry).where(AuditEntry.actor == "desk"))
        assert entry.token_id == desk.id and entry.path == f"{API_PREFIX}/people"


def test_acknowledged_by_defaults_to_the_token_name(api):
    from facegrid_services.store.models import Alert

    now = datetime.now(UTC)
    with api.sessions() as s:
        a = Alert(kind="intruder", dedup_key="k1", window_start=now, window_end=now, count=3,
                  nodes=["cam-1"], message="m")
        s.add(a)
        s.commit()
        aid = a.id
    op = make_token(api, "night shift", "operator")
    r = api.client.post(f"{API_PREFIX}/alerts/{aid}/acknowledge", headers=bearer(op))
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "night shift"
