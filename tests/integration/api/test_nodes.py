"""Node registration, heartbeat, fleet listing and node status, with real tokens."""

from __future__ import annotations

import pytest

from facegrid import keys
from facegrid.contract import API_PREFIX, REGISTER_PATH, heartbeat_path, node_path

pytestmark = pytest.mark.integration


def registration(node_id="cam-1", **kw):
    body = {"node_id": node_id, "timezone": "Europe/Paris", "model": "facenet-casia-webface",
            "version": "0.1.0", "camera": "usb"}
    body.update(kw)
    return body


def heartbeat(**kw):
    body = {"sent_at": 1.0, "state": "active", "state_seconds": 3.0, "fps": 9.5,
            "drift_offset_ms": -12.5, "lamport": 7, "camera_up": True, "events_sent": 4,
            "events_dropped": 0, "backlog": 0}
    body.update(kw)
    return body


def register(api, node_id="cam-1"):
    r = api.client.post(REGISTER_PATH, json=registration(node_id),
                        headers=api.node_headers(node_id))
    assert r.status_code == 200, r.text
    return r.json()


def test_register_heartbeat_and_status(api):
    api.redis.set(keys.LAMPORT_MAX, 41)
    reply = register(api)
    assert reply["lamport_max"] == 41
    assert reply["heartbeat_interval_s"] == api.settings.heartbeat_interval_s
    assert abs(reply["server_time"] - api.clock[0]) < 1e-6

    r = api.client.post(heartbeat_path("cam-1"), json=heartbeat(lamport=99),
                        headers=api.node_headers("cam-1"))
    assert r.status_code == 200, r.text
    # The node's own value is higher than the workers': the reply never goes backwards.
    assert r.json()["lamport_max"] == 99
    # The workers' maximum (refreshed from Redis every second) reaches the replies.
    import time

    deadline, seen = time.monotonic() + 5, 0
    while seen != 41 and time.monotonic() < deadline:
        seen = api.client.post(heartbeat_path("cam-1"), json=heartbeat(lamport=3),
                               headers=api.node_headers("cam-1")).json()["lamport_max"]
        time.sleep(0.1)
    assert seen == 41

    status = api.client.get(node_path("cam-1"), headers=api.admin).json()
    assert status["status"] == "online"
    assert status["fps"] == 9.5 and status["drift_offset_ms"] == -12.5
    assert status["timezone"] == "Europe/Paris"
    assert status["heartbeat_age_s"] == pytest.approx(0.0, abs=1e-3)

    api.client.post(heartbeat_path("cam-1"), json=heartbeat(state="idle"),
                    headers=api.node_headers("cam-1"))
    page = api.client.get(f"{API_PREFIX}/nodes", headers=api.admin).json()
    assert page["total"] == 1 and page["limit"] == 100 and page["offset"] == 0
    listed = page["items"]
    assert [n["node_id"] for n in listed] == ["cam-1"]
    assert listed[0]["status"] == "idle" and listed[0]["events_sent"] == 4

    api.clock[0] += api.settings.offline_after_s + 1
    status = api.client.get(node_path("cam-1"), headers=api.admin).json()
    assert status["status"] == "offline"
    assert status["heartbeat_age_s"] == pytest.approx(api.settings.offline_after_s + 1)


def test_registration_is_idempotent_and_updates(api):
    register(api)
    r = api.client.post(REGISTER_PATH, json=registration(model="facenet-vggface2"),
                        headers=api.node_headers("cam-1"))
    assert r.status_code == 200
    status = api.client.get(node_path("cam-1"), headers=api.admin).json()
    assert status["model"] == "facenet-vggface2"
    assert status["status"] == "offline"  # registered, no heartbeat yet


def test_heartbeat_before_registration_is_404(api):
    r = api.client.post(heartbeat_path("cam-9"), json=heartbeat(),
                        headers=api.node_headers("cam-9"))
    assert r.status_code == 404
    assert "register" in r.json()["detail"]


def test_unknown_node_status_is_404(api):
    assert api.client.get(node_path("nope"), headers=api.admin).status_code == 404


@pytest.mark.parametrize("bad", [{"timezone": "Mars/Olympus"}, {"node_id": "Bad_Id"},
                                 {"extra": 1}])
def test_bad_registration_is_422(api, bad):
    body = registration(**bad)
    r = api.client.post(REGISTER_PATH, json=body, headers=api.node_headers("cam-1"))
    assert r.status_code == 422, r.text


def test_bad_heartbeat_is_422(api):
    register(api)
    for bad in ({"fps": -1}, {"state": "asleep"}, {"lamport": -1}, {"unknown": True}):
        r = api.client.post(heartbeat_path("cam-1"), json=heartbeat(**bad),
                            headers=api.node_headers("cam-1"))
        assert r.status_code == 422, (bad, r.text)


# --- node token refusals ----------------------------------------------------------


def _metric(api, reason):
    text = api.client.get("/metrics").text
    for line in text.splitlines():
        if line.startswith(f'facegrid_server_tokens_refused_total{{reason="{reason}"}}'):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize("route", ["register", "heartbeat"])
def test_node_routes_refuse_bad_tokens(api, route, signing_key):
    from facegrid import tokens

    register(api)

    def call(headers):
        if route == "register":
            return api.client.post(REGISTER_PATH, json=registration(), headers=headers)
        return api.client.post(heartbeat_path("cam-1"), json=heartbeat(), headers=headers)

    other_key = tokens.generate_private_key()
    cases = {
        "missing": ({}, 401),
        "malformed": ({"Authorization": "Bearer not-a-jwt"}, 401),
        "bad_signature": ({"Authorization":
                           f"Bearer {tokens.issue_token(other_key, 'cam-1')}"}, 401),
        "expired": (api.node_headers("cam-1", ttl_seconds=60, now=api.clock[0] - 3600), 401),
        "wrong_audience": (api.node_headers("cam-1", audience="other"), 401),
        "wrong_node": (api.node_headers("cam-2"), 403),
        "admin_token_is_not_a_node_token": (api.admin, 401),
    }
    for name, (headers, code) in cases.items():
        before = _metric(api, name) if name != "admin_token_is_not_a_node_token" else None
        r = call(headers)
        assert r.status_code == code, (name, r.text)
        assert "token" in r.json()["detail"]
        if before is not None:
            assert _metric(api, name) == before + 1, name


def test_revoked_token_is_refused_at_once(api):
    token = api.node_token("cam-1", jti="jti-revoke-me")
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.post(REGISTER_PATH, json=registration(), headers=headers).status_code == 200

    r = api.client.post(f"{API_PREFIX}/tokens/revoke", headers=api.admin,
                        json={"jti": "jti-revoke-me", "node_id": "cam-1", "reason": "deleted"})
    assert r.status_code == 201, r.text
    assert r.json()["created"] is True
    assert api.redis.sismember(keys.REVOKED_SET, "jti-revoke-me")

    r = api.client.post(heartbeat_path("cam-1"), json=heartbeat(), headers=headers)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    r = api.client.post(REGISTER_PATH, json=registration(), headers=headers)
    assert r.status_code == 401
    # A fresh token for the same node still works.
    assert api.client.post(heartbeat_path("cam-1"), json=heartbeat(),
                           headers=api.node_headers("cam-1")).status_code == 200
    # Revoking again is idempotent.
    again = api.client.post(f"{API_PREFIX}/tokens/revoke", headers=api.admin,
                            json={"jti": "jti-revoke-me"})
    assert again.status_code == 200 and again.json()["created"] is False


def test_revocation_by_another_replica_reaches_this_server(api):
    """A jti announced on the Redis channel (another server replica) is refused within seconds."""
    import time

    token = api.node_token("cam-1", jti="jti-elsewhere")
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.post(REGISTER_PATH, json=registration(), headers=headers).status_code == 200
    api.redis.sadd(keys.REVOKED_SET, "jti-elsewhere")
    api.redis.publish(keys.REVOKED_CHANNEL, "jti-elsewhere")
    deadline = time.monotonic() + 5
    code = 200
    while time.monotonic() < deadline and code == 200:
        code = api.client.post(heartbeat_path("cam-1"), json=heartbeat(),
                               headers=headers).status_code
        time.sleep(0.05)
    assert code == 401
