"""Sightings, attendance (time zones, CSV), alerts, thresholds, stream backlog, dead letters."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from facegrid_services.store.models import Alert, Attendance, Person

from facegrid import keys
from facegrid.contract import API_PREFIX

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 24, 21, 30, tzinfo=UTC)


def person(api, name):
    with api.sessions() as s:
        p = Person(name=name)
        s.add(p)
        s.commit()
        return p.id


def test_sightings_filters_and_pages(api, make_sighting):
    ada = person(api, "Ada")
    ids = [make_sighting(node_id="cam-1", person_id=ada, at=T0 + timedelta(minutes=i))
           for i in range(5)]
    other = make_sighting(node_id="cam-2", person_id=None, at=T0 + timedelta(minutes=10))
    get = lambda **p: api.client.get(f"{API_PREFIX}/sightings", params=p, headers=api.admin)  # noqa: E731

    allp = get().json()
    assert allp["total"] == 6 and allp["items"][0]["id"] == other  # newest first
    assert allp["items"][1]["person_name"] == "Ada" and allp["items"][0]["person_name"] is None
    assert allp["items"][0]["corrected_utc"].endswith("Z") or "+00:00" in \
        allp["items"][0]["corrected_utc"]
    assert [s["id"] for s in get(node_id="cam-1").json()["items"]] == ids[::-1]
    assert [s["id"] for s in get(person_id=ada, limit=2, offset=1).json()["items"]] == \
        [ids[3], ids[2]]
    window = get(start=(T0 + timedelta(minutes=1)).isoformat(),
                 end=(T0 + timedelta(minutes=3)).isoformat()).json()
    assert [s["id"] for s in window["items"]] == [ids[2], ids[1]]
    # Naive times are read as UTC; an offset is honoured.
    paris = get(start="2026-11-24T22:33:00+01:00").json()
    assert [s["id"] for s in paris["items"]] == [other, ids[4], ids[3]]
    assert get(recognised=False).json()["total"] == 1
    assert [s["id"] for s in get(after_id=ids[3]).json()["items"]] == [other, ids[4]]

    for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"start": "yesterday"},
                {"start": "2026-11-25T00:00:00Z", "end": "2026-11-24T00:00:00Z"},
                {"node_id": "Not Valid"}, {"person_id": 0}, {"start": "0001-01-01T00:00:00"},
                {"start": "9999-12-31T23:59:59-05:00"}):
        r = get(**bad)
        assert r.status_code == 422, (bad, r.text)


def _attendance(api, pid, day, check_in, check_out):
    with api.sessions() as s:
        s.add(Attendance(person_id=pid, day=day, check_in=check_in, check_in_lamport=1,
                         check_in_node="cam-1", check_out=check_out, check_out_lamport=2,
                         check_out_node="cam-2", sightings=3))
        s.commit()


def test_attendance_time_zones_and_csv(api):
    ada, bob = person(api, "Ada"), person(api, "=cmd|' /C calc'!A0")
    _attendance(api, ada, date(2026, 11, 24), T0, T0 + timedelta(hours=1))
    _attendance(api, bob, date(2026, 11, 24), T0 - timedelta(hours=9), T0)
    _attendance(api, ada, date(2026, 11, 25), T0 + timedelta(days=1), T0 + timedelta(days=1))
    get = lambda **p: api.client.get(f"{API_PREFIX}/attendance", params=p, headers=api.admin)  # noqa: E731

    day = get(day="2026-11-24", tz="Asia/Tokyo").json()
    assert day["tz"] == "Asia/Tokyo" and day["site_timezone"] == "UTC" and day["total"] == 2
    row = next(r for r in day["items"] if r["person_id"] == ada)
    # 21:30 UTC is 06:30 the next morning in Tokyo and 16:30 in New York: the same instant.
    assert row["check_in_local"] == "2026-11-25T06:30:00+09:00"
    ny = get(day="2026-11-24", tz="America/New_York", person_id=ada).json()["items"][0]
    assert ny["check_in_local"] == "2026-11-24T16:30:00-05:00"
    assert datetime.fromisoformat(ny["check_in_local"]) == \
        datetime.fromisoformat(row["check_in_local"]) == T0
    assert get().json()["tz"] == "UTC"  # default: the site's zone
    assert get(start="2026-11-25", end="2026-11-30").json()["total"] == 1
    assert get(person_id=ada).json()["total"] == 2

    r = get(day="2026-11-24", tz="Europe/Paris", format="csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attendance_2026-11-24.csv" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 2
    ada_row = next(x for x in rows if x["person_name"] == "Ada")
    assert ada_row["check_in_utc"] == "2026-11-24T21:30:00.000000Z"
    assert ada_row["check_in_local"] == "2026-11-24T22:30:00+01:00"
    assert ada_row["timezone"] == "Europe/Paris" and ada_row["sightings"] == "3"
    # A name that is a spreadsheet formula is neutralised.
    assert next(x for x in rows if x["person_id"] == str(bob))["person_name"].startswith("'=")

    for bad in ({"tz": "Mars/Olympus"}, {"tz": "../../etc/passwd"}, {"tz": ""},
                {"day": "2026-02-30"}, {"day": "2026-11-24", "start": "2026-11-20"},
                {"start": "2026-11-25", "end": "2026-11-24"}, {"format": "xml"},
                {"day": "0001-01-01"}):
        r = get(**bad)
        assert r.status_code == 422, (bad, r.text)
    assert "IANA" in get(tz="Mars/Olympus").json()["detail"]


def test_alerts_list_and_acknowledge(api):
    with api.sessions() as s:
        for i in range(3):
            s.add(Alert(kind="intruder", dedup_key=f"k{i}", created_at=T0 + timedelta(minutes=i),
                        window_start=T0, window_end=T0 + timedelta(minutes=5), count=3 + i,
                        nodes=["cam-1"], message=f"{3 + i} unknown faces"))
        s.commit()
    alerts = api.client.get(f"{API_PREFIX}/alerts", headers=api.admin).json()
    assert alerts["total"] == 3 and alerts["items"][0]["count"] == 5
    aid = alerts["items"][0]["id"]
    r = api.client.post(f"{API_PREFIX}/alerts/{aid}/acknowledge", json={"by": "guard"},
                        headers=api.admin)
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "guard"
    first = r.json()["acknowledged_at"]
    again = api.client.post(f"{API_PREFIX}/alerts/{aid}/acknowledge", headers=api.admin).json()
    assert again["acknowledged_at"] == first and again["acknowledged_by"] == "guard"
    open_ = api.client.get(f"{API_PREFIX}/alerts", params={"acknowledged": False},
                           headers=api.admin).json()
    assert open_["total"] == 2 and aid not in [a["id"] for a in open_["items"]]
    assert api.client.get(f"{API_PREFIX}/alerts", params={"acknowledged": True, "kind": "intruder"},
                          headers=api.admin).json()["total"] == 1
    assert api.client.post(f"{API_PREFIX}/alerts/999/acknowledge",
                           headers=api.admin).status_code == 404


def test_threshold_stats(api):
    r = api.client.get(f"{API_PREFIX}/stats/thresholds", headers=api.admin).json()
    assert r["grid"] == [] and r["suggested_threshold"] is None
    # Strangers score around 0.2, enrolled people around 0.75.
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0.2, 0.06, 300), rng.normal(0.75, 0.06, 200)])
    grid = {f"{t:.2f}": int((scores >= t).sum()) for t in np.arange(0.0, 1.0001, 0.05)}
    api.redis.hset(keys.THRESHOLD_GRID, mapping=grid)
    r = api.client.get(f"{API_PREFIX}/stats/thresholds", headers=api.admin).json()
    assert r["events"] == 500 and len(r["grid"]) == 21
    assert 0.4 <= r["suggested_threshold"] <= 0.55, r


def _entry(i: int) -> dict:
    payload = {"node_id": "cam-1", "event_id": f"0190f0f0-0000-7000-8000-00000000000{i}"}
    return {"v": b"1", "token": b"jwt", "payload": json.dumps(payload).encode(),
            "embedding": np.ones(512, "<f4").tobytes()}


def test_stream_backlog_and_dead_letters(api):
    info = api.client.get(f"{API_PREFIX}/stream", headers=api.admin).json()
    assert info == {"stream": keys.EVENTS_STREAM, "exists": False, "length": 0, "groups": [],
                    "pending": 0, "oldest_pending_id": None, "dead_letters": 0}
    r = api.redis
    r.xgroup_create(keys.EVENTS_STREAM, keys.WORKER_GROUP, id="0", mkstream=True)
    for i in range(3):
        r.xadd(keys.EVENTS_STREAM, _entry(i))
    got = r.xreadgroup(keys.WORKER_GROUP, "w1", {keys.EVENTS_STREAM: ">"}, count=2)
    first_id = got[0][1][0][0].decode()
    info = api.client.get(f"{API_PREFIX}/stream", headers=api.admin).json()
    assert info["length"] == 3 and info["pending"] == 2 and info["oldest_pending_id"] == first_id
    group = info["groups"][0]
    assert group["name"] == keys.WORKER_GROUP and group["consumers"] == 1
    assert group["lag"] == 1

    dead = {**_entry(7), "reason": b"revoked", "detail": b"token was revoked",
            "source_id": first_id.encode()}
    dl_id = r.xadd(keys.DEAD_LETTER_STREAM, dead).decode()
    r.xadd(keys.DEAD_LETTER_STREAM, {**_entry(8), "reason": b"bad_json", "detail": b"x",
                                     "source_id": b"1-1"})
    page = api.client.get(f"{API_PREFIX}/dead-letters", headers=api.admin).json()
    assert page["total"] == 2 and page["offset"] == 0
    listed = page["items"]
    assert [d["reason"] for d in listed] == ["bad_json", "revoked"]
    one = api.client.get(f"{API_PREFIX}/dead-letters/{dl_id}", headers=api.admin).json()
    assert one["node_id"] == "cam-1" and one["source_id"] == first_id
    assert one["fields"] == ["embedding", "payload", "token", "v"]
    assert "jwt" not in json.dumps(one)  # the token is never shown
    older = api.client.get(f"{API_PREFIX}/dead-letters", params={"limit": 1, "offset": 1},
                           headers=api.admin).json()
    assert [d["id"] for d in older["items"]] == [dl_id] and older["total"] == 2
    beyond = api.client.get(f"{API_PREFIX}/dead-letters", params={"offset": 2},
                            headers=api.admin).json()
    assert beyond["items"] == [] and beyond["total"] == 2

    rep = api.client.post(f"{API_PREFIX}/dead-letters/{dl_id}/replay", headers=api.admin)
    assert rep.status_code == 200, rep.text
    new_id = rep.json()["new_id"]
    replayed = r.xrange(keys.EVENTS_STREAM, min=new_id, max=new_id)[0][1]
    assert replayed == {k.encode(): v for k, v in _entry(7).items()}  # the original fields only
    assert r.xlen(keys.DEAD_LETTER_STREAM) == 1
    assert api.client.post(f"{API_PREFIX}/dead-letters/{dl_id}/replay",
                           headers=api.admin).status_code == 404
    assert api.client.delete(f"{API_PREFIX}/dead-letters/{listed[0]['id']}",
                             headers=api.admin).status_code == 200
    assert r.xlen(keys.DEAD_LETTER_STREAM) == 0
    for bad in ("abc", "1-2-3", "1" * 30 + "-0"):
        assert api.client.post(f"{API_PREFIX}/dead-letters/{bad}/replay",
                               headers=api.admin).status_code == 422


def test_health_ready_metrics(api):
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok",
                                                                   "redis": "ok"}
    api.client.get(f"{API_PREFIX}/people/42", headers=api.admin)
    text = api.client.get("/metrics").text
    route = f"{API_PREFIX}/people/{{person_id}}"
    assert f'facegrid_server_http_request_seconds_count{{route="{route}"}}' in text
    assert "facegrid_server_admin_refused_total" in text
    root = api.client.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/dashboard/"
    assert "facegrid" in api.client.get("/dashboard/").text


def test_readyz_reports_redis_down(api, redis_server):
    redis_server.kill()
    try:
        r = api.client.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["redis"].startswith("error")
        assert r.json()["checks"]["database"] == "ok"
        # A route needing Redis says so instead of failing with a 500.
        assert api.client.get(f"{API_PREFIX}/stream", headers=api.admin).status_code == 503
    finally:
        redis_server.start()
