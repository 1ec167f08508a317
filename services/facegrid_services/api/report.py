"""The attendance report: rows in the viewer's time zone, and its CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

from facegrid_services.store.models import Attendance

from .schemas import AttendanceOut

CSV_COLUMNS = ("day", "person_id", "person_name", "check_in_utc", "check_out_utc",
               "check_in_local", "check_out_local", "timezone", "check_in_node",
               "check_out_node", "sightings")


def _iso_utc(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def attendance_out(row: Attendance, name: str, tz: ZoneInfo) -> AttendanceOut:
    return AttendanceOut(
        person_id=row.person_id, person_name=name, day=row.day,
        check_in=row.check_in, check_out=row.check_out,
        check_in_local=row.check_in.astimezone(tz).isoformat(timespec="seconds"),
        check_out_local=row.check_out.astimezone(tz).isoformat(timespec="seconds"),
        check_in_node=row.check_in_node, check_out_node=row.check_out_node,
        sightings=row.sightings)


def _cell(value: str) -> str:
    # A cell starting with = + - @ is a formula in spreadsheets (CSV injection).
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def to_csv(rows: Iterable[AttendanceOut], tz_name: str) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow([r.day.isoformat(), r.person_id, _cell(r.person_name),
                    _iso_utc(r.check_in), _iso_utc(r.check_out), r.check_in_local,
                    r.check_out_local, tz_name, r.check_in_node, r.check_out_node,
                    r.sightings])
    return buf.getvalue()
