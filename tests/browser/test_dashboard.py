"""The dashboard in real headless Chromium against a real `facegrid server` process."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from facegrid_services.store import db
from facegrid_services.store.models import Alert, Attendance

from facegrid.contract import REGISTER_PATH, heartbeat_path

from .cdp import Browser
from .helpers import add_sighting, login

pytestmark = [pytest.mark.browser, pytest.mark.integration]
REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 24, 21, 30, tzinfo=UTC)  # 06:30 next day in Tokyo, 16:30 in New York


def seed(server) -> tuple:
    client = httpx.Client(base_url=server.url, timeout=10)
    for node, state in (("lobby-cam", "active"), ("dock-cam", "idle")):
        h = server.node_headers(node)
        client.post(REGISTER_PATH, headers=h, json={
            "node_id": node, "timezone": "Europe/Paris", "model": "facenet-casia-webface",
            "version": "0.1.0", "camera": "usb"}).raise_for_status()
        client.post(heartbeat_path(node), headers=h, json={
            "sent_at": datetime.now(UTC).timestamp(), "state": state, "state_seconds": 12.0,
            "fps": 9.8 if state == "active" else 1.0, "drift_offset_ms": -3.2, "lamport": 5,
            "camera_up": True, "events_sent": 3, "events_dropped": 0,
            "backlog": 0}).raise_for_status()
    ada = client.post("/api/v1/people", headers=server.admin,
                      json={"name": "Ada Lovelace"}).json()["id"]
    grace = client.post("/api/v1/people", headers=server.admin,
                        json={"name": "Grace Hopper"}).json()["id"]
    engine = db.make_engine(server.database_url)
    sessions = db.session_factory(engine)
    with sessions() as s:
        s.add(Attendance(person_id=ada, day=date(2026, 11, 24), check_in=T0,
                         check_in_lamport=1, check_in_node="lobby-cam",
                         check_out=T0 + timedelta(hours=8, minutes=15), check_out_lamport=9,
                         check_out_node="dock-cam", sightings=14))
        s.add(Attendance(person_id=grace, day=date(2026, 11, 24),
                         check_in=T0 + timedelta(minutes=42), check_in_lamport=2,
                         check_in_node="lobby-cam", check_out=T0 + timedelta(hours=7),
                         check_out_lamport=8, check_out_node="lobby-cam", sightings=6))
        s.add(Alert(kind="intruder", dedup_key="intruder:lobby-cam:1", created_at=T0,
                    window_start=T0, window_end=T0 + timedelta(minutes=5), count=4,
                    nodes=["lobby-cam"], message="4 unknown faces at lobby-cam in 5 min"))
        s.commit()
    client.close()
    return sessions, engine, ada, grace


def test_dashboard_live_view_alerts_and_report(live_server, tmp_path):
    sessions, engine, ada, _grace = seed(live_server)
    browser = Browser(tmp_path / "profile", lang="en-US", tz="Asia/Tokyo")
    try:
        login(browser, live_server, live_server.admin_token)
        browser.wait_for("!document.getElementById('app').hidden")
        assert browser.eval("Intl.DateTimeFormat().resolvedOptions().timeZone") == "Asia/Tokyo"
        assert browser.eval("sessionStorage.getItem('facegrid.adminToken')") == \
            live_server.admin_token

        # Fleet: both cameras with their state.
        browser.wait_for("document.querySelectorAll('#fleet-body tr').length === 2")
        fleet = browser.eval("[...document.querySelectorAll('#fleet-body tr')].map("
                             "r => [r.dataset.node, r.cells[1].textContent])")
        assert sorted(fleet) == [["dock-cam", "idle"], ["lobby-cam", "online"]]

        # Live sightings: none yet; rows appear as the worker inserts them.
        browser.wait_for("document.getElementById('sightings-empty').hidden === false")
        first = add_sighting(sessions, ada, T0)
        browser.wait_for(f"document.querySelector('#sightings-body tr[data-id=\"{first}\"]')")
        now = datetime.now(UTC).replace(microsecond=0)
        second = add_sighting(sessions, None, now, score=0.21)
        browser.wait_for(f"document.querySelector('#sightings-body tr[data-id=\"{second}\"]')")
        rows = browser.eval("[...document.querySelectorAll('#sightings-body tr')].map("
                            "r => [...r.cells].map(c => c.textContent))")
        assert rows[0][1:] == ["lobby-cam", "unknown", "0.21"]
        assert rows[1][1:] == ["lobby-cam", "Ada Lovelace", "0.81"]
        # Sent as UTC, shown in the viewer's zone: 21:30 UTC is 06:30 next day in Tokyo.
        assert "06:30:00" in rows[1][0] and "11/25/2026" in rows[1][0], rows[1][0]

        # Alerts: acknowledge from the page, the server records it.
        browser.wait_for("document.querySelector('#alerts-list li button.ack')")
        browser.eval("document.querySelector('#alerts-list li button.ack').click(); true")
        browser.wait_for("document.querySelector('#alerts-list li.acked')")
        with sessions() as s:
            alert = s.query(Alert).one()
            # the dashboard sends no name: the server records the signed-in token's
            assert alert.acknowledged_by == "bootstrap-admin"
            assert alert.acknowledged_at is not None

        # Report: the same instants in two zones chosen in the selector.
        def report(tz):
            browser.eval("(() => { document.getElementById('report-day').value = '2026-11-24';"
                         f"const s = document.getElementById('report-tz'); s.value = '{tz}';"
                         "s.dispatchEvent(new Event('change')); return true; })()")
            browser.wait_for(f"document.getElementById('report-body').dataset.tz === '{tz}'"
                             " && document.querySelectorAll('#report-body tr').length === 2")
            return browser.eval(
                "Object.fromEntries([...document.querySelectorAll('#report-body tr')].map("
                "r => [r.cells[0].textContent, [r.cells[1].textContent, "
                "r.cells[1].dataset.utc]]))")

        tokyo = report("Asia/Tokyo")
        new_york = report("America/New_York")
        assert "11/25/2026" in tokyo["Ada Lovelace"][0] and "06:30:00" in tokyo["Ada Lovelace"][0]
        assert "11/24/2026" in new_york["Ada Lovelace"][0]
        assert "16:30:00" in new_york["Ada Lovelace"][0]
        assert "07:12:00" in tokyo["Grace Hopper"][0] and "17:12:00" in new_york["Grace Hopper"][0]
        # The same UTC instant underneath both renderings.
        assert tokyo["Ada Lovelace"][1] == new_york["Ada Lovelace"][1]
        assert datetime.fromisoformat(tokyo["Ada Lovelace"][1].replace("Z", "+00:00")) == T0

        report("Europe/Paris")
        shot = browser.screenshot(tmp_path / "dashboard.png")
        assert shot.stat().st_size > 20_000
        target = REPO / "docs" / "img" / "dashboard.png"
        if os.environ.get("FACEGRID_UPDATE_SCREENSHOT") == "1":
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, target)
    finally:
        browser.close()
        engine.dispose()


def test_dashboard_shows_the_role_and_hides_what_it_cannot_do(live_server, tmp_path):
    _sessions, engine, _ada, _grace = seed(live_server)
    r = httpx.post(f"{live_server.url}/api/v1/api-tokens", headers=live_server.admin,
                   json={"name": "hr", "role": "viewer"})
    assert r.status_code == 201, r.text
    browser = Browser(tmp_path / "profile")
    try:
        login(browser, live_server, r.json()["token"])
        browser.wait_for("!document.getElementById('app').hidden")
        assert browser.eval("document.getElementById('role').textContent") == "hr · viewer"
        browser.wait_for("document.querySelectorAll('#alerts-list li').length === 1")
        browser.wait_for("document.querySelectorAll('#fleet-body tr').length === 2")
        assert browser.eval("document.querySelectorAll('#alerts-list button.ack').length") == 0
    finally:
        browser.close()
        engine.dispose()


def test_dashboard_refuses_a_wrong_token(live_server, tmp_path):
    browser = Browser(tmp_path / "profile")
    try:
        login(browser, live_server, "not-the-admin-token")
        browser.wait_for("document.getElementById('login-error').textContent.length > 0")
        assert browser.eval("document.getElementById('app').hidden") is True
        assert browser.eval("sessionStorage.getItem('facegrid.adminToken')") is None
    finally:
        browser.close()
