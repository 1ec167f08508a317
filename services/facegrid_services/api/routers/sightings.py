"""Sightings: filter by time range, node, person; paginated; newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from facegrid.types import IsoDateTime
from facegrid_services.store import queries

from ..deps import DbSession, Viewer
from ..schemas import Page, SightingOut
from .common import Limit, Offset, OptNodeId, OptPersonId, check_range, utc_instant

router = APIRouter(prefix="/sightings", tags=["sightings"], dependencies=[Viewer])


@router.get("", response_model=Page[SightingOut])
def list_sightings(
    session: DbSession,
    start: Annotated[IsoDateTime | None, Query(description="From (UTC, inclusive)")] = None,
    end: Annotated[IsoDateTime | None, Query(description="Until (UTC, exclusive)")] = None,
    node_id: OptNodeId = None,
    person_id: OptPersonId = None,
    recognised: bool | None = None,
    after_id: Annotated[int | None, Query(ge=0, le=2**62,
                                          description="Only ids above this (live view)")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[SightingOut]:
    start_utc, end_utc = utc_instant(start, "start"), utc_instant(end, "end")
    check_range(start_utc, end_utc)
    page = queries.list_sightings(session, start=start_utc, end=end_utc, node_id=node_id,
                                  person_id=person_id, recognised=recognised,
                                  after_id=after_id, limit=limit, offset=offset)
    items = [SightingOut(
        id=s.id, event_id=s.event_id, node_id=s.node_id, person_id=s.person_id,
        person_name=name, recognised=s.recognised, score=s.score, threshold=s.threshold,
        model=s.model, lamport=s.lamport, corrected_utc=s.corrected_utc,
        utc_timestamp=s.utc_timestamp, local_time=s.local_time, timezone=s.timezone,
        timezone_offset=s.timezone_offset, drift_offset_ms=s.drift_offset_ms,
        track_id=s.track_id, det_confidence=s.det_confidence, received_at=s.received_at)
        for s, name in page.items]
    return Page[SightingOut](items=items, total=page.total, limit=limit, offset=offset)
