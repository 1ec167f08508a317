"""Period report builders: totals, CSV and XLSX safe against formula injection."""

from __future__ import annotations

import csv
import io
from datetime import date, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from facegrid_services.day_status import Schedule, Shift, Visit, local_instant, period_statuses
from facegrid_services.status_report import PersonPeriod, safe_text, to_csv, to_xlsx, totals

pytestmark = pytest.mark.unit

TZ = ZoneInfo("America/New_York")
SCHED = Schedule(tz=TZ, week={d: (Shift(time(9), time(17)),) for d in range(5)})
FIRST, LAST = date(2026, 3, 2), date(2026, 3, 8)  # Mon..Sun; DST starts Sun 8 March


def visits() -> list[Visit]:
    out = []
    for i, (a, b) in enumerate([((9, 0), (17, 0)), ((9, 30), (17, 0)), ((9, 0), (18, 0))]):
        d = FIRST + timedelta(days=i)
        out.append(Visit(local_instant(d, time(*a), TZ), local_instant(d, time(*b), TZ)))
    return out


def people() -> list[PersonPeriod]:
    days = period_statuses(FIRST, LAST, visits(), SCHED)
    return [PersonPeriod(1, "=HYPERLINK(\"http://evil\")", "+team", days),
            PersonPeriod(2, "Ada Lovelace", "lab", period_statuses(FIRST, LAST, [], SCHED))]


def test_totals_count_statuses_and_hours():
    t = totals(people()[0].days)
    assert (t.days_scheduled, t.present, t.late, t.absent) == (5, 3, 1, 2)
    assert t.late_minutes == 30
    assert t.on_site == timedelta(hours=8 + 7.5 + 9) and t.overtime == timedelta(hours=1)
    assert totals(people()[1].days).absent == 5


def test_csv_rows_are_local_and_safe():
    rows = list(csv.reader(io.StringIO(to_csv(people(), TZ))))
    assert rows[0][:5] == ["day", "person_id", "person_name", "group", "status"]
    assert len(rows) == 1 + 2 * 7
    first = rows[1]
    assert first[2].startswith("'=") and first[3] == "'+team"
    assert first[4] == "present" and first[5] == "2026-03-02T09:00:00-05:00"
    assert rows[2][4] == "late" and rows[2][7] == "30"
    assert rows[7][4] == "off" and rows[7][14] == "America/New_York"


def test_xlsx_has_totals_and_days_and_no_formula():
    from openpyxl import load_workbook

    data = to_xlsx(people(), TZ, FIRST, LAST)
    wb = load_workbook(io.BytesIO(data))
    assert wb.sheetnames == ["Totals", "Days"]
    tot = list(wb["Totals"].iter_rows(values_only=True))
    assert tot[1][1] == "'=HYPERLINK(\"http://evil\")" and tot[1][7] == 2
    for ws in wb:
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (ws.title, cell.coordinate, cell.value)
    assert safe_text("@SUM(A1)") == "'@SUM(A1)" and safe_text("Bob") == "Bob"
