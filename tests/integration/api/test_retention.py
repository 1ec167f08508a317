"""Retention: old sightings go, recent ones and attendance stay; the periodic job runs."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
from facegrid_services.retention import purge_sightings, retention_loop
from facegrid_services.store.models import Attendance, Person, Sighting
from sqlalchemy import func, select

pytestmark = pytest.mark.integration


def _count(sessions):
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(Sighting))


def test_purge_keeps_recent_sightings_and_attendance(api, make_sighting):
    now = datetime.now(UTC)
    with api.sessions() as s:
        p = Person(name="Ada")
        s.add(p)
        s.commit()
        s.add(Attendance(person_id=p.id, day=date(2020, 1, 1), check_in=now - timedelta(days=400),
                         check_in_lamport=1, check_in_node="c", check_out=now, check_out_lamport=2,
                         check_out_node="c", sightings=1))
        s.commit()
        pid = p.id
    old = [make_sighting(person_id=pid, at=now - timedelta(days=31, minutes=i)) for i in range(7)]
    keep = [make_sighting(at=now - timedelta(days=29)), make_sighting(at=now)]
    deleted = purge_sightings(api.sessions, now - timedelta(days=30), batch=3)
    assert deleted == len(old)
    with api.sessions() as s:
        assert sorted(s.scalars(select(Sighting.id))) == sorted(keep)
        assert s.scalar(select(func.count()).select_from(Attendance)) == 1
    assert purge_sightings(api.sessions, now - timedelta(days=30)) == 0


def test_retention_loop_runs_periodically(api, make_sighting):
    now = datetime.now(UTC)
    runs: list[int | None] = []

    async def scenario():
        task = asyncio.create_task(retention_loop(api.sessions, 1.0, 0.05, on_run=runs.append))
        await asyncio.sleep(0.3)
        # A sighting that becomes too old while the job runs is caught by a later run.
        await asyncio.to_thread(make_sighting, at=now - timedelta(days=2))
        for _ in range(100):
            await asyncio.sleep(0.05)
            if await asyncio.to_thread(_count, api.sessions) == 0:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    make_sighting(at=now - timedelta(days=3))
    make_sighting(at=now)
    asyncio.run(scenario())
    assert runs[0] == 1 and 1 in runs[1:], runs
    assert _count(api.sessions) == 1  # the recent one


def test_server_runs_retention_in_its_lifespan(database_url, redis_url, signing_key, tmp_path):
    from fastapi.testclient import TestClient
    from fixtures.api import build_api

    app, r, engine, _s, _c = build_api(database_url, redis_url, signing_key, tmp_path,
                                       retention_days=1, retention_interval_s=0.05)
    # build_api disables the job for route tests; this test wants it on.
    from facegrid_services.api.app import create_app

    ctx = app.state.ctx
    app = create_app(ctx.settings, sessions=ctx.sessions, redis_client=r, verifier=ctx.verifier)
    with ctx.sessions() as s:
        s.add(Sighting(event_id="0190f0f0-0000-7000-8000-000000000001", stream_id="1-0",
                       node_id="c", person_id=None, recognised=False, score=0.1, threshold=0.5,
                       model="m", lamport=1, utc_timestamp=datetime(2020, 1, 1, tzinfo=UTC),
                       local_time="2020-01-01T00:00:00+00:00", timezone="UTC",
                       timezone_offset="+00:00", drift_offset_ms=0.0,
                       corrected_utc=datetime(2020, 1, 1, tzinfo=UTC), track_id=1, box=[0, 0, 1, 1],
                       det_confidence=0.9, quality={"brightness": 1, "blur": 1},
                       received_at=datetime(2020, 1, 1, tzinfo=UTC)))
        s.commit()
    with TestClient(app) as client:
        for _ in range(100):
            if _count(ctx.sessions) == 0:
                break
            import time

            time.sleep(0.05)
        assert _count(ctx.sessions) == 0
        assert "facegrid_server_retention_runs_total" in client.get("/metrics").text
    r.close()
    engine.dispose()
