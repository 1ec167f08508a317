"""People, enrollment of embeddings, gallery announcements and complete erasure."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import UTC, date, datetime

import numpy as np
import pytest
from facegrid_services.store.models import Attendance

from facegrid import keys
from facegrid.contract import API_PREFIX

pytestmark = pytest.mark.integration


def unit_vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(512).astype("<f4")
    return v / np.linalg.norm(v)


def image_hash(i: int) -> str:
    return hashlib.sha256(f"photo-{i}".encode()).hexdigest()


class Listener:
    """A real subscriber on the gallery channel (what a worker does)."""

    def __init__(self, r):
        self.pubsub = r.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(keys.GALLERY_CHANNEL)
        self.pubsub.get_message(timeout=1)

    def messages(self, wait: float = 2.0) -> list[dict]:
        out, deadline = [], time.monotonic() + wait
        while time.monotonic() < deadline:
            m = self.pubsub.get_message(timeout=0.1)
            if m:
                out.append(json.loads(m["data"]))
            elif out:
                break
        return out


def create(api, name="Ada Lovelace", **kw):
    r = api.client.post(f"{API_PREFIX}/people", json={"name": name, **kw}, headers=api.admin)
    assert r.status_code == 201, r.text
    return r.json()


def test_create_list_update(api):
    ada = create(api, external_id="E-1")
    bob = create(api, "Bob")
    assert ada["embeddings"] == {}
    page = api.client.get(f"{API_PREFIX}/people", headers=api.admin).json()
    assert [p["name"] for p in page["items"]] == ["Ada Lovelace", "Bob"] and page["total"] == 2
    exact = api.client.get(f"{API_PREFIX}/people", params={"name": "Bob"}, headers=api.admin).json()
    assert [p["id"] for p in exact["items"]] == [bob["id"]]
    search = api.client.get(f"{API_PREFIX}/people", params={"q": "love"}, headers=api.admin).json()
    assert [p["id"] for p in search["items"]] == [ada["id"]]
    paged = api.client.get(f"{API_PREFIX}/people", params={"limit": 1, "offset": 1},
                           headers=api.admin).json()
    assert [p["name"] for p in paged["items"]] == ["Bob"] and paged["total"] == 2

    listener = Listener(api.redis)
    r = api.client.patch(f"{API_PREFIX}/people/{bob['id']}", json={"name": "Robert"},
                         headers=api.admin)
    assert r.status_code == 200 and r.json()["name"] == "Robert"
    assert listener.messages() == [{"change": "updated", "person_id": bob["id"]}]
    assert api.client.get(f"{API_PREFIX}/people/{bob['id']}",
                          headers=api.admin).json()["name"] == "Robert"


def test_duplicates_are_409(api):
    ada = create(api, external_id="E-1")
    bob = create(api, "Bob")
    r = api.client.post(f"{API_PREFIX}/people", json={"name": "Ada Lovelace"}, headers=api.admin)
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    r = api.client.post(f"{API_PREFIX}/people", json={"name": "X", "external_id": "E-1"},
                        headers=api.admin)
    assert r.status_code == 409
    r = api.client.patch(f"{API_PREFIX}/people/{bob['id']}", json={"name": ada["name"]},
                         headers=api.admin)
    assert r.status_code == 409


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "   "}, {"name": "a\x00b"},
                                  {"name": "x" * 201}, {"name": "ok", "extra": 1}])
def test_bad_person_is_422(api, body):
    r = api.client.post(f"{API_PREFIX}/people", json=body, headers=api.admin)
    assert r.status_code == 422, r.text


def test_enroll_embeddings_dedup_and_announce(api):
    ada = create(api)
    listener = Listener(api.redis)
    url = f"{API_PREFIX}/people/{ada['id']}/embeddings"
    v = unit_vector(1)
    b64 = {"model": "facenet-casia-webface", "image_hash": image_hash(1),
           "embedding": base64.b64encode(v.tobytes()).decode()}
    r = api.client.post(url, json=b64, headers=api.admin)
    assert r.status_code == 201 and r.json()["created"] is True
    assert listener.messages() == [{"change": "enrolled", "person_id": ada["id"]}]

    again = api.client.post(url, json=b64, headers=api.admin)
    assert again.status_code == 200 and again.json()["created"] is False
    assert again.json()["id"] == r.json()["id"]
    assert listener.messages(0.5) == []  # nothing changed: nothing announced

    as_list = {"model": "facenet-casia-webface", "image_hash": image_hash(2),
               "embedding": unit_vector(2).tolist()}
    assert api.client.post(url, json=as_list, headers=api.admin).status_code == 201
    other_model = dict(b64, model="facenet-vggface2")
    assert api.client.post(url, json=other_model, headers=api.admin).status_code == 201

    person = api.client.get(f"{API_PREFIX}/people/{ada['id']}", headers=api.admin).json()
    assert person["embeddings"] == {"facenet-casia-webface": 2, "facenet-vggface2": 1}
    page = api.client.get(url, params={"model": "facenet-casia-webface"},
                          headers=api.admin).json()
    listed = page["items"]
    assert page["total"] == 2
    assert sorted(e["image_hash"] for e in listed) == sorted([image_hash(1), image_hash(2)])
    assert all("embedding" not in e and "vector" not in e for e in listed)

    # The stored vector is exactly what was sent.
    from facegrid_services.store.models import Embedding

    with api.sessions() as s:
        stored = s.get(Embedding, r.json()["id"])
        assert stored.vector == v.tobytes()

    eid = r.json()["id"]
    assert api.client.delete(f"{url}/{eid}", headers=api.admin).status_code == 204
    assert api.client.delete(f"{url}/{eid}", headers=api.admin).status_code == 404


@pytest.mark.parametrize("embedding,needle", [
    (base64.b64encode(b"\0" * 100).decode(), "bytes"),
    ("not base64!!", "base64"),
    ([0.1] * 511, "511 values"),
    ([float("nan")] + [0.0] * 511, None),
    ([1e39] + [0.0] * 511, "NaN or infinity"),
    ((unit_vector(3) * 2).tolist(), "norm"),
    (base64.b64encode((unit_vector(3) * 0.5).tobytes()).decode(), "norm"),
])
def test_invalid_embeddings_are_refused(api, embedding, needle):
    ada = create(api)
    body = {"model": "facenet-casia-webface", "image_hash": image_hash(9), "embedding": embedding}
    if needle is None:  # NaN cannot even be sent as JSON
        body_text = json.dumps(body)
        r = api.client.post(f"{API_PREFIX}/people/{ada['id']}/embeddings", content=body_text,
                            headers={**api.admin, "Content-Type": "application/json"})
    else:
        r = api.client.post(f"{API_PREFIX}/people/{ada['id']}/embeddings", json=body,
                            headers=api.admin)
    assert r.status_code == 422, r.text
    if needle:
        assert needle in r.text
    assert api.client.get(f"{API_PREFIX}/people/{ada['id']}",
                          headers=api.admin).json()["embeddings"] == {}


@pytest.mark.parametrize("bad", [{"model": "Bad Model"}, {"image_hash": "abc"},
                                 {"image_hash": "G" * 64}])
def test_bad_embedding_metadata_is_422(api, bad):
    ada = create(api)
    body = {"model": "facenet-casia-webface", "image_hash": image_hash(1),
            "embedding": unit_vector(1).tolist(), **bad}
    r = api.client.post(f"{API_PREFIX}/people/{ada['id']}/embeddings", json=body, headers=api.admin)
    assert r.status_code == 422


def test_erase_person_completely(api, make_sighting):
    ada = create(api)
    bob = create(api, "Bob")
    for i, pid in enumerate((ada["id"], ada["id"], bob["id"])):
        api.client.post(f"{API_PREFIX}/people/{pid}/embeddings", headers=api.admin, json={
            "model": "facenet-casia-webface", "image_hash": image_hash(i),
            "embedding": unit_vector(i).tolist()})
    make_sighting(person_id=ada["id"])
    make_sighting(person_id=ada["id"])
    bob_sighting = make_sighting(person_id=bob["id"])
    stranger = make_sighting(person_id=None)
    now = datetime.now(UTC)
    with api.sessions() as s:
        for pid in (ada["id"], bob["id"]):
            s.add(Attendance(person_id=pid, day=date(2026, 11, 24), check_in=now,
                             check_in_lamport=1, check_in_node="cam-1", check_out=now,
                             check_out_lamport=2, check_out_node="cam-1", sightings=1))
        s.commit()

    listener = Listener(api.redis)
    r = api.client.delete(f"{API_PREFIX}/people/{ada['id']}", headers=api.admin)
    assert r.status_code == 200, r.text
    assert r.json() == {"person_id": ada["id"], "embeddings": 2, "sightings": 2,
                        "attendance": 1, "presences": 0, "dead_letters": 0,
                        "workers_notified": True}
    assert listener.messages() == [{"change": "erased", "person_id": ada["id"]}]

    assert api.client.get(f"{API_PREFIX}/people/{ada['id']}", headers=api.admin).status_code == 404
    sightings = api.client.get(f"{API_PREFIX}/sightings", headers=api.admin).json()
    assert sorted(s["id"] for s in sightings["items"]) == sorted([bob_sighting, stranger])
    report = api.client.get(f"{API_PREFIX}/attendance", headers=api.admin).json()
    assert [row["person_id"] for row in report["items"]] == [bob["id"]]
    gone = api.client.delete(f"{API_PREFIX}/people/{ada['id']}", headers=api.admin)
    assert gone.status_code == 404


@pytest.mark.parametrize("path", [f"{API_PREFIX}/people/0", f"{API_PREFIX}/people/abc",
                                  f"{API_PREFIX}/people/99999999999999999999"])
def test_bad_person_ids(api, path):
    assert api.client.get(path, headers=api.admin).status_code == 422
    assert api.client.get(f"{API_PREFIX}/people/4242", headers=api.admin).status_code == 404
