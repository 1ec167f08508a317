"""The period report: day statuses × people, with totals, as rows, CSV and XLSX.

Pure builders: the API fetches people, visits, schedules and corrections, runs
:func:`facegrid_services.day_status.period_statuses` and hands the result here.
Times are shown in the viewer's time zone; every text cell is safe against
formula injection in CSV and in XLSX (a name such as ``=HYPERLINK(...)`` stays
text).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from .day_status import DayStatus, Status

DAY_COLUMNS = ("day", "person_id", "person_name", "group", "status", "first_in_local",
               "last_out_local", "late_minutes", "left_early_minutes", "on_site_hours",
               "scheduled_hours", "overtime_hours", "visits", "corrected", "timezone")
TOTAL_COLUMNS = ("person_id", "person_name", "group", "days_scheduled", "present", "late",
                 "left_early", "absent", "late_minutes", "on_site_hours", "scheduled_hours",
                 "overtime_hours", "corrected_days")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_text(value: str) -> str:
    """A spreadsheet never reads this cell as a formula (CSV/XLSX injection)."""
    return "'" + value if value[:1] in _FORMULA_START else value


def _hours(t: timedelta) -> float:
    return round(t.total_seconds() / 3600, 2)


def _minutes(t: timedelta) -> int:
    return round(t.total_seconds() / 60)


@dataclass(frozen=True, slots=True)
class PersonPeriod:
    person_id: int
    name: str
    group: str
    days: Sequence[DayStatus]


@dataclass(frozen=True, slots=True)
class Totals:
    days_scheduled: int
    present: int
    late: int
    left_early: int
    absent: int
    late_minutes: int
    on_site: timedelta
    scheduled: timedelta
    overtime: timedelta
    corrected_days: int


def totals(days: Iterable[DayStatus]) -> Totals:
    days = list(days)
    attended = {Status.PRESENT, Status.LATE, Status.LEFT_EARLY}
    return Totals(
        days_scheduled=sum(1 for d in days if d.scheduled > timedelta(0)),
        present=sum(1 for d in days if d.status in attended),
        late=sum(1 for d in days if d.late_by > timedelta(0)),
        left_early=sum(1 for d in days if d.left_early_by > timedelta(0)),
        absent=sum(1 for d in days if d.status is Status.ABSENT),
        late_minutes=sum(_minutes(d.late_by) for d in days),
        on_site=sum((d.on_site for d in days), timedelta(0)),
        scheduled=sum((d.scheduled for d in days), timedelta(0)),
        overtime=sum((d.overtime for d in days), timedelta(0)),
        corrected_days=sum(1 for d in days if d.corrected))


def _local(t: datetime | None, tz: ZoneInfo) -> str:
    return t.astimezone(tz).isoformat(timespec="seconds") if t else ""


def day_rows(people: Iterable[PersonPeriod], tz: ZoneInfo) -> list[list]:
    rows = []
    for p in people:
        for d in p.days:
            rows.append([d.day.isoformat(), p.person_id, safe_text(p.name), safe_text(p.group),
                         d.status.value, _local(d.first_in, tz), _local(d.last_out, tz),
                         _minutes(d.late_by), _minutes(d.left_early_by), _hours(d.on_site),
                         _hours(d.scheduled), _hours(d.overtime), d.visits,
                         "yes" if d.corrected else "", tz.key])
    return rows


def total_rows(people: Iterable[PersonPeriod]) -> list[list]:
    rows = []
    for p in people:
        t = totals(p.days)
        rows.append([p.person_id, safe_text(p.name), safe_text(p.group), t.days_scheduled,
                     t.present, t.late, t.left_early, t.absent, t.late_minutes,
                     _hours(t.on_site), _hours(t.scheduled), _hours(t.overtime),
                     t.corrected_days])
    return rows


def to_csv(people: Sequence[PersonPeriod], tz: ZoneInfo) -> str:
    """One row per person per day (the totals are in the XLSX's second sheet)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(DAY_COLUMNS)
    w.writerows(day_rows(people, tz))
    return buf.getvalue()


def to_xlsx(people: Sequence[PersonPeriod], tz: ZoneInfo, first: date, last: date) -> bytes:
    """A workbook with a Totals sheet and a Days sheet; every text cell is text."""
    from openpyxl import Workbook  # server extra; imported where it is used
    from openpyxl.cell import WriteOnlyCell

    wb = Workbook(write_only=True)  # streams rows: linear in the report's size
    for title, columns, rows in (("Totals", TOTAL_COLUMNS, total_rows(people)),
                                 ("Days", DAY_COLUMNS, day_rows(people, tz))):
        ws = wb.create_sheet(title)
        ws.freeze_panes = "A2"
        ws.append(list(columns))
        for row in rows:
            cells = []
            for value in row:
                cell = WriteOnlyCell(ws, value=value)
                if isinstance(value, str):
                    cell.data_type = "s"  # never a formula, whatever it starts with
                cells.append(cell)
            ws.append(cells)
    wb.properties.title = f"facegrid attendance {first.isoformat()} to {last.isoformat()}"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
