"""Day statuses (present / late / left early / absent / off / holiday), the period
report (JSON, CSV, XLSX), corrections with their audit trail, and the evidence
behind a day."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from sqlalchemy import func, select

from facegrid.types import IsoDate, zone
from facegrid_services import attendance_rules as rules
from facegrid_services import status_report
from facegrid_services.day_status import CorrectionKind, DayStatus
from facegrid_services.store.models import Correction, GroupMember, Person

from ..attendance_schemas import (
    CorrectionIn,
    CorrectionOut,
    DayStatusOut,
    EvidenceOut,
    EvidencePresence,
    EvidenceSighting,
    StatusReport,
)
from ..deps import Ctx, CurrentPrincipal, DbSession, Operator, Viewer
from ..schemas import Page
from .common import Limit, Offset, OptPersonId, PersonId

router = APIRouter(tags=["statuses"])
MAX_DAYS = 366
_MIN_DAY, _MAX_DAY = date(1970, 1, 1), date(2200, 1, 1)
Day = Annotated[IsoDate, Path(description="Site-local day (YYYY-MM-DD)")]
Tz = Annotated[str | None, Query(max_length=64, description="IANA zone for local times "
                                                            "(default: the site's)")]
_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _zone(ctx, tz: str | None) -> ZoneInfo:
    try:
        return zone(ctx.settings.site_timezone if tz is None else tz)
    except ValueError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None


def _period(start: date, end: date) -> None:
    for name, d in (("start", start), ("end", end)):
        if not _MIN_DAY <= d < _MAX_DAY:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                f"{name} must lie between 1970 and 2200")
    if end < start:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "end is before start")
    if (end - start).days + 1 > MAX_DAYS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"a report covers at most {MAX_DAYS} days")


def _gap(ctx) -> timedelta:
    return timedelta(seconds=ctx.settings.attendance_visit_gap_s)


def _local(t, tz: ZoneInfo) -> str | None:
    return t.astimezone(tz).isoformat(timespec="seconds") if t else None


def day_out(s: DayStatus, tz: ZoneInfo) -> DayStatusOut:
    return DayStatusOut(**{**status_report.day_json(s, tz), "status": s.status.value,
                           "first_in_local": _local(s.first_in, tz),
                           "last_out_local": _local(s.last_out, tz)})


def _people(session, person_id, group_id, limit, offset):
    stmt = select(Person.id, Person.name)
    if person_id is not None:
        stmt = stmt.where(Person.id == person_id)
    if group_id is not None:
        stmt = stmt.join(GroupMember, GroupMember.person_id == Person.id).where(
            GroupMember.group_id == group_id)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.execute(stmt.order_by(Person.name, Person.id).limit(limit)
                           .offset(offset)).all()
    return rows, total


@router.get("/statuses", response_model=StatusReport, dependencies=[Viewer],
            responses={200: {"content": {"text/csv": {}, _XLSX: {}},
                             "description": "JSON, or a download with format=csv|xlsx"}})
def statuses(
    ctx: Ctx, session: DbSession,
    start: Annotated[IsoDate, Query(description="First site-local day (inclusive)")],
    end: Annotated[IsoDate, Query(description="Last site-local day (inclusive)")],
    person_id: OptPersonId = None,
    group_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    tz: Tz = None,
    format: Annotated[Literal["json", "csv", "xlsx"], Query()] = "json",
    limit: Limit = 100, offset: Offset = 0,
):
    """Each person's day statuses over a period (days are the site's local days;
    times are shown in ``tz``).  Corrected days say so."""
    _period(start, end)
    viewer_tz = _zone(ctx, tz)
    site_tz = _zone(ctx, None)
    people, total = _people(session, person_id, group_id, limit, offset)
    ids = [p.id for p in people]
    by_person = rules.statuses(session, ids, start, end, site_tz, _gap(ctx))
    groups = rules.groups_of(session, ids)
    periods = [status_report.PersonPeriod(p.id, p.name, ", ".join(groups[p.id]),
                                          by_person[p.id]) for p in people]
    if format in ("csv", "xlsx"):
        label = f"{start.isoformat()}_{end.isoformat()}"
        if format == "csv":
            return Response(status_report.to_csv(periods, viewer_tz),
                            media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition":
                                     f'attachment; filename="statuses_{label}.csv"'})
        return Response(status_report.to_xlsx(periods, viewer_tz, start, end), media_type=_XLSX,
                        headers={"Content-Disposition":
                                 f'attachment; filename="statuses_{label}.xlsx"'})
    items = status_report.report_items(periods, groups, viewer_tz)
    # Built as plain JSON (the shape is StatusReport's, documented by response_model):
    # validating 15,000 day rows again would double the report's cost.
    return Response(status_report.dumps({"start": start, "end": end, "tz": viewer_tz.key,
                                         "items": items, "total": total, "limit": limit,
                                         "offset": offset}),
                    media_type="application/json")


def correction_out(c: Correction) -> CorrectionOut:
    return CorrectionOut(id=c.id, person_id=c.person_id, day=c.day, kind=c.kind, at=c.at,
                         until=c.until, reason=c.reason, made_at=c.made_at, made_by=c.made_by,
                         before=c.before, after=c.after)


@router.get("/corrections", response_model=Page[CorrectionOut], dependencies=[Viewer])
def list_corrections(
    session: DbSession, person_id: OptPersonId = None,
    start: Annotated[IsoDate | None, Query()] = None,
    end: Annotated[IsoDate | None, Query()] = None,
    limit: Limit = 100, offset: Offset = 0,
):
    """The audit trail of corrections, newest first (corrections are never edited)."""
    stmt = select(Correction)
    if person_id is not None:
        stmt = stmt.where(Correction.person_id == person_id)
    if start is not None:
        stmt = stmt.where(Correction.day >= start)
    if end is not None:
        stmt = stmt.where(Correction.day <= end)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(Correction.id.desc()).limit(limit).offset(offset))
    return Page[CorrectionOut](items=[correction_out(c) for c in rows], total=total,
                               limit=limit, offset=offset)


@router.post("/corrections", status_code=status.HTTP_201_CREATED, response_model=CorrectionOut,
             dependencies=[Operator],
             responses={404: {"description": "no such person"},
                        422: {"description": "the correction does not fit its day"}})
def add_correction(body: CorrectionIn, ctx: Ctx, session: DbSession,
                   principal: CurrentPrincipal) -> CorrectionOut:
    """Add, move or void a check-in/out of one person's day, with a reason.  The
    camera evidence stays as it is; the record keeps the day before and after."""
    person = session.get(Person, body.person_id)
    if person is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"person {body.person_id} does not exist")
    _period(body.day, body.day)
    site_tz = _zone(ctx, None)
    try:
        for t in (body.at, body.until):
            if t is not None:
                rules.check_visit_in_day(body.day, t, site_tz)
        row = rules.add_correction(
            session, person, day=body.day, kind=CorrectionKind(body.kind), at=body.at,
            until=body.until, reason=body.reason, made_by=principal.name,
            made_by_token_id=principal.token_id, site_tz=site_tz,
            visit_gap=_gap(ctx))
    except rules.RuleError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, e.detail) from None
    return correction_out(row)


@router.get("/people/{person_id}/days/{day}", response_model=EvidenceOut,
            dependencies=[Viewer], responses={404: {"description": "no such person"}})
def day_evidence(person_id: PersonId, day: Day, ctx: Ctx, session: DbSession,
                 tz: Tz = None) -> EvidenceOut:
    """A person's day status and the evidence behind it: every sighting with its
    camera, corrected UTC, the viewer's local time, the node's own local time,
    the drift corrected, the Lamport value and the score; and the corrections."""
    if session.get(Person, person_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"person {person_id} does not exist")
    _period(day, day)
    viewer_tz = _zone(ctx, tz)
    st, seen, rows, fixes = rules.evidence(session, person_id, day, _zone(ctx, None), _gap(ctx))
    return EvidenceOut(
        person_id=person_id, status=day_out(st, viewer_tz),
        presences=[EvidencePresence(
            presence_id=p.id, node_id=p.node_id, first_seen=p.first_seen,
            last_seen=p.last_seen, first_seen_local=_local(p.first_seen, viewer_tz),
            last_seen_local=_local(p.last_seen, viewer_tz), frames=p.frames,
            score=p.score) for p in seen],
        sightings=[EvidenceSighting(
            sighting_id=s.id, node_id=s.node_id, corrected_utc=s.corrected_utc,
            viewer_local=s.corrected_utc.astimezone(viewer_tz).isoformat(timespec="seconds"),
            node_local_time=s.local_time, node_timezone=s.timezone,
            drift_offset_ms=s.drift_offset_ms, lamport=s.lamport, score=s.score,
            threshold=s.threshold, received_at=s.received_at) for s in rows],
        corrections=[correction_out(c) for c in fixes])



