"""Signatures (Standard Webhooks test vector), backoff, privacy of rendered messages."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from facegrid_services.notify import signing, webhooks
from facegrid_services.notify.events import pseudonym, render

pytestmark = pytest.mark.unit


def test_signature_matches_the_standard_webhooks_test_vector():
    # from the Standard Webhooks specification's reference libraries
    sig = signing.sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                       "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}')
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_verify_refuses_tampering_wrong_secret_and_old_timestamps():
    secret, body = signing.new_secret(), b'{"a":1}'
    h = signing.headers(secret, "evt-1", body, now=1_000_000)
    signing.verify(secret, h, body, now=1_000_010)
    for bad_secret, bad_body, now in ((secret, b'{"a":2}', 1_000_010),
                                      (signing.new_secret(), body, 1_000_010),
                                      (secret, body, 1_000_000 + 301)):
        with pytest.raises(signing.SignatureError):
            signing.verify(bad_secret, h, bad_body, now=now)
    with pytest.raises(signing.SignatureError):
        signing.verify(secret, {"webhook-id": "evt-1"}, body)
    # several signatures (key rotation): any one may match
    signing.verify(secret, {**h, "webhook-signature": "v1,AAAA " + h["webhook-signature"]},
                   body, now=1_000_000)


def test_backoff_doubles_with_jitter_up_to_the_cap():
    rng = random.Random(1)
    delays = [webhooks.backoff(n, 1.0, 60.0, rng) for n in range(1, 10)]
    for n, d in enumerate(delays, 1):
        nominal = min(60.0, 2 ** (n - 1))
        assert 0.8 * nominal <= d <= 1.2 * nominal
    assert webhooks.backoff(500, 1.0, 60.0) <= 72.0


def test_names_only_when_asked_and_pseudonyms_per_key():
    at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    data = {"node_id": "cam-1", "track_id": 3, "score": 0.8, "person_id": 42}
    named = render("e1", "presence.recognised", at, data, names={42: "Ada"},
                   pseudonym_key=b"k1")
    anon1 = render("e1", "presence.recognised", at, data, names=None, pseudonym_key=b"k1")
    anon2 = render("e1", "presence.recognised", at, data, names=None, pseudonym_key=b"k2")
    assert named["data"]["person"] == {"id": 42, "name": "Ada"}
    assert anon1["data"]["person"] == {"id": pseudonym(b"k1", 42)}
    assert anon1["data"]["person"] != anon2["data"]["person"]  # unlinkable across receivers
    assert "person_id" not in anon1["data"] and "42" not in anon1["data"]["person"]["id"][:2]
    assert anon1["occurred_at"] == "2026-12-01T09:00:00Z"
    unknown = render("e2", "presence.unknown", at, {**data, "person_id": None}, names=None,
                     pseudonym_key=b"k1")
    assert unknown["data"]["person"] is None


@pytest.mark.parametrize("url", ["ftp://x/y", "http://", "https://user:pw@host/hook", "hook"])
def test_bad_urls_refused(url):
    with pytest.raises(ValueError):
        webhooks.check_url(url)


def test_event_types_checked():
    assert webhooks.check_events(["camera.online", "camera.online"]) == ["camera.online"]
    with pytest.raises(ValueError):
        webhooks.check_events(["camera.exploded"])
    with pytest.raises(ValueError):
        webhooks.check_events([])
