"""Every token attack against the real server and the real worker (processes).

Each forged, stolen, stale or mangled token is sent both ways a node uses its
token: to register with ``facegrid server`` and inside an event on the stream
for ``facegrid worker``.  The server must refuse it (401, 403 for another
node's token) and count the reason; the worker must dead-letter the event with
``token_<reason>`` and store nothing.  A valid token is the control.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import numpy as np
import pytest
from fixtures.stack import running_stack, scrape
from fixtures.synthetic import EventFactory, unit_vectors

from facegrid import keys, tokens
from facegrid.contract import API_PREFIX

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

NODE = "cam-01"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**over) -> dict:
    now = int(time.time())
    c = {"iss": tokens.ISSUER, "sub": NODE, "node_id": NODE, "aud": "facegrid", "iat": now,
         "nbf": now, "exp": now + 3600, "jti": f"j-{time.monotonic_ns()}"}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def attacks(key) -> dict[str, tuple[str, str]]:
    """name -> (token, the reason it must be refused for)."""
    other = tokens.generate_private_key()
    pub_pem = tokens.public_pem(key)
    body = b64(json.dumps(claims()).encode())
    unsigned = f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{body}."
    hs_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{body}"
    hs256 = hs_input + "." + b64(hmac.new(pub_pem, hs_input.encode(), hashlib.sha256).digest())
    head, _, sig = tokens.issue_token(key, "cam-02").split(".")
    tampered = f"{head}.{b64(json.dumps(claims()).encode())}.{sig}"
    return {
        "another signing key": (tokens.issue_token(other, NODE), "bad_signature"),
        "alg none (unsigned)": (unsigned, "alg_not_allowed"),
        "HS256 keyed with the public key": (hs256, "alg_not_allowed"),
        "claims rewritten, signature kept": (tampered, "bad_signature"),
        "expired": (tokens.issue_token(key, NODE, ttl_seconds=60, now=time.time() - 7200),
                    "expired"),
        "not yet valid": (tokens.issue_token(key, NODE, now=time.time() + 3600),
                          "not_yet_valid"),
        "wrong audience": (tokens.issue_token(key, NODE, audience="another-system"),
                           "wrong_audience"),
        "another node's token": (tokens.issue_token(key, "cam-02"), "wrong_node"),
        "no expiry claim": (jwt.encode(claims(exp=None), key, algorithm="EdDSA"),
                            "missing_claim"),
        "no token id claim": (jwt.encode(claims(jti=None), key, algorithm="EdDSA"),
                              "missing_claim"),
        "garbage": ("not.a.jwt", "malformed"),
        "revoked": (tokens.issue_token(key, NODE, jti="revoked-by-test"), "revoked"),
    }


def test_every_token_attack_refused_by_server_and_worker(tmp_path, test_weights,
                                                         record_property):
    with running_stack(tmp_path / "stack", test_weights, enroll=False) as stack:
        key = tokens.load_private_key(stack.plan.state_dir / "keys" / tokens.PRIVATE_KEY_FILE)
        worker = next(c for c in stack.children if c.name == "worker")
        api = stack.api()
        r = api.post(f"{API_PREFIX}/tokens/revoke", json={"jti": "revoked-by-test", "node_id": NODE,
                                                    "reason": "reliability test"})
        assert r.status_code == 201, r.text
        time.sleep(1.0)  # the revocation reaches the worker by pub/sub

        registration = {"node_id": NODE, "timezone": "UTC", "model": "facenet-casia-webface",
                        "version": "test"}
        client = stack.redis()
        vectors = iter(unit_vectors(20, np.random.default_rng(0)))
        results: dict[str, dict] = {}
        for name, (token, reason) in attacks(key).items():
            reply = api.post(f"{API_PREFIX}/nodes/register", json=registration,
                             headers={"Authorization": f"Bearer {token}"})
            sid = client.xadd(keys.EVENTS_STREAM,
                              EventFactory(NODE, token).entry(next(vectors))).decode()
            results[name] = {"reason": reason, "http": reply.status_code,
                             "detail": reply.json().get("detail", ""), "sid": sid}
        good = tokens.issue_token(key, NODE)
        control = api.post(f"{API_PREFIX}/nodes/register", json=registration,
                           headers={"Authorization": f"Bearer {good}"})
        client.xadd(keys.EVENTS_STREAM, EventFactory(NODE, good).entry(next(vectors)))
        stack.wait_drained()

        dead = {f[b"source_id"].decode(): f[b"reason"].decode()
                for _, f in client.xrange(keys.DEAD_LETTER_STREAM)}
        client.close()
        server_metrics = api.get("/metrics").text
        api.close()
        worker_metrics = scrape(worker.metrics_port)
        rows = stack.stored_sightings()

    print(f"\n{len(results)} token attacks, each against facegrid server and facegrid worker:")
    for name, res in results.items():
        res["dead_letter"] = dead.get(res["sid"])
        print(f"  {name:34s} server {res['http']} ({res['reason']}), "
              f"worker dead letter {res['dead_letter']}")
    refused = sum(r["http"] in (401, 403) for r in results.values())
    dead_lettered = sum(r["dead_letter"] == f"token_{r['reason']}" for r in results.values())
    print(f"server refused {refused}/{len(results)}, worker dead-lettered "
          f"{dead_lettered}/{len(results)}, stored {len(rows)} (the valid control only)")
    record_property("attacks", len(results))
    record_property("server_refused", refused)
    record_property("worker_dead_lettered", dead_lettered)

    assert control.status_code == 200, control.text
    for name, res in results.items():
        expected_http = 403 if res["reason"] == "wrong_node" else 401
        assert res["http"] == expected_http, (name, res)
        assert res["reason"] in res["detail"], (name, res)
        assert res["dead_letter"] == f"token_{res['reason']}", (name, res)
    assert len(rows) == 1 and rows[0]["node_id"] == NODE
    for reason in {r["reason"] for r in results.values()}:
        assert f'facegrid_server_tokens_refused_total{{reason="{reason}"}}' in server_metrics
        assert worker_metrics.get(("facegrid_worker_dead_lettered_total", f"token_{reason}"),
                                  0) >= 1, reason
