"""Presences (one person in view at one camera, one decision) and repeat strangers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Path, Query, status
from sqlalchemy import update

from facegrid.types import IsoDateTime
from facegrid_services import dead_letters
from facegrid_services.store import queries
from facegrid_services.store.models import Presence, Stranger

from .. import people_admin
from ..deps import Admin, Ctx, DbSession, Viewer
from ..schemas import Page, PresenceOut, StrangerErasedOut, StrangerOut
from .common import Limit, Offset, OptNodeId, OptPersonId, check_range, utc_instant

router = APIRouter(tags=["presences"])
StrangerId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Stranger pseudo-id")]


def presence_out(p: Presence, name: str | None) -> PresenceOut:
    return PresenceOut(
        id=p.id, node_id=p.node_id, track_id=p.track_id, status=p.status,
        person_id=p.person_id, person_name=name, stranger_id=p.stranger_id, locked=p.locked,
        first_seen=p.first_seen, last_seen=p.last_seen,
        duration_s=max(0.0, (p.last_seen - p.first_seen).total_seconds()), frames=p.frames,
        events=p.events, score=p.score, best_score=p.best_score, threshold=p.threshold,
        history=list(p.history or []))


@router.get("/presences", response_model=Page[PresenceOut], dependencies=[Viewer],
            summary="Presences overlapping a time range, newest first")
def list_presences(
    session: DbSession,
    start: Annotated[IsoDateTime | None, Query(description="From (UTC, inclusive)")] = None,
    end: Annotated[IsoDateTime | None, Query(description="Until (UTC, exclusive)")] = None,
    node_id: OptNodeId = None,
    person_id: OptPersonId = None,
    status_: Annotated[Literal["pending", "recognised", "unknown"] | None,
                       Query(alias="status")] = None,
    stranger_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[PresenceOut]:
    start_utc, end_utc = utc_instant(start, "start"), utc_instant(end, "end")
    check_range(start_utc, end_utc)
    page = queries.list_presences(session, start=start_utc, end=end_utc, node_id=node_id,
                                  person_id=person_id, status=status_,
                                  stranger_id=stranger_id, limit=limit, offset=offset)
    return Page[PresenceOut](items=[presence_out(p, n) for p, n in page.items],
                             total=page.total, limit=limit, offset=offset)


@router.get("/strangers", response_model=Page[StrangerOut], dependencies=[Viewer],
            summary="Repeat strangers: unknown presences linked by their aggregates")
def list_strangers(ctx: Ctx, session: DbSession, limit: Limit = 100,
                   offset: Offset = 0) -> Page[StrangerOut]:
    page = queries.list_strangers(session, limit=limit, offset=offset)
    tz = ZoneInfo(ctx.settings.site_timezone)
    midnight = datetime.now(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    today = queries.stranger_presences_since(session, [s.id for s in page.items], midnight)
    items = [StrangerOut(id=s.id, label=f"unknown #{s.id}", presences=s.presences,
                         first_seen=s.first_seen, last_seen=s.last_seen,
                         nodes=[str(n) for n in (s.nodes or [])], seen_today=today.get(s.id, 0))
             for s in page.items]
    return Page[StrangerOut](items=items, total=page.total, limit=limit, offset=offset)


@router.delete("/strangers/{stranger_id}", response_model=StrangerErasedOut,
               dependencies=[Admin],
               summary="Erase a repeat stranger: its embedding and its presences' aggregates")
def erase_stranger(stranger_id: StrangerId, session: DbSession, ctx: Ctx) -> StrangerErasedOut:
    s = session.get(Stranger, stranger_id)
    if s is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"stranger {stranger_id} does not exist")
    traces = dead_letters.stranger_traces(session, stranger_id)  # before the links go
    res = session.execute(update(Presence).where(Presence.stranger_id == stranger_id)
                          .values(stranger_id=None, aggregate=None))
    session.delete(s)
    session.commit()
    return StrangerErasedOut(stranger_id=stranger_id, presences_unlinked=int(res.rowcount or 0),
                             dead_letters=people_admin.erase_dead_letters(ctx.redis, traces))
