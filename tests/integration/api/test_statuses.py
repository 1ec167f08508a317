"""Schedules, groups, day statuses, corrections and evidence through the real API
(SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from facegrid_services.api.attendance_schemas import StatusReport
from facegrid_services.day_status import local_instant

from facegrid.contract import API_PREFIX

pytestmark = pytest.mark.integration

BERLIN = ZoneInfo("Europe/Berlin")
MON = date(2026, 3, 23)  # the week of the spring DST change (Sunday 29 March)


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return local_instant(day, time(hh, mm), BERLIN)


def setup_person(api, name="Ada Lovelace", shifts=None) -> tuple[int, int, int]:
    shifts = shifts or [{"weekday": d, "start": "08:00", "end": "16:00"} for d in range(5)]
    r = api.client.post(f"{API_PREFIX}/schedules", headers=api.admin,
                        json={"name": f"office {name}", "timezone": "Europe/Berlin",
                              "shifts": shifts, "grace_late_min": 5})
    assert r.status_code == 201, r.text
    sched = r.json()["id"]
    r = api.client.post(f"{API_PREFIX}/groups", headers=api.admin,
                        json={"name": f"team {name}", "schedule_id": sched})
    assert r.status_code == 201, r.text
    group = r.json()["id"]
    r = api.client.post(f"{API_PREFIX}/people", headers=api.admin, json={"name": name})
    assert r.status_code == 201, r.text
    person = r.json()["id"]
    r = api.client.put(f"{API_PREFIX}/groups/{group}/members/{person}", headers=api.admin)
    assert r.status_code == 204, r.text
    return sched, group, person


def report(api, start, end, **params):
    r = api.client.get(f"{API_PREFIX}/statuses", headers=api.admin,
                       params={"start": start.isoformat(), "end": end.isoformat(), **params})
    assert r.status_code == 200, r.text
    return r.json()


def test_week_statuses_with_a_late_arrival_and_an_absence(api, make_sighting):
    _, group, person = setup_person(api)
    # Monday on time, Tuesday 25 min late, Wednesday absent, Thursday leaves early,
    # Friday on time; the door camera sees arrivals and departures.
    days = {0: ((7, 58), (16, 5)), 1: ((8, 25), (16, 2)), 3: ((7, 55), (14, 0)),
            4: ((8, 0), (16, 0))}
    for wd, (a, b) in days.items():
        d = MON + timedelta(days=wd)
        make_sighting(person_id=person, at=at(d, *a), node_id="door-1")
        make_sighting(person_id=person, at=at(d, *b), node_id="door-1")
    body = report(api, MON, MON + timedelta(days=6), group_id=group, tz="Europe/Berlin")
    StatusReport.model_validate(body)  # the hand-built JSON has the documented shape
    (p,) = body["items"]
    got = {d["day"]: d["status"] for d in p["days"]}
    assert list(got.values()) == ["present", "late", "absent", "left_early", "present",
                                  "off", "off"]
    tue = p["days"][1]
    assert tue["late_minutes"] == 25 and tue["first_in_local"] == "2026-03-24T08:25:00+01:00"
    assert p["days"][0]["on_site_hours"] == pytest.approx(8.12, abs=0.01)
    assert (p["present"], p["late"], p["absent"]) == (4, 1, 1)
    assert p["groups"] == ["team Ada Lovelace"]


def test_correction_changes_the_report_and_leaves_the_evidence(api, make_sighting):
    _, _, person = setup_person(api)
    make_sighting(person_id=person, at=at(MON, 8, 40), node_id="door-1")
    make_sighting(person_id=person, at=at(MON, 16, 0), node_id="door-1")
    assert report(api, MON, MON)["items"][0]["days"][0]["status"] == "late"
    r = api.client.post(f"{API_PREFIX}/corrections", headers=api.admin, json={
        "person_id": person, "day": MON.isoformat(), "kind": "set_check_in",
        "at": at(MON, 8, 0).isoformat(), "reason": "badge log shows 08:00, camera was dark"})
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["before"]["status"] == "late" and c["after"]["status"] == "present"
    assert c["made_by"]  # who made it
    day = report(api, MON, MON)["items"][0]["days"][0]
    assert day["status"] == "present" and day["corrected"] and day["corrections"] == [c["id"]]
    ev = api.client.get(f"{API_PREFIX}/people/{person}/days/{MON.isoformat()}", headers=api.admin,
                        params={"tz": "America/New_York"}).json()
    # The camera evidence is untouched: still 08:40 Berlin, shown in New York time too.
    assert [s["viewer_local"] for s in ev["sightings"]] == ["2026-03-23T03:40:00-04:00",
                                                            "2026-03-23T11:00:00-04:00"]
    assert ev["sightings"][0]["node_id"] == "door-1" and "drift_offset_ms" in ev["sightings"][0]
    assert [x["id"] for x in ev["corrections"]] == [c["id"]]
    assert ev["status"]["corrected"]
    trail = api.client.get(f"{API_PREFIX}/corrections", headers=api.admin,
                           params={"person_id": person}).json()
    assert trail["total"] == 1 and trail["items"][0]["reason"].startswith("badge log")


def test_late_arriving_event_recomputes_the_day(api, make_sighting):
    _, _, person = setup_person(api)
    assert report(api, MON, MON)["items"][0]["days"][0]["status"] == "absent"
    # A node that was offline delivers Monday's events on Tuesday.
    make_sighting(person_id=person, at=at(MON, 7, 59))
    make_sighting(person_id=person, at=at(MON, 16, 1))
    assert report(api, MON, MON)["items"][0]["days"][0]["status"] == "present"


def test_overnight_shift_over_the_dst_change(api, make_sighting):
    # Saturday 28 March 22:00 -> Sunday 06:00 across the spring jump: 7 real hours.
    sat = MON + timedelta(days=5)
    _, _, person = setup_person(api, "Night Owl",
                                [{"weekday": 5, "start": "22:00", "end": "06:00"}])
    make_sighting(person_id=person, at=at(sat, 21, 58))
    make_sighting(person_id=person, at=at(sat + timedelta(days=1), 6, 3))
    days = report(api, sat, sat + timedelta(days=1))["items"][0]["days"]
    assert days[0]["status"] == "present" and days[0]["scheduled_hours"] == 7.0
    assert days[0]["on_site_hours"] == pytest.approx(7.08, abs=0.01)
    assert days[1]["status"] == "off" and days[1]["on_site_hours"] == 0


def test_closures_csv_and_xlsx(api, make_sighting):
    sched, _, _ = setup_person(api, "=cmd|' /C calc'!A0")
    r = api.client.post(f"{API_PREFIX}/closures", headers=api.admin,
                        json={"day": MON.isoformat(), "name": "Spring holiday",
                              "schedule_id": sched})
    assert r.status_code == 201, r.text
    r = api.client.post(f"{API_PREFIX}/closures", headers=api.admin,
                        json={"day": MON.isoformat(), "schedule_id": sched})
    assert r.status_code == 409
    r = api.client.get(f"{API_PREFIX}/statuses", headers=api.admin, params={
        "start": MON.isoformat(), "end": MON.isoformat(), "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[1][2].startswith("'=") and rows[1][4] == "holiday"
    r = api.client.get(f"{API_PREFIX}/statuses", headers=api.admin, params={
        "start": MON.isoformat(), "end": MON.isoformat(), "format": "xlsx"})
    assert r.status_code == 200
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(r.content))
    assert wb["Days"]["C2"].value.startswith("'=") and wb["Days"]["C2"].data_type == "s"


def test_bad_input_is_refused_with_a_reason(api):
    _, _, person = setup_person(api)
    r = api.client.post(f"{API_PREFIX}/schedules", headers=api.admin, json={
        "name": "bad", "timezone": "Mars/Olympus", "shifts": []})
    assert r.status_code == 422 and "Mars/Olympus" in r.text
    r = api.client.post(f"{API_PREFIX}/schedules", headers=api.admin, json={
        "name": "bad", "timezone": "UTC", "shifts": [{"weekday": 7, "start": "25:00",
                                                       "end": "08:00"}]})
    assert r.status_code == 422
    r = api.client.get(f"{API_PREFIX}/statuses", headers=api.admin,
                       params={"start": "2026-01-01", "end": "2027-06-01"})
    assert r.status_code == 422 and "366" in r.text
    base = {"person_id": person, "day": MON.isoformat(), "reason": "typo test"}
    r = api.client.post(f"{API_PREFIX}/corrections", headers=api.admin,
                        json={**base, "kind": "set_check_in", "at": "2027-03-23T08:00:00Z"})
    assert r.status_code == 422 and "not within a day" in r.text
    r = api.client.post(f"{API_PREFIX}/corrections", headers=api.admin,
                        json={**base, "kind": "add_visit", "at": at(MON, 8).isoformat()})
    assert r.status_code == 422 and "needs until" in r.text
    r = api.client.post(f"{API_PREFIX}/corrections", headers=api.admin,
                        json={**base, "kind": "set_check_in", "at": "2026-03-23T08:00:00"})
    assert r.status_code == 422 and "offset" in r.text
    r = api.client.post(f"{API_PREFIX}/corrections", headers=api.admin,
                        json={**base, "person_id": 99999, "kind": "set_check_in",
                              "at": at(MON, 8).isoformat()})
    assert r.status_code == 404


def test_presences_are_the_stays(api):
    """A classroom camera keeps a person in view: the presence is the stay, and a
    presence that is unknown or someone else's does not count."""
    from facegrid_services.store.models import Presence

    _, _, person = setup_person(api)
    with api.sessions() as s:
        s.add_all([
            Presence(node_id="room-1", track_id=1, status="recognised", person_id=person,
                     first_seen=at(MON, 7, 58), last_seen=at(MON, 11, 30), frames=900,
                     events=12, score=0.8, best_score=0.82),
            Presence(node_id="room-1", track_id=2, status="recognised", person_id=person,
                     first_seen=at(MON, 13, 0), last_seen=at(MON, 16, 4), frames=700,
                     events=9, score=0.79, best_score=0.8),
            Presence(node_id="room-1", track_id=3, status="unknown", person_id=None,
                     first_seen=at(MON, 12, 0), last_seen=at(MON, 12, 30), frames=50,
                     events=2, score=0.3, best_score=0.3),
        ])
        s.commit()
    r = api.client.get(f"{API_PREFIX}/statuses", headers=api.admin, params={
        "start": MON.isoformat(), "end": MON.isoformat(), "person_id": person,
        "tz": "Europe/Berlin"})
    day = r.json()["items"][0]["days"][0]
    # The presences are 1.5 h apart, inside the default 9 h visit gap: one stay
    # 07:58-16:04 (a site with room cameras may lower FACEGRID_ATTENDANCE_VISIT_GAP_S).
    assert day["status"] == "present" and day["on_site_hours"] == pytest.approx(8.1)
    assert day["first_in_local"] == "2026-03-23T07:58:00+01:00"
    assert day["last_out_local"] == "2026-03-23T16:04:00+01:00"
    ev = api.client.get(f"{API_PREFIX}/people/{person}/days/{MON.isoformat()}",
                        headers=api.admin).json()
    assert [p["node_id"] for p in ev["presences"]] == ["room-1", "room-1"]
    assert ev["presences"][0]["frames"] == 900


def test_a_persons_own_schedule_precedes_the_groups(api, make_sighting):
    """A part-timer in a full-time team: their own 12:00-16:00 schedule makes a 12:00
    arrival on time; cleared (or deleted), the team's 08:00 start applies again."""
    _, group, person = setup_person(api, "Part Timer")
    r = api.client.post(f"{API_PREFIX}/schedules", headers=api.admin, json={
        "name": "afternoons", "timezone": "Europe/Berlin", "grace_late_min": 5,
        "shifts": [{"weekday": d, "start": "12:00", "end": "16:00"} for d in range(5)]})
    own = r.json()["id"]
    make_sighting(person_id=person, at=at(MON, 12, 0), node_id="door-1")
    make_sighting(person_id=person, at=at(MON, 16, 1), node_id="door-1")

    def monday():
        (p,) = report(api, MON, MON, group_id=group)["items"]
        return p["days"][0]

    assert monday()["status"] == "late" and monday()["late_minutes"] == 240
    r = api.client.patch(f"{API_PREFIX}/people/{person}", headers=api.admin,
                         json={"schedule_id": own})
    assert r.status_code == 200 and r.json()["schedule_id"] == own, r.text
    assert monday()["status"] == "present" and monday()["scheduled_hours"] == 4.0
    # Only this person: the team's others keep the team's schedule.
    _, _, other = setup_person(api, "Full Timer")
    assert api.client.get(f"{API_PREFIX}/people/{other}",
                          headers=api.admin).json()["schedule_id"] is None

    r = api.client.patch(f"{API_PREFIX}/people/{person}", headers=api.admin,
                         json={"schedule_id": None})
    assert r.status_code == 200 and r.json()["schedule_id"] is None
    assert monday()["status"] == "late"
    api.client.patch(f"{API_PREFIX}/people/{person}", headers=api.admin,
                     json={"schedule_id": own})
    assert api.client.delete(f"{API_PREFIX}/schedules/{own}",
                             headers=api.admin).status_code == 204
    assert api.client.get(f"{API_PREFIX}/people/{person}",
                          headers=api.admin).json()["schedule_id"] is None
    assert monday()["status"] == "late"
    # An unknown schedule is refused, on create and on update.
    r = api.client.patch(f"{API_PREFIX}/people/{person}", headers=api.admin,
                         json={"schedule_id": own})
    assert r.status_code == 404 and "schedule" in r.json()["detail"]
    r = api.client.post(f"{API_PREFIX}/people", headers=api.admin,
                        json={"name": "Nobody", "schedule_id": own})
    assert r.status_code == 404
