"""Attendance: by day, range or person; times shown in a chosen IANA zone; CSV export."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response, status

from facegrid.types import IsoDate, zone
from facegrid_services.store import queries

from .. import report
from ..deps import Ctx, DbSession, Viewer
from ..schemas import AttendanceReport
from .common import Limit, Offset, OptPersonId, check_range

router = APIRouter(prefix="/attendance", tags=["attendance"], dependencies=[Viewer])

_MIN_DAY, _MAX_DAY = date(1970, 1, 1), date(2200, 1, 1)


def _day(value: date | None, name: str) -> date | None:
    if value is not None and not _MIN_DAY <= value < _MAX_DAY:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"{name} must lie between 1970 and 2200")
    return value


@router.get("", response_model=AttendanceReport,
            responses={200: {"content": {"text/csv": {}},
                             "description": "JSON, or CSV with format=csv"}})
def attendance(
    ctx: Ctx,
    session: DbSession,
    day: Annotated[IsoDate | None, Query(description="One site-local day (YYYY-MM-DD)")] = None,
    start: Annotated[IsoDate | None, Query(description="First day (inclusive)")] = None,
    end: Annotated[IsoDate | None, Query(description="Last day (inclusive)")] = None,
    person_id: OptPersonId = None,
    tz: Annotated[str | None, Query(max_length=64,
                                    description="IANA zone for the local times "
                                                "(default: the site's)")] = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
    limit: Limit = 100,
    offset: Offset = 0,
):
    tz_name = ctx.settings.site_timezone if tz is None else tz
    try:
        tzinfo = zone(tz_name)
    except ValueError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
    if day is not None and (start is not None or end is not None):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            "give either day or start/end, not both")
    if day is not None:
        start = end = day
    start, end = _day(start, "start"), _day(end, "end")
    check_range(start, end)
    page = queries.list_attendance(session, start=start, end=end, person_id=person_id,
                                   limit=limit, offset=offset)
    rows = [report.attendance_out(a, name, tzinfo) for a, name in page.items]
    if format == "csv":
        label = day.isoformat() if day else f"{start or 'all'}_{end or 'all'}"
        return Response(report.to_csv(rows, tz_name), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition":
                                 f'attachment; filename="attendance_{label}.csv"'})
    return AttendanceReport(items=rows, total=page.total, limit=limit, offset=offset,
                            tz=tz_name, site_timezone=ctx.settings.site_timezone)
