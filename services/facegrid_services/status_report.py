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
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from xml.sax.saxutils import escape as xml_escape
from zoneinfo import ZoneInfo

import orjson

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


def day_json(d: DayStatus, tz: ZoneInfo) -> dict:
    """A day status as the API's DayStatusOut, for :func:`dumps` (which writes dates,
    the status and aware datetimes itself: UTC as ``…Z``, local times in ``tz`` to
    the second with their offset).

    Built directly, not through pydantic: a 500 × 31 report has 15,500 of them.
    Zero durations (most lateness and early leave) skip the arithmetic.
    """
    fi, lo = d.first_in, d.last_out
    late, early, over = d.late_by, d.left_early_by, d.overtime
    return {
        "day": d.day, "status": d.status, "first_in": fi, "last_out": lo,
        "first_in_local": fi.astimezone(tz).replace(microsecond=0) if fi else None,
        "last_out_local": lo.astimezone(tz).replace(microsecond=0) if lo else None,
        "late_minutes": round(late.total_seconds() / 60) if late else 0,
        "left_early_minutes": round(early.total_seconds() / 60) if early else 0,
        "on_site_hours": round(d.on_site.total_seconds() / 3600, 2) if d.on_site else 0.0,
        "scheduled_hours": round(d.scheduled.total_seconds() / 3600, 2) if d.scheduled else 0.0,
        "overtime_hours": round(over.total_seconds() / 3600, 2) if over else 0.0,
        "visits": d.visits, "corrected": d.corrected, "corrections": list(d.corrections)}


def dumps(value) -> bytes:
    """JSON of report rows (orjson: the dates and times are written in Rust, not
    formatted one by one in Python — most of a large report's cost otherwise)."""
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


def report_items(people: Iterable[PersonPeriod], groups: dict[int, list[str]],
                 tz: ZoneInfo) -> list[dict]:
    """The ``items`` of the JSON period report: each person's days and totals."""
    items = []
    for p in people:
        t = totals(p.days)
        items.append({
            "person_id": p.person_id, "person_name": p.name, "groups": groups[p.person_id],
            "days": [day_json(d, tz) for d in p.days], "present": t.present,
            "late": t.late, "absent": t.absent, "late_minutes": t.late_minutes,
            "on_site_hours": _hours(t.on_site)})
    return items


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


_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_CT = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
       '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
       '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
       'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
       '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
       'officedocument.spreadsheetml.sheet.main+xml"/>{sheets}'
       '<Override PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-'
       'package.core-properties+xml"/></Types>')
_CT_SHEET = ('<Override PartName="/xl/worksheets/sheet{n}.xml" ContentType="application/'
             'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>')
_RELS = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
         '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
         '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
         'relationships/officeDocument" Target="xl/workbook.xml"/>'
         '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/'
         'relationships/metadata/core-properties" Target="docProps/core.xml"/></Relationships>')
_CORE = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
         '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/'
         'core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>{title}'
         '</dc:title><dc:creator>facegrid</dc:creator></cp:coreProperties>')


def _esc(text: str) -> str:
    return _XML_BAD.sub("", xml_escape(text))


def _col(i: int) -> str:
    name = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        name = chr(65 + r) + name
    return name


def _sheet_xml(columns: Sequence[str], rows: Iterable[Sequence]) -> str:
    letters = [_col(i) for i in range(len(columns))]
    out = ['<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns='
           '"http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetViews>'
           '<sheetView workbookViewId="0"><pane ySplit="1" topLeftCell="A2" activePane='
           '"bottomLeft" state="frozen"/></sheetView></sheetViews><sheetData>']
    for n, row in enumerate([list(columns), *rows], start=1):
        out.append(f'<row r="{n}">')
        for letter, value in zip(letters, row, strict=True):
            ref = f"{letter}{n}"
            if isinstance(value, bool) or not isinstance(value, int | float):
                # Inline strings: a cell is text whatever it starts with, never a formula.
                out.append(f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">'
                           f'{_esc(str(value))}</t></is></c>')
            else:
                out.append(f'<c r="{ref}"><v>{value!r}</v></c>')
        out.append("</row>")
    out.append("</sheetData></worksheet>")
    return "".join(out)


def to_xlsx(people: Sequence[PersonPeriod], tz: ZoneInfo, first: date, last: date) -> bytes:
    """A workbook with a Totals sheet and a Days sheet (Office Open XML, written
    directly: linear, no spreadsheet library at run time); every text cell is text."""
    sheets = [("Totals", _sheet_xml(TOTAL_COLUMNS, total_rows(people))),
              ("Days", _sheet_xml(DAY_COLUMNS, day_rows(people, tz)))]
    workbook = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<workbook xmlns='
                '"http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r='
                '"http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
                '<sheets>' + "".join(
                    f'<sheet name="{name}" sheetId="{i}" r:id="rId{i}"/>'
                    for i, (name, _) in enumerate(sheets, start=1)) + "</sheets></workbook>")
    wb_rels = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships '
               'xmlns="http://schemas.openxmlformats.org/package/2006/relationships">' + "".join(
                   f'<Relationship Id="rId{i}" Type="http://schemas.openxmlformats.org/'
                   f'officeDocument/2006/relationships/worksheet" Target="worksheets/'
                   f'sheet{i}.xml"/>' for i in range(1, len(sheets) + 1)) + "</Relationships>")
    title = f"facegrid attendance {first.isoformat()} to {last.isoformat()}"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", _CT.format(sheets="".join(
            _CT_SHEET.format(n=i) for i in range(1, len(sheets) + 1))))
        z.writestr("_rels/.rels", _RELS)
        z.writestr("docProps/core.xml", _CORE.format(title=_esc(title)))
        z.writestr("xl/workbook.xml", workbook)
        z.writestr("xl/_rels/workbook.xml.rels", wb_rels)
        for i, (_, xml) in enumerate(sheets, start=1):
            z.writestr(f"xl/worksheets/sheet{i}.xml", xml)
    return out.getvalue()
