"""Alerts (list, acknowledge) and threshold statistics."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path, Query, status

from facegrid import keys
from facegrid_services.store import queries
from facegrid_services.store.models import Alert

from .. import thresholds
from ..deps import Ctx, CurrentPrincipal, DbSession, Operator, Viewer
from ..schemas import (
    AcknowledgeIn,
    AlertOut,
    CalibrationOut,
    Page,
    ThresholdPoint,
    ThresholdStats,
)
from .common import Limit, Offset

router = APIRouter(prefix="/api/v1", tags=["alerts"])


def _out(a: Alert) -> AlertOut:
    return AlertOut(id=a.id, kind=a.kind, created_at=a.created_at,
                    window_start=a.window_start, window_end=a.window_end, count=a.count,
                    nodes=[str(n) for n in (a.nodes or [])], message=a.message,
                    acknowledged_at=a.acknowledged_at, acknowledged_by=a.acknowledged_by)


@router.get("/alerts", response_model=Page[AlertOut], dependencies=[Viewer])
def list_alerts(
    session: DbSession,
    acknowledged: bool | None = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[AlertOut]:
    page = queries.list_alerts(session, acknowledged=acknowledged, kind=kind, limit=limit,
                               offset=offset)
    return Page[AlertOut](items=[_out(a) for a in page.items], total=page.total, limit=limit,
                          offset=offset)


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertOut, dependencies=[Operator],
             summary="Acknowledge an alert (idempotent: the first acknowledgement is kept)")
def acknowledge(alert_id: Annotated[int, Path(ge=1, le=2**31 - 1)], session: DbSession,
                principal: CurrentPrincipal,
                body: Annotated[AcknowledgeIn | None, Body()] = None) -> AlertOut:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"alert {alert_id} does not exist")
    if alert.acknowledged_at is None:
        alert.acknowledged_at = datetime.now(UTC)
        alert.acknowledged_by = (body or AcknowledgeIn()).by or principal.name
        session.commit()
    return _out(alert)


@router.get("/stats/thresholds", response_model=ThresholdStats, dependencies=[Operator],
            summary="Events each candidate threshold would accept, and a suggested threshold")
def threshold_stats(ctx: Ctx) -> ThresholdStats:
    grid = thresholds.read_grid(ctx.redis)
    suggestion, reason = thresholds.suggest(grid)
    return ThresholdStats(grid=[ThresholdPoint(threshold=t, accepted=n) for t, n in grid],
                          events=grid[0][1] if grid else 0, suggested_threshold=suggestion,
                          reason=reason)


@router.get("/stats/calibration", response_model=CalibrationOut, dependencies=[Operator],
            summary="The threshold in force, how it was calibrated and how uncertain it is")
def calibration(ctx: Ctx) -> CalibrationOut:
    raw = ctx.redis.get(keys.CALIBRATION)
    try:
        data = json.loads(raw) if raw else None
        return CalibrationOut(**data) if isinstance(data, dict) else _no_calibration()
    except (ValueError, TypeError):
        return _no_calibration()


def _no_calibration() -> CalibrationOut:
    return CalibrationOut(threshold=None, source="none", target_far=None, people=0, samples=0,
                          estimate=None, low=None, high=None,
                          note="no worker has loaded the gallery yet")
