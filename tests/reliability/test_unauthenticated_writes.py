"""Every write route of a real ``facegrid server`` refuses writes without valid credentials.

The routes are enumerated from the server's own OpenAPI schema, so a new write
route is covered the day it is added.  Each refusal must be 401/403 and be
counted in the server's metrics; nothing may be written.
"""

from __future__ import annotations

import re

import httpx
import pytest

from facegrid import tokens
from facegrid.contract import API_PREFIX

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

WRITE_METHODS = {"post", "put", "patch", "delete"}
SAMPLES = {"person_id": "1", "node_id": "cam-1", "entry_id": "1-0", "alert_id": "1",
           "embedding_id": "1", "token_id": "1", "subscription_id": "1", "delivery_id": "1",
           "schedule_id": "1", "group_id": "1", "closure_id": "1", "day": "2026-03-02",
           "stranger_id": "1"}
# Well-formed bodies: the attacker knows the schema, only the credential is wrong.
REGISTER = {"node_id": "cam-1", "timezone": "UTC", "model": "facenet-casia-webface",
            "version": "1"}
HEARTBEAT = {"sent_at": 1.0, "state": "active", "state_seconds": 0, "fps": 0,
             "drift_offset_ms": 0, "lamport": 0, "camera_up": True, "events_sent": 0,
             "events_dropped": 0, "backlog": 0}
ADMIN_BODY = {"name": "Mallory", "jti": "x", "model": "facenet-casia-webface"}


def refused_total(client: httpx.Client) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(("facegrid_server_admin_refused_total{",
                            "facegrid_server_tokens_refused_total{")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_every_write_route_refuses_unauthenticated_requests(live_server, record_property):
    client = httpx.Client(base_url=live_server.url, timeout=10)
    spec = client.get("/openapi.json").json()
    routes = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in WRITE_METHODS:
                scheme = "node" if any("NodeToken" in s for s in op.get("security", [])) \
                    else "admin"
                url = re.sub(r"{(\w+)}", lambda m: SAMPLES[m.group(1)], path)
                routes.append((method.upper(), url, scheme))
    assert len(routes) >= 10, routes

    other_key = tokens.generate_private_key()
    admin_creds = [None, "Bearer", "Bearer wrong-admin-token-0123456789",
                   "Basic YWRtaW46YWRtaW4=", live_server.admin_token,  # no "Bearer "
                   "Bearer fgk_abcdefgh_" + "A" * 43,  # a named token that does not exist
                   f"Bearer {tokens.issue_token(live_server.key, 'cam-1')}"]
    node_creds = [None, "Bearer not-a-jwt", f"Bearer {live_server.admin_token}",
                  f"Bearer {tokens.issue_token(other_key, 'cam-1')}",
                  f"Bearer {tokens.issue_token(live_server.key, 'cam-1', ttl_seconds=1, now=1e9)}",
                  f"Bearer {tokens.issue_token(live_server.key, 'cam-2')}"]
    before = refused_total(client)
    sent = 0
    unexpected = []
    for method, url, scheme in routes:
        for cred in admin_creds if scheme == "admin" else node_creds:
            headers = {"Authorization": cred} if cred else {}
            body = (ADMIN_BODY if scheme == "admin" else
                    REGISTER if url.endswith("/register") else HEARTBEAT)
            r = client.request(method, url, headers=headers, json=body)
            sent += 1
            if r.status_code not in (401, 403):
                unexpected.append((method, url, cred and cred[:20], r.status_code, r.text[:200]))
    counted = refused_total(client) - before
    admin = {"Authorization": f"Bearer {live_server.admin_token}"}
    people = client.get(f"{API_PREFIX}/people", headers=admin).json()["total"]
    nodes = client.get(f"{API_PREFIX}/nodes", headers=admin).json()["items"]
    print(f"\n{sent} unauthenticated write requests to {len(routes)} write routes: "
          f"{sent - len(unexpected)} refused (401/403), {counted:.0f} counted in metrics, "
          f"{people} people and {len(nodes)} nodes written")
    record_property("requests", sent)
    record_property("refused", sent - len(unexpected))
    record_property("counted", counted)
    assert not unexpected, unexpected
    assert counted == sent
    assert people == 0
    assert nodes == []
    client.close()
