"""Read-side queries of the store used by the API server (the worker writes via repo.py).

Every function takes an open :class:`~sqlalchemy.orm.Session` and returns ORM
rows or plain tuples; pagination is ``limit``/``offset`` with a total count.
All instants are aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from .models import Alert, Attendance, Embedding, Node, Person, Presence, Sighting, Stranger

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class QueryPage(Generic[T]):
    """One page of rows from the store (the API turns it into its ``schemas.Page``)."""

    items: Sequence[T]
    total: int
    limit: int
    offset: int


def _page(session: Session, stmt: Select, limit: int, offset: int, *, scalars: bool = True):
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    result = session.execute(stmt.limit(limit).offset(offset))
    items = result.scalars().all() if scalars else result.all()
    return QueryPage(items=items, total=int(total or 0), limit=limit, offset=offset)


# --- nodes ----------------------------------------------------------------------

def list_nodes(session: Session, *, limit: int = 100, offset: int = 0) -> QueryPage[Node]:
    return _page(session, select(Node).order_by(Node.node_id), limit, offset)


def get_node(session: Session, node_id: str) -> Node | None:
    return session.get(Node, node_id)


# --- people -----------------------------------------------------------------------

def embedding_counts(session: Session, person_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """person id -> {model: number of embeddings}."""
    if not person_ids:
        return {}
    rows = session.execute(
        select(Embedding.person_id, Embedding.model, func.count())
        .where(Embedding.person_id.in_(person_ids))
        .group_by(Embedding.person_id, Embedding.model)).all()
    out: dict[int, dict[str, int]] = {pid: {} for pid in person_ids}
    for pid, model, n in rows:
        out[pid][model] = int(n)
    return out


def list_people(session: Session, *, name: str | None = None, search: str | None = None,
                limit: int = 100, offset: int = 0) -> QueryPage[Person]:
    stmt = select(Person).order_by(Person.name, Person.id)
    if name is not None:
        stmt = stmt.where(Person.name == name)
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(Person.name.ilike(f"%{escaped}%", escape="\\"))
    return _page(session, stmt, limit, offset)


def list_embeddings(session: Session, person_id: int, model: str | None = None, *,
                    limit: int = 100, offset: int = 0) -> QueryPage[Embedding]:
    stmt = select(Embedding).where(Embedding.person_id == person_id).order_by(Embedding.id)
    if model is not None:
        stmt = stmt.where(Embedding.model == model)
    return _page(session, stmt, limit, offset)


def find_embedding(session: Session, person_id: int, model: str,
                   image_hash: str) -> Embedding | None:
    return session.scalar(select(Embedding).where(
        Embedding.person_id == person_id, Embedding.model == model,
        Embedding.image_hash == image_hash))


# --- sightings ----------------------------------------------------------------------

def list_sightings(session: Session, *, start: datetime | None = None,
                   end: datetime | None = None, node_id: str | None = None,
                   person_id: int | None = None, recognised: bool | None = None,
                   after_id: int | None = None, limit: int = 100,
                   offset: int = 0) -> QueryPage[tuple[Sighting, str | None]]:
    """Sightings newest first (by corrected_utc), each with the person's name or None."""
    stmt = (select(Sighting, Person.name).outerjoin(Person, Sighting.person_id == Person.id)
            .order_by(Sighting.corrected_utc.desc(), Sighting.id.desc()))
    if start is not None:
        stmt = stmt.where(Sighting.corrected_utc >= start)
    if end is not None:
        stmt = stmt.where(Sighting.corrected_utc < end)
    if node_id is not None:
        stmt = stmt.where(Sighting.node_id == node_id)
    if person_id is not None:
        stmt = stmt.where(Sighting.person_id == person_id)
    if recognised is not None:
        stmt = stmt.where(Sighting.recognised == recognised)
    if after_id is not None:
        stmt = stmt.where(Sighting.id > after_id)
    return _page(session, stmt, limit, offset, scalars=False)


# --- presences ----------------------------------------------------------------------

def list_presences(session: Session, *, start: datetime | None = None,
                   end: datetime | None = None, node_id: str | None = None,
                   person_id: int | None = None, status: str | None = None,
                   stranger_id: int | None = None, limit: int = 100,
                   offset: int = 0) -> QueryPage[tuple[Presence, str | None]]:
    """Presences overlapping [start, end), newest first (by last_seen), with the name."""
    stmt = (select(Presence, Person.name).outerjoin(Person, Presence.person_id == Person.id)
            .order_by(Presence.last_seen.desc(), Presence.id.desc()))
    if start is not None:
        stmt = stmt.where(Presence.last_seen >= start)
    if end is not None:
        stmt = stmt.where(Presence.first_seen < end)
    if node_id is not None:
        stmt = stmt.where(Presence.node_id == node_id)
    if person_id is not None:
        stmt = stmt.where(Presence.person_id == person_id)
    if status is not None:
        stmt = stmt.where(Presence.status == status)
    if stranger_id is not None:
        stmt = stmt.where(Presence.stranger_id == stranger_id)
    return _page(session, stmt, limit, offset, scalars=False)


def list_strangers(session: Session, *, limit: int = 100, offset: int = 0) -> QueryPage[Stranger]:
    stmt = select(Stranger).order_by(Stranger.last_seen.desc(), Stranger.id.desc())
    return _page(session, stmt, limit, offset)


def stranger_presences_since(session: Session, ids: Sequence[int],
                             since: datetime) -> dict[int, int]:
    if not ids:
        return {}
    rows = session.execute(
        select(Presence.stranger_id, func.count()).where(
            Presence.stranger_id.in_(ids), Presence.last_seen >= since)
        .group_by(Presence.stranger_id)).all()
    return {int(i): int(n) for i, n in rows}


# --- attendance ---------------------------------------------------------------------

def list_attendance(session: Session, *, start: date | None = None, end: date | None = None,
                    person_id: int | None = None, limit: int = 1000,
                    offset: int = 0) -> QueryPage[tuple[Attendance, str]]:
    """Attendance rows (site-local days, ``start`` ≤ day ≤ ``end``) with the person's name."""
    stmt = (select(Attendance, Person.name).join(Person, Attendance.person_id == Person.id)
            .order_by(Attendance.day, Person.name, Attendance.id))
    if start is not None:
        stmt = stmt.where(Attendance.day >= start)
    if end is not None:
        stmt = stmt.where(Attendance.day <= end)
    if person_id is not None:
        stmt = stmt.where(Attendance.person_id == person_id)
    return _page(session, stmt, limit, offset, scalars=False)


# --- alerts -------------------------------------------------------------------------

def list_alerts(session: Session, *, acknowledged: bool | None = None, kind: str | None = None,
                limit: int = 100, offset: int = 0) -> QueryPage[Alert]:
    stmt = select(Alert).order_by(Alert.created_at.desc(), Alert.id.desc())
    if acknowledged is True:
        stmt = stmt.where(Alert.acknowledged_at.is_not(None))
    elif acknowledged is False:
        stmt = stmt.where(Alert.acknowledged_at.is_(None))
    if kind is not None:
        stmt = stmt.where(Alert.kind == kind)
    return _page(session, stmt, limit, offset)
