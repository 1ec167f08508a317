"""Erasing a person deletes the dead letters that match them (real redis-server, both stores).

The rules (facegrid_services.dead_letters): the event id of one of the person's
sightings, the (node, track) of one of their presences, or an embedding the
worker would recognise as them.  What cannot be matched stays (and expires by age).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest
from facegrid_services import dead_letters
from facegrid_services.store.models import Presence, Sighting, Stranger
from facegrid_services.worker.commit import dead_letter_fields
from fixtures.synthetic import EventFactory, near, unit_vectors
from sqlalchemy import select

from facegrid import keys
from facegrid.contract import API_PREFIX

pytestmark = pytest.mark.integration

MODEL = "facenet-casia-webface"


def _enroll(api, name: str, faces: np.ndarray) -> int:
    pid = api.client.post(f"{API_PREFIX}/people", json={"name": name},
                          headers=api.admin).json()["id"]
    for i, f in enumerate(faces):
        r = api.client.post(f"{API_PREFIX}/people/{pid}/embeddings", headers=api.admin, json={
            "model": MODEL, "image_hash": f"{pid:032x}{i:032x}", "embedding": f.tolist()})
        assert r.status_code == 201, r.text
    return pid


def _dead(api, fields: dict, reason: str = "poison") -> str:
    sid = api.redis.xadd(keys.DEAD_LETTER_STREAM,
                         dead_letter_fields("1-0", fields, reason, "test"))
    return sid.decode()


def _left(api) -> set[str]:
    return {sid.decode() for sid, _ in api.redis.xrange(keys.DEAD_LETTER_STREAM)}


def test_erasure_deletes_the_persons_dead_letters_and_only_theirs(api, make_sighting):
    rng = np.random.default_rng(5)
    ada_face, bob_face, stranger = unit_vectors(3, rng)
    ada = _enroll(api, "Ada", [near(ada_face, rng) for _ in range(2)])
    _enroll(api, "Bob", [near(bob_face, rng)])
    make_sighting(person_id=ada)
    with api.sessions() as s:
        ada_event = s.scalar(select(Sighting.event_id).where(Sighting.person_id == ada))
        now = datetime.now(UTC)
        s.add(Presence(node_id="cam-1", track_id=77, status="recognised", person_id=ada,
                       first_seen=now, last_seen=now))
        s.commit()
    api.redis.set(keys.CALIBRATION, json.dumps({"threshold": 0.6, "camera_thresholds": {}}))
    cam = EventFactory("cam-1", "token")
    other = EventFactory("cam-2", "token")
    gone = {
        # A stored event of Ada's dead-lettered again (its embedding is not hers: the id decides).
        _dead(api, cam.entry(stranger, event_id=ada_event, track_id=5)),
        # Another frame of the track recognised as Ada.
        _dead(api, cam.entry(stranger, track_id=77), reason="token_expired"),
        # Ada's face on a track never stored (e.g. a revoked camera).
        _dead(api, other.entry(near(ada_face, rng, 0.02), track_id=9), reason="token_revoked"),
    }
    corrupt = other.entry(near(ada_face, rng, 0.02), track_id=10)
    corrupt["embedding"] = corrupt["embedding"][:100]  # unreadable: cannot be matched
    kept = {
        _dead(api, other.entry(near(bob_face, rng, 0.02), track_id=11)),
        _dead(api, other.entry(stranger, track_id=12)),
        _dead(api, corrupt, reason="bad_embedding"),
        _dead(api, {"payload": b"{not json", "v": b"2"}, reason="bad_json"),
        _dead(api, {"payload": json.dumps({"track_id": 77, "node_id": ["x"]}).encode(),
                    "embedding": np.full(512, np.nan, "<f4").tobytes()}, reason="bad_value"),
    }

    before = _erased_metric(api)
    r = api.client.delete(f"{API_PREFIX}/people/{ada}", headers=api.admin)
    assert r.status_code == 200, r.text
    assert r.json()["dead_letters"] == 3
    assert _left(api) == kept and not gone & _left(api)
    assert _erased_metric(api) == before + 3


def _erased_metric(api) -> float:
    for line in api.client.get("/metrics").text.splitlines():
        if line.startswith("facegrid_server_dead_letters_erased_total "):
            return float(line.split()[1])
    raise AssertionError("facegrid_server_dead_letters_erased_total not exported")


def test_scan_pages_through_the_whole_stream(api):
    rng = np.random.default_rng(6)
    face, other = unit_vectors(2, rng)
    cam = EventFactory("cam-1", "token")
    mine = {_dead(api, cam.entry(near(face, rng, 0.02))) for _ in range(7)}
    theirs = {_dead(api, cam.entry(near(other, rng, 0.02))) for _ in range(6)}
    traces = dead_letters.Traces("person 1", embeddings={MODEL: face[None, :]})
    assert dead_letters.erase(api.redis, traces, threshold=0.6, page=2) == 7
    assert _left(api) == theirs and not mine & _left(api)


def test_threshold_is_the_lowest_in_force(api):
    api.redis.delete(keys.CALIBRATION)
    assert dead_letters.match_threshold(api.redis) == 0.58  # the worker's default
    api.redis.set(keys.CALIBRATION, json.dumps(
        {"threshold": 0.62, "camera_thresholds": {"door": 0.55, "yard": 0.7, "x": "y"}}))
    assert dead_letters.match_threshold(api.redis) == 0.55
    api.redis.set(keys.CALIBRATION, b"\xff not json")
    assert dead_letters.match_threshold(api.redis) == 0.58


def test_erasing_a_repeat_stranger_deletes_its_dead_letters(api):
    rng = np.random.default_rng(7)
    face, other = unit_vectors(2, rng)
    now = datetime.now(UTC)
    with api.sessions() as s:
        st = Stranger(model=MODEL, vector=face.astype("<f4").tobytes(), presences=1,
                      first_seen=now, last_seen=now, nodes=["cam-3"])
        s.add(st)
        s.flush()
        s.add(Presence(node_id="cam-3", track_id=31, status="unknown", first_seen=now,
                       last_seen=now, stranger_id=st.id))
        s.commit()
        sid = st.id
    cam = EventFactory("cam-3", "token")
    gone = {_dead(api, cam.entry(other, track_id=31)),             # its presence's track
            _dead(api, cam.entry(near(face, rng, 0.02), track_id=40))}  # its face
    kept = {_dead(api, cam.entry(other, track_id=41))}
    api.redis.set(keys.CALIBRATION, json.dumps({"threshold": 0.6}))
    r = api.client.delete(f"{API_PREFIX}/strangers/{sid}", headers=api.admin)
    assert r.status_code == 200, r.text
    assert r.json() == {"stranger_id": sid, "presences_unlinked": 1, "dead_letters": 2}
    assert _left(api) == kept and not gone & _left(api)
