"""Schedules (expected hours per weekday) and closures (holidays) of the site."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from facegrid_services.store.models import Closure, Schedule

from ..attendance_schemas import ClosureIn, ClosureOut, ScheduleIn, ScheduleOut
from ..deps import DbSession, Operator, Viewer
from ..schemas import Page
from .common import Limit, Offset

router = APIRouter(prefix="/api/v1", tags=["schedules"])
ScheduleId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Schedule id")]
ClosureId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Closure id")]
_CONFLICT = {409: {"description": "name already taken, or the day is already closed"}}
_MISSING = {404: {"description": "no such schedule or closure"}}


def _out(row: Schedule) -> ScheduleOut:
    return ScheduleOut(id=row.id, name=row.name, timezone=row.timezone, shifts=row.shifts,
                       grace_late_min=row.grace_late_min, grace_early_min=row.grace_early_min,
                       created_at=row.created_at, updated_at=row.updated_at)


def get_schedule(session, schedule_id: int) -> Schedule:
    row = session.get(Schedule, schedule_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"schedule {schedule_id} does not exist")
    return row


def _commit(session, what: str) -> None:
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, f"{what} already exists") from None


@router.get("/schedules", response_model=Page[ScheduleOut], dependencies=[Viewer])
def list_schedules(session: DbSession, limit: Limit = 100, offset: Offset = 0):
    total = session.scalar(select(func.count()).select_from(Schedule))
    rows = session.scalars(select(Schedule).order_by(Schedule.id).limit(limit).offset(offset))
    return Page[ScheduleOut](items=[_out(r) for r in rows], total=total or 0, limit=limit,
                             offset=offset)


@router.post("/schedules", status_code=status.HTTP_201_CREATED, response_model=ScheduleOut,
             dependencies=[Operator], responses=_CONFLICT)
def create_schedule(body: ScheduleIn, session: DbSession) -> ScheduleOut:
    row = Schedule(name=body.name, timezone=body.timezone,
                   shifts=[s.model_dump() for s in body.shifts],
                   grace_late_min=body.grace_late_min, grace_early_min=body.grace_early_min)
    session.add(row)
    _commit(session, f"a schedule named {body.name!r}")
    return _out(row)


@router.get("/schedules/{schedule_id}", response_model=ScheduleOut, dependencies=[Viewer],
            responses=_MISSING)
def read_schedule(schedule_id: ScheduleId, session: DbSession) -> ScheduleOut:
    return _out(get_schedule(session, schedule_id))


@router.put("/schedules/{schedule_id}", response_model=ScheduleOut, dependencies=[Operator],
            responses={**_MISSING, **_CONFLICT})
def replace_schedule(schedule_id: ScheduleId, body: ScheduleIn,
                     session: DbSession) -> ScheduleOut:
    """Statuses are computed when read, so every day shows the new rules at once."""
    row = get_schedule(session, schedule_id)
    row.name, row.timezone = body.name, body.timezone
    row.shifts = [s.model_dump() for s in body.shifts]
    row.grace_late_min, row.grace_early_min = body.grace_late_min, body.grace_early_min
    _commit(session, f"a schedule named {body.name!r}")
    return _out(row)


@router.delete("/schedules/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT,
               dependencies=[Operator], responses=_MISSING)
def delete_schedule(schedule_id: ScheduleId, session: DbSession) -> Response:
    session.delete(get_schedule(session, schedule_id))
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _closure_out(row: Closure) -> ClosureOut:
    return ClosureOut(id=row.id, day=row.day, name=row.name, schedule_id=row.schedule_id)


@router.get("/closures", response_model=Page[ClosureOut], dependencies=[Viewer])
def list_closures(session: DbSession, limit: Limit = 100, offset: Offset = 0):
    total = session.scalar(select(func.count()).select_from(Closure))
    rows = session.scalars(select(Closure).order_by(Closure.day, Closure.id)
                           .limit(limit).offset(offset))
    return Page[ClosureOut](items=[_closure_out(r) for r in rows], total=total or 0,
                            limit=limit, offset=offset)


@router.post("/closures", status_code=status.HTTP_201_CREATED, response_model=ClosureOut,
             dependencies=[Operator], responses={**_MISSING, **_CONFLICT})
def create_closure(body: ClosureIn, session: DbSession) -> ClosureOut:
    if body.schedule_id is not None:
        get_schedule(session, body.schedule_id)
    row = Closure(day=body.day, name=body.name, schedule_id=body.schedule_id)
    session.add(row)
    _commit(session, f"a closure on {body.day}")
    return _closure_out(row)


@router.delete("/closures/{closure_id}", status_code=status.HTTP_204_NO_CONTENT,
               dependencies=[Operator], responses=_MISSING)
def delete_closure(closure_id: ClosureId, session: DbSession) -> Response:
    row = session.get(Closure, closure_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"closure {closure_id} does not exist")
    session.delete(row)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
