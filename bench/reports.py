"""Period report latency: N people × D days of day statuses on PostgreSQL (or SQLite).

Fills a fresh database with N people in one scheduled group and two door
sightings per person per working day (arrival, departure; a few late, a few
absent), then times what ``GET /api/v1/statuses`` does for all of them at once
(the store reads, the status arithmetic, the JSON rows) and the CSV and XLSX
downloads.  In-process, without HTTP: the figure is the report's own cost.

    python bench/reports.py                       # 500 people × 31 days, temporary PostgreSQL
    python bench/reports.py --database-url sqlite:////tmp/r.db --people 100
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from datetime import time as wall
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from facegrid_services import attendance_rules, status_report
from facegrid_services.day_status import local_instant
from facegrid_services.store import db
from facegrid_services.store.models import (
    Group,
    GroupMember,
    Person,
    Schedule,
    Sighting,
)
from sqlalchemy import insert, text

TZ = ZoneInfo("Europe/Berlin")


def fill(url: str, people: int, first: date, days: int) -> list[int]:
    engine = db.make_engine(url)
    sessions = db.session_factory(engine)
    with sessions() as s:
        sched = Schedule(name="office", timezone=TZ.key, grace_late_min=5, grace_early_min=5,
                         shifts=[{"weekday": d, "start": "08:00", "end": "16:00"}
                                 for d in range(5)])
        s.add(sched)
        s.flush()
        group = Group(name="everyone", schedule_id=sched.id)
        s.add(group)
        s.flush()
        ids = []
        for i in range(people):
            p = Person(name=f"Person {i:04d}")
            s.add(p)
            s.flush()
            ids.append(p.id)
        s.execute(insert(GroupMember), [{"group_id": group.id, "person_id": p} for p in ids])
        rows = []
        for d in range(days):
            day = first + timedelta(days=d)
            if day.weekday() >= 5:
                continue
            for k, pid in enumerate(ids):
                if (k + d) % 17 == 0:
                    continue  # absent
                late = 20 if (k + d) % 11 == 0 else 0
                for hh, mm in ((7, 55 + late // 4), (16, 5)):
                    t = local_instant(day, wall(hh, min(mm, 59)), TZ)
                    rows.append(dict(
                        event_id=str(uuid.uuid4()), stream_id="1-0", node_id="door-1",
                        person_id=pid, recognised=True, score=0.8, threshold=0.6,
                        model="facenet-casia-webface", lamport=1, utc_timestamp=t,
                        local_time=t.astimezone(TZ).isoformat(), timezone=TZ.key,
                        timezone_offset="+01:00", drift_offset_ms=0.0, corrected_utc=t,
                        track_id=1, box=[0, 0, 10, 10], det_confidence=0.99,
                        quality={}, received_at=t))
        for i in range(0, len(rows), 5000):
            s.execute(insert(Sighting), rows[i:i + 5000])
        s.commit()
    if url.startswith("postgresql"):
        # What autovacuum does to a live database soon after: fresh statistics.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("ANALYZE"))
    engine.dispose()
    return ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", help="default: a temporary PostgreSQL")
    ap.add_argument("--people", type=int, default=500)
    ap.add_argument("--days", type=int, default=31)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    first = date(2026, 3, 1)  # March: the DST change is inside the period
    last = first + timedelta(days=args.days - 1)
    pg = None
    url = args.database_url
    if url is None:
        from fixtures.servers import PostgresServer

        pg = PostgresServer(Path(tempfile.mkdtemp(prefix="facegrid-bench-pg-")))
        pg.start()
        url = pg.create_database()
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        db.migrate(url)
        t0 = time.perf_counter()
        ids = fill(url, args.people, first, args.days)
        fill_s = time.perf_counter() - t0
        engine = db.make_engine(url)
        sessions = db.session_factory(engine)
        gc.collect()
        gc.freeze()  # as `facegrid server` does once started (api/app.py)
        json_s, cpu_s, csv_s, xlsx_s = [], [], [], []
        for _ in range(args.repeat):
            with sessions() as s:
                # What GET /statuses does for one page of 500 people (routers/statuses.py).
                t0 = time.perf_counter()
                c0 = time.process_time()
                by = attendance_rules.statuses(s, ids, first, last, TZ)
                groups = attendance_rules.groups_of(s, ids)
                periods = [status_report.PersonPeriod(p, f"Person {p}", ", ".join(groups[p]),
                                                      by[p]) for p in ids]
                status_report.dumps({"items": status_report.report_items(periods, groups, TZ)})
                json_s.append(time.perf_counter() - t0)
                cpu_s.append(time.process_time() - c0)
                t0 = time.perf_counter()
                status_report.to_csv(periods, TZ)
                csv_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                status_report.to_xlsx(periods, TZ, first, last)
                xlsx_s.append(time.perf_counter() - t0)
        engine.dispose()
    finally:
        if pg is not None:
            pg.stop()
    backend = url.split(":", 1)[0]
    print(f"report {args.people} people x {args.days} days on {backend} "
          f"(fill {fill_s:.1f} s, {args.repeat} runs)")
    print(f"  statuses (store + rules + JSON): median {statistics.median(json_s) * 1000:.0f} ms,"
          f" max {max(json_s) * 1000:.0f} ms   (target < 1000 ms); CPU of this process "
          f"median {statistics.median(cpu_s) * 1000:.0f} ms")
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"  load average before/after: {load_before} / {load_after}"
          " (the machine is shared: wall time grows with it)")
    print(f"  CSV build:  median {statistics.median(csv_s) * 1000:.0f} ms")
    print(f"  XLSX build: median {statistics.median(xlsx_s) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
