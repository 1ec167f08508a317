"""Per-entry checks and dead-letter field layout."""

from __future__ import annotations

import numpy as np
import pytest
from facegrid_services.worker.checks import MODEL_MISMATCH, EntryChecker, Rejected
from facegrid_services.worker.consumer import dead_letter_fields
from facegrid_services.worker.synthetic import EventFactory, unit_vectors

from facegrid import tokens

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def key():
    return tokens.generate_private_key()


def _checker(key, revoked=frozenset(), model="facenet-casia-webface"):
    v = tokens.TokenVerifier(key.public_key(), is_revoked=revoked.__contains__)
    return EntryChecker(v, model)


def test_valid_entry_passes(key):
    f = EventFactory("cam-1", tokens.issue_token(key, "cam-1"))
    emb = unit_vectors(1, np.random.default_rng(0))[0]
    ev = _checker(key).check(f.entry(emb))
    assert ev.payload.node_id == "cam-1"
    assert np.allclose(ev.embedding, emb)


@pytest.mark.parametrize(("case", "reason"), [
    ("other_node", "token_wrong_node"),
    ("expired", "token_expired"),
    ("revoked", "token_revoked"),
    ("forged", "token_bad_signature"),
    ("model", MODEL_MISMATCH),
    ("nan", "embedding_not_finite"),
    ("short", "wrong_embedding_length"),
    ("version", "unknown_version"),
])
def test_rejections_carry_reason(key, case, reason):
    emb = unit_vectors(1, np.random.default_rng(0))[0]
    token = tokens.issue_token(key, "cam-1", jti="j1")
    if case == "other_node":
        token = tokens.issue_token(key, "cam-2")
    elif case == "expired":
        token = tokens.issue_token(key, "cam-1", ttl_seconds=60, now=1_000_000)
    elif case == "forged":
        token = tokens.issue_token(tokens.generate_private_key(), "cam-1")
    f = EventFactory("cam-1", token, model="facenet-vggface2" if case == "model"
                     else "facenet-casia-webface")
    entry = f.entry(emb)
    if case == "nan":
        entry["embedding"] = np.full(512, np.nan, np.float32).tobytes()
    elif case == "short":
        entry["embedding"] = entry["embedding"][:100]
    elif case == "version":
        entry["v"] = b"3"
    with pytest.raises(Rejected) as e:
        _checker(key, revoked=frozenset({"j1"}) if case == "revoked" else frozenset()).check(
            entry)
    assert e.value.reason == reason


def test_dead_letter_keeps_every_original_field():
    fields = {b"v": b"1", b"reason": b"mine", b"original_reason": b"x", b"blob": b"\xff" * 10}
    out = dead_letter_fields("1-1", fields, "bad_json", "d" * 1000)
    assert out["v"] == b"1" and out["blob"] == b"\xff" * 10
    assert out["original_reason"] == b"mine"
    assert out["original_original_reason"] == b"x"
    assert (out["reason"], out["source_id"]) == ("bad_json", "1-1")
    assert len(out["detail"]) == 500


def test_no_model_accepts_any_model_but_still_checks_the_rest(key):
    # An empty gallery with FACEGRID_MODEL unset: any model passes (all unknown later) ...
    emb = unit_vectors(1, np.random.default_rng(0))[0]
    checker = _checker(key, model=None)
    for model in ("facenet-vggface2", "facenet-casia-webface"):
        f = EventFactory("cam-1", tokens.issue_token(key, "cam-1"), model=model)
        assert checker.check(f.entry(emb)).payload.model == model
    # ... the token is still verified ...
    f = EventFactory("cam-1", tokens.issue_token(key, "cam-2"), model="facenet-vggface2")
    with pytest.raises(Rejected) as e:
        checker.check(f.entry(emb))
    assert e.value.reason == "token_wrong_node"
    # ... and once the worker follows a model, another one is refused.
    checker.model = "facenet-vggface2"
    f = EventFactory("cam-1", tokens.issue_token(key, "cam-1"))
    with pytest.raises(Rejected) as e:
        checker.check(f.entry(emb))
    assert e.value.reason == MODEL_MISMATCH
