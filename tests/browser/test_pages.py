"""The dashboard's People, Person, Schedules and Reports pages in real headless
Chromium against a real `facegrid server` process: driven from the keyboard's
controls (links, buttons, forms), no console errors, screenshots for docs/."""

from __future__ import annotations

import os
import shutil
from datetime import date, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from facegrid_services.day_status import local_instant
from facegrid_services.store import db
from fixtures.browser import Browser
from fixtures.dashboard import add_sighting, login

from facegrid.contract import API_PREFIX

pytestmark = [pytest.mark.browser, pytest.mark.integration]
REPO = Path(__file__).resolve().parents[2]
PARIS = ZoneInfo("Europe/Paris")
MON = date(2026, 11, 2)


def keep_screenshot(shot: Path, name: str) -> None:
    assert shot.stat().st_size > 20_000
    if os.environ.get("FACEGRID_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, REPO / "docs" / "img" / name)


def seed(server):
    c = httpx.Client(base_url=server.url, headers=server.admin, timeout=10)
    sched = c.post(f"{API_PREFIX}/schedules", json={
        "name": "Office hours", "timezone": "Europe/Paris", "grace_late_min": 5,
        "shifts": [{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(5)]})
    sched.raise_for_status()
    group = c.post(f"{API_PREFIX}/groups", json={"name": "Lab", "schedule_id": sched.json()["id"]})
    group.raise_for_status()
    people = {}
    for name in ("Ada Lovelace", "Grace Hopper", "Alan Turing"):
        pid = c.post(f"{API_PREFIX}/people", json={"name": name}).json()["id"]
        c.put(f"{API_PREFIX}/groups/{group.json()['id']}/members/{pid}").raise_for_status()
        people[name] = pid
    engine = db.make_engine(server.database_url)
    sessions = db.session_factory(engine)
    for i in range(5):
        d = MON + timedelta(days=i)
        arrival = time(9, 35) if i == 1 else time(8, 55)  # 35 min late on Tuesday
        if i != 2:  # Ada is absent on Wednesday
            add_sighting(sessions, people["Ada Lovelace"], local_instant(d, arrival, PARIS))
            add_sighting(sessions, people["Ada Lovelace"], local_instant(d, time(17, 2), PARIS))
        add_sighting(sessions, people["Grace Hopper"], local_instant(d, time(8, 58), PARIS))
        add_sighting(sessions, people["Grace Hopper"], local_instant(d, time(17, 5), PARIS))
    c.close()
    return people, engine


def test_people_person_schedules_and_reports_pages(live_server, tmp_path):
    people, engine = seed(live_server)
    ada = people["Ada Lovelace"]
    browser = Browser(tmp_path / "profile", tz="Europe/Paris")
    try:
        login(browser, live_server, live_server.admin_token)
        browser.wait_for("!document.getElementById('nav').hidden")

        # People: search, then follow the link to Ada's page.
        browser.eval("location.hash = '#/people'; true")
        browser.wait_for("document.querySelectorAll('#people-body tr').length === 3")
        browser.eval("document.getElementById('people-q').value = 'ada';"
                     "document.getElementById('people-form').requestSubmit(); true")
        browser.wait_for("document.querySelectorAll('#people-body tr').length === 1")
        assert browser.eval("document.querySelector('#people-body a').textContent") == \
            "Ada Lovelace"
        browser.eval("document.querySelector('#people-body a').click(); true")

        # Person: the month's calendar, late on Tuesday, absent on Wednesday.
        browser.wait_for(f"location.hash === '#/person/{ada}'")
        browser.eval("(() => { const m = document.getElementById('person-month');"
                     "m.value = '2026-11'; m.dispatchEvent(new Event('change')); })(); true")
        browser.wait_for("document.querySelector('#calendar [data-day=\"2026-11-04\"]')")
        statuses = browser.eval("Object.fromEntries([...document.querySelectorAll("
                                "'#calendar [data-day]')].map(b => [b.dataset.day, "
                                "b.dataset.status]))")
        assert statuses["2026-11-02"] == "present" and statuses["2026-11-03"] == "late"
        assert statuses["2026-11-04"] == "absent" and statuses["2026-11-07"] == "off"
        # Evidence of Tuesday: the camera, the node's own clock.
        browser.eval("document.querySelector('#calendar [data-day=\"2026-11-03\"]').click(); true")
        browser.wait_for("document.querySelectorAll('#evidence-body tr').length === 2")
        first = browser.eval("[...document.querySelector('#evidence-body tr').cells]"
                             ".map(c => c.textContent)")
        assert first[0].startswith("2026-11-03T09:35:00+01:00") and first[1] == "lobby-cam"
        # A correction of Wednesday: she was at an off-site meeting.
        browser.eval("""(() => {
            document.getElementById('correction-day').value = '2026-11-04';
            document.getElementById('correction-kind').value = 'add_visit';
            document.getElementById('correction-at').value = '09:00';
            document.getElementById('correction-until').value = '17:00';
            document.getElementById('correction-reason').value = 'off-site meeting';
            document.getElementById('correction-form').requestSubmit(); })(); true""")
        browser.wait_for("document.querySelector('#calendar [data-day=\"2026-11-04\"]')"
                         ".dataset.status === 'present'")
        browser.wait_for("document.querySelectorAll('#corrections-body tr').length === 1")
        trail = browser.eval("[...document.querySelector('#corrections-body tr').cells]"
                             ".map(c => c.textContent)")
        assert trail[3] == "off-site meeting" and trail[5] == "absent → present"
        keep_screenshot(browser.screenshot(tmp_path / "person.png"), "dashboard-person.png")

        # Schedules: add one from the form; it appears in the list and the group form.
        browser.eval("location.hash = '#/schedules'; true")
        browser.wait_for("document.querySelectorAll('#schedules-body tr').length === 1")
        browser.eval("""(() => {
            document.getElementById('schedule-name').value = 'Night shift';
            document.getElementById('schedule-start').value = '22:00';
            document.getElementById('schedule-end').value = '06:00';
            document.getElementById('schedule-form').requestSubmit(); })(); true""")
        browser.wait_for("document.querySelectorAll('#schedules-body tr').length === 2")
        assert "Mon Tue Wed Thu Fri 22:00–06:00" in browser.eval(
            "document.querySelector('#schedules-body tr:last-child').textContent")
        assert browser.eval("document.querySelectorAll('#group-schedule option').length") == 3

        # Reports: the week's totals, and a CSV download through the page.
        browser.eval("""(() => {
            location.hash = '#/reports';
            document.getElementById('period-start').value = '2026-11-02';
            document.getElementById('period-end').value = '2026-11-08'; })(); true""")
        browser.wait_for("document.querySelectorAll('#period-body tr').length === 3")
        browser.eval("document.getElementById('period-form').requestSubmit(); true")
        browser.wait_for(f"document.querySelector('#period-body tr[data-person=\"{ada}\"]')"
                         ".cells[2].textContent === '5'")
        row = browser.eval(f"[...document.querySelector('#period-body tr[data-person=\"{ada}\"]')"
                           ".cells].map(c => c.textContent)")
        assert row[:6] == ["Ada Lovelace", "Lab", "5", "1", "35", "0"]
        keep_screenshot(browser.screenshot(tmp_path / "reports.png"), "dashboard-reports.png")

        # Grace's own schedule (the night shift) precedes the Lab's: on Friday, seen
        # last at 17:05 and not again before Saturday 06:00, she left early; back on
        # the group's schedule, she is present again.
        grace = people["Grace Hopper"]
        browser.eval(f"location.hash = '#/person/{grace}'; true")
        friday = "document.querySelector('#calendar [data-day=\"2026-11-06\"]')"
        browser.wait_for(f"document.getElementById('person-name').textContent === "
                         f"'Grace Hopper' && {friday} && {friday}.dataset.status === 'present'")
        assert browser.eval("document.getElementById('person-schedule').disabled") is False
        browser.eval("""(() => {
            const sel = document.getElementById('person-schedule');
            sel.value = [...sel.options].find(o => o.textContent === 'Night shift').value;
            sel.dispatchEvent(new Event('change')); })(); true""")
        browser.wait_for(f"{friday}.dataset.status === 'left_early'")
        own = httpx.get(f"{live_server.url}{API_PREFIX}/people/{grace}",
                        headers=live_server.admin).json()["schedule_id"]
        assert own is not None
        browser.eval("""(() => {
            const sel = document.getElementById('person-schedule');
            sel.value = ''; sel.dispatchEvent(new Event('change')); })(); true""")
        browser.wait_for(f"{friday}.dataset.status === 'present'")
        assert httpx.get(f"{live_server.url}{API_PREFIX}/people/{grace}",
                         headers=live_server.admin).json()["schedule_id"] is None
        assert browser.console_errors == []
    finally:
        browser.close()
        engine.dispose()


def test_erase_needs_the_name_typed_and_a_viewer_sees_no_edit_controls(live_server, tmp_path):
    people, engine = seed(live_server)
    browser = Browser(tmp_path / "profile")
    try:
        login(browser, live_server, live_server.admin_token)
        browser.wait_for("!document.getElementById('nav').hidden")
        browser.eval("location.hash = '#/people'; true")
        turing = people["Alan Turing"]
        browser.wait_for(f"document.querySelector('button[data-erase=\"{turing}\"]')")
        browser.eval(f"document.querySelector('button[data-erase=\"{turing}\"]').click(); true")
        browser.wait_for("document.getElementById('erase-dialog').open")
        # A wrong name does not erase.
        browser.eval("document.getElementById('erase-typed').value = 'Alan';"
                     "document.getElementById('erase-form').requestSubmit(); true")
        browser.wait_for("document.getElementById('erase-error').textContent !== ''")
        assert httpx.get(f"{live_server.url}{API_PREFIX}/people/{turing}",
                         headers=live_server.admin).status_code == 200
        browser.eval("document.getElementById('erase-typed').value = 'Alan Turing';"
                     "document.getElementById('erase-form').requestSubmit(); true")
        browser.wait_for("!document.getElementById('erase-dialog').open")
        browser.wait_for("document.querySelectorAll('#people-body tr').length === 2")
        assert httpx.get(f"{live_server.url}{API_PREFIX}/people/{turing}",
                         headers=live_server.admin).status_code == 404
        assert browser.console_errors == []
    finally:
        browser.close()

    r = httpx.post(f"{live_server.url}{API_PREFIX}/api-tokens", headers=live_server.admin,
                   json={"name": "hr-pages", "role": "viewer"})
    r.raise_for_status()
    browser = Browser(tmp_path / "profile2")
    try:
        login(browser, live_server, r.json()["token"])
        browser.wait_for("!document.getElementById('nav').hidden")
        browser.eval("location.hash = '#/people'; true")
        browser.wait_for("document.querySelectorAll('#people-body tr').length === 2")
        assert browser.eval("document.querySelectorAll('button[data-erase]').length") == 0
        browser.eval(f"location.hash = '#/person/{people['Ada Lovelace']}'; true")
        browser.wait_for("document.getElementById('person-name').textContent === 'Ada Lovelace'")
        assert browser.eval("document.getElementById('correction-form').hidden") is True
        browser.wait_for("document.getElementById('person-schedule').options.length === 2 && "
                         "document.getElementById('person-schedule').disabled")
        browser.eval("location.hash = '#/schedules'; true")
        browser.wait_for("document.querySelectorAll('#schedules-body tr').length === 1")
        assert browser.eval("document.getElementById('schedule-form').hidden") is True
        assert browser.console_errors == []
    finally:
        browser.close()
        engine.dispose()
