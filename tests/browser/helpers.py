"""Helpers shared by the browser tests: sign in through the page, add a sighting row."""

from __future__ import annotations

import json
import uuid

from facegrid_services.store.models import Sighting


def add_sighting(sessions, person_id, at, node="lobby-cam", score=0.81):
    with sessions() as s:
        row = Sighting(
            event_id=str(uuid.uuid4()), stream_id="1-0", node_id=node, person_id=person_id,
            recognised=person_id is not None, score=score, threshold=0.5,
            model="facenet-casia-webface", lamport=7, utc_timestamp=at,
            local_time=at.isoformat(), timezone="Europe/Paris", timezone_offset="+01:00",
            drift_offset_ms=0.0, corrected_utc=at, track_id=3, box=[1, 2, 30, 40],
            det_confidence=0.99, quality={"brightness": 0.5, "blur": 120.0}, received_at=at)
        s.add(row)
        s.commit()
        return row.id


def login(browser, server, token):
    browser.navigate(f"{server.url}/")
    browser.wait_for("!document.getElementById('login').hidden")
    browser.eval(f"document.getElementById('token').value = {json.dumps(token)};"
                 "document.getElementById('login-form').requestSubmit(); true")
