"""Groups of people (class, team, shift) and their members; a group's schedule
applies to its members."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from facegrid_services.store.models import Group, GroupMember, Person

from ..attendance_schemas import GroupIn, GroupOut
from ..deps import DbSession, Operator, Viewer
from ..schemas import Page
from .common import Limit, Offset, PersonId
from .schedules import get_schedule

router = APIRouter(prefix="/groups", tags=["groups"])
GroupId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Group id")]
_MISSING = {404: {"description": "no such group, person or schedule"}}
_CONFLICT = {409: {"description": "name already taken"}}


def _get(session, group_id: int) -> Group:
    row = session.get(Group, group_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"group {group_id} does not exist")
    return row


def _out(session, row: Group) -> GroupOut:
    members = session.scalar(select(func.count()).select_from(GroupMember)
                             .where(GroupMember.group_id == row.id))
    return GroupOut(id=row.id, name=row.name, description=row.description,
                    schedule_id=row.schedule_id, members=members or 0,
                    created_at=row.created_at)


def _save(session, row: Group, body: GroupIn) -> None:
    if body.schedule_id is not None:
        get_schedule(session, body.schedule_id)
    row.name, row.description, row.schedule_id = body.name, body.description, body.schedule_id
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"a group named {body.name!r} already exists") from None


@router.get("", response_model=Page[GroupOut], dependencies=[Viewer])
def list_groups(session: DbSession, limit: Limit = 100, offset: Offset = 0):
    total = session.scalar(select(func.count()).select_from(Group))
    rows = session.scalars(select(Group).order_by(Group.id).limit(limit).offset(offset))
    return Page[GroupOut](items=[_out(session, r) for r in rows], total=total or 0,
                          limit=limit, offset=offset)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=GroupOut,
             dependencies=[Operator], responses={**_MISSING, **_CONFLICT})
def create_group(body: GroupIn, session: DbSession) -> GroupOut:
    row = Group()
    _save(session, row, body)
    return _out(session, row)


@router.get("/{group_id}", response_model=GroupOut, dependencies=[Viewer], responses=_MISSING)
def read_group(group_id: GroupId, session: DbSession) -> GroupOut:
    return _out(session, _get(session, group_id))


@router.put("/{group_id}", response_model=GroupOut, dependencies=[Operator],
            responses={**_MISSING, **_CONFLICT})
def replace_group(group_id: GroupId, body: GroupIn, session: DbSession) -> GroupOut:
    row = _get(session, group_id)
    _save(session, row, body)
    return _out(session, row)


@router.delete("/{group_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[Operator],
               responses=_MISSING)
def delete_group(group_id: GroupId, session: DbSession) -> Response:
    session.delete(_get(session, group_id))
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{group_id}/members", response_model=Page[int], dependencies=[Viewer],
            responses=_MISSING)
def list_members(group_id: GroupId, session: DbSession, limit: Limit = 100,
                 offset: Offset = 0):
    """The person ids of the group's members."""
    _get(session, group_id)
    stmt = select(GroupMember.person_id).where(GroupMember.group_id == group_id)
    total = session.scalar(select(func.count()).select_from(stmt.subquery()))
    ids = session.scalars(stmt.order_by(GroupMember.person_id).limit(limit).offset(offset))
    return Page[int](items=list(ids), total=total or 0, limit=limit, offset=offset)


@router.put("/{group_id}/members/{person_id}", status_code=status.HTTP_204_NO_CONTENT,
            dependencies=[Operator], responses=_MISSING)
def add_member(group_id: GroupId, person_id: PersonId, session: DbSession) -> Response:
    """Idempotent: adding a member twice is not an error."""
    _get(session, group_id)
    if session.get(Person, person_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"person {person_id} does not exist")
    if session.get(GroupMember, (group_id, person_id)) is None:
        session.add(GroupMember(group_id=group_id, person_id=person_id))
        session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/{group_id}/members/{person_id}", status_code=status.HTTP_204_NO_CONTENT,
               dependencies=[Operator], responses=_MISSING)
def remove_member(group_id: GroupId, person_id: PersonId, session: DbSession) -> Response:
    row = session.get(GroupMember, (group_id, person_id))
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"person {person_id} is not in group {group_id}")
    session.delete(row)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
