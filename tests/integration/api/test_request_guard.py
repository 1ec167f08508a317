"""Issue 16 findings 6 and 8 (API side): bodies are authenticated before they are read,
bounded, failed authentication is throttled, revocations fail closed and reach every
replica from the database."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from facegrid_services.store.models import RevokedToken
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from facegrid import tokens
from facegrid.contract import REGISTER_PATH, heartbeat_path

pytestmark = pytest.mark.integration


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'facegrid.db'}"


def _metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def _raw_post(url: str, path: str, declared: int, sent: bytes, headers: str = "") -> tuple[
        int, float]:
    """POST declaring ``declared`` body bytes but sending only ``sent``; returns the status
    and the seconds until it came (the server answered without the rest of the body)."""
    host, port = url.removeprefix("http://").split(":")
    t0 = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                      f"\r\nContent-Length: {declared}\r\n{headers}\r\n").encode() + sent)
        reply = sock.recv(4096)
    return int(reply.split(b" ", 2)[1]), time.perf_counter() - t0


def test_200_mb_body_without_a_token_is_refused_unread(live_server):
    """Finding 6 against a real `facegrid server`: 401 comes while 199 MB are still unsent."""
    code, took = _raw_post(live_server.url, "/api/v1/people", 200 << 20, b"x" * (1 << 20))
    assert code == 401 and took < 5
    code, _ = _raw_post(live_server.url, "/api/v1/nodes/register", 10, b"[1, 2, 3")
    assert code == 401  # malformed body, no token: 401, not 400/422
    tok = f"Authorization: Bearer {live_server.admin_token}\r\n"
    code, took = _raw_post(live_server.url, "/api/v1/people", 200 << 20, b"x" * 1024, tok)
    assert code == 413 and took < 5  # with a token: too large, refused before reading
    r = httpx.get(f"{live_server.url}/healthz", timeout=5)
    assert r.status_code == 200


def test_body_without_a_token_is_401_not_400(api):
    r = api.client.post("/api/v1/people", content=b"{not json",
                        headers={"Content-Type": "application/json"})
    assert r.status_code == 401
    r = api.client.post(REGISTER_PATH, content=b"[1, 2", headers={
        "Content-Type": "application/json", "Authorization": "Bearer not-a-jwt"})
    assert r.status_code == 401
    # ... and with a valid token the format's own errors come back as before.
    r = api.client.post("/api/v1/people", content=b"{not json", headers={
        **api.admin, "Content-Type": "application/json"})
    assert r.status_code in (400, 422)


def test_oversize_body_is_413_even_with_a_token(api):
    before = _metric("facegrid_server_body_too_large_total")
    big = b'{"name": "' + b"a" * (api.settings.max_body_bytes + 10) + b'"}'
    r = api.client.post("/api/v1/people", content=big,
                        headers={**api.admin, "Content-Type": "application/json"})
    assert r.status_code == 413

    def chunks():  # chunked: no Content-Length to refuse up front
        for _ in range(api.settings.max_body_bytes // (1 << 20) + 4):
            yield b"x" * (1 << 20)

    r = api.client.post("/api/v1/people", content=chunks(),
                        headers={**api.admin, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert _metric("facegrid_server_body_too_large_total") == before + 2


def test_failed_authentication_is_throttled_per_client(database_url, redis_url, signing_key,
                                                       tmp_path):
    from .conftest import ADMIN, build_api

    app, r, engine, _settings, _ = build_api(database_url, redis_url, signing_key, tmp_path,
                                            auth_failures_max=5, auth_failure_window_s=2.0)
    before = _metric("facegrid_server_auth_throttled_total")
    with TestClient(app) as client:
        bad = {"Authorization": "Bearer fgk_wrong_wrong_wrong_wrong"}
        codes = [client.get("/api/v1/people", headers=bad).status_code for _ in range(5)]
        assert codes == [401] * 5
        # Throttled now: even a right token waits (the client is the unit).
        r6 = client.get("/api/v1/people", headers={"Authorization": f"Bearer {ADMIN}"})
        assert r6.status_code == 429 and int(r6.headers["Retry-After"]) >= 1
        assert client.post("/api/v1/people", json={"name": "x"}).status_code == 429
        time.sleep(2.1)  # the window ends
        assert client.get("/api/v1/people",
                          headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200
    assert _metric("facegrid_server_auth_throttled_total") == before + 2
    r.close()
    engine.dispose()


def _registration(node_id="cam-1") -> dict:
    return {"node_id": node_id, "version": "t", "model": "facenet-casia-webface",
            "timezone": "UTC"}


def test_revoke_by_node_refuses_every_older_token(api):
    old_a = api.node_token("cam-1", jti="a", now=time.time() - 100)
    old_b = api.node_token("cam-1", jti="b-the-operator-never-saw", now=time.time() - 50)
    r = api.client.post("/api/v1/tokens/revoke-node", headers=api.admin, json={
        "node_id": "cam-1", "not_before": (datetime.now(UTC) - timedelta(seconds=10))
        .isoformat(), "reason": "stolen camera"})
    assert r.status_code == 201, r.text
    for tok in (old_a, old_b):
        r = api.client.post(REGISTER_PATH, json=_registration(),
                            headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 401 and "revoked" in r.json()["detail"]
    new = api.node_token("cam-1", jti="new")
    r = api.client.post(REGISTER_PATH, json=_registration(),
                        headers={"Authorization": f"Bearer {new}"})
    assert r.status_code == 200, r.text
    other = api.node_token("cam-2", now=time.time() - 100)
    assert api.client.post(REGISTER_PATH, json=_registration("cam-2"), headers={
        "Authorization": f"Bearer {other}"}).status_code == 200


def test_replica_reloads_revocations_from_the_database(database_url, redis_url, signing_key,
                                                       tmp_path):
    """A revocation another replica wrote while this one missed the message (Redis away,
    or the set lost) is refused within revocation_reload_s."""
    from .conftest import build_api

    app, r, engine, _settings, _clock = build_api(database_url, redis_url, signing_key, tmp_path,
                                                revocation_reload_s=0.3)
    token = tokens.issue_token(signing_key, "cam-1", jti="missed")
    hdr = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        assert client.post(REGISTER_PATH, json=_registration(), headers=hdr).status_code == 200
        with app.state.ctx.sessions() as s:  # only the database knows
            s.add(RevokedToken(jti="missed", node_id="cam-1", reason="other replica"))
            s.commit()
        deadline = time.monotonic() + 5
        code = 200
        while code == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
            code = client.post(heartbeat_path("cam-1"), headers=hdr, json={
                "sent_at": time.time(), "state": "idle", "state_seconds": 1.0, "fps": 1.0,
                "drift_offset_ms": 0.0, "lamport": 1, "camera_up": True, "events_sent": 0,
                "events_dropped": 0, "backlog": 0}).status_code
        assert code == 401
    r.close()
    engine.dispose()
