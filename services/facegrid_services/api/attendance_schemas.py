"""Bodies of the attendance-rules routes: schedules, groups, closures, corrections,
day statuses and evidence."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from facegrid.types import IanaZone, IsoDate, IsoDateTime

from .schemas import PrintableName, RowId

HhMm = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                            description="Local wall time HH:MM (24 h)")]
Zone = Annotated[IanaZone, Field(description="IANA time zone, e.g. Europe/Paris")]
GraceMin = Annotated[int, Field(ge=0, le=720, strict=True, description="Minutes of grace")]
Reason = Annotated[str, Field(min_length=3, max_length=500,
                              description="Why (kept in the audit trail)")]


class ShiftIn(BaseModel):
    weekday: Annotated[int, Field(ge=0, le=6, strict=True,
                                  description="0 = Monday … 6 = Sunday")]
    start: HhMm
    end: Annotated[HhMm, Field(description="End; at or before start = ends the next day")]


class ScheduleIn(BaseModel):
    name: PrintableName
    timezone: Zone
    shifts: Annotated[list[ShiftIn], Field(max_length=50)]
    grace_late_min: GraceMin = 5
    grace_early_min: GraceMin = 5


class ScheduleOut(ScheduleIn):
    id: int
    created_at: datetime
    updated_at: datetime


class GroupIn(BaseModel):
    name: PrintableName
    description: Annotated[str, Field(max_length=500)] = ""
    schedule_id: RowId | None = None


class GroupOut(GroupIn):
    id: int
    members: int
    created_at: datetime


class ClosureIn(BaseModel):
    day: IsoDate
    name: Annotated[str, Field(max_length=200)] = ""
    schedule_id: Annotated[RowId | None, Field(description="None: the whole site")] = None


class ClosureOut(ClosureIn):
    id: int


class CorrectionIn(BaseModel):
    person_id: RowId
    day: Annotated[IsoDate, Field(description="The site-local day corrected")]
    kind: Literal["set_check_in", "set_check_out", "add_visit", "void"]
    at: IsoDateTime
    until: IsoDateTime | None = None
    reason: Reason

    @model_validator(mode="after")
    def _interval(self) -> CorrectionIn:
        for name in ("at", "until"):
            v = getattr(self, name)
            if v is not None and v.tzinfo is None:
                raise ValueError(f"{name} needs a time zone offset (e.g. Z or +01:00)")
        if self.until is not None and self.until < self.at:
            raise ValueError("until is before at")
        if self.kind in ("add_visit", "void") and self.until is None:
            raise ValueError(f"{self.kind} needs until")
        return self


class CorrectionOut(BaseModel):
    id: int
    person_id: int
    day: date
    kind: str
    at: datetime
    until: datetime | None
    reason: str
    made_at: datetime
    made_by: str
    before: dict
    after: dict


class DayStatusOut(BaseModel):
    day: date
    status: Literal["present", "late", "left_early", "absent", "off", "holiday", "upcoming"]
    first_in: datetime | None
    last_out: datetime | None
    first_in_local: str | None
    last_out_local: str | None
    late_minutes: int
    left_early_minutes: int
    on_site_hours: float
    scheduled_hours: float
    overtime_hours: float
    visits: int
    corrected: bool
    corrections: list[int]


class PersonStatusesOut(BaseModel):
    person_id: int
    person_name: str
    groups: list[str]
    days: list[DayStatusOut]
    present: int
    late: int
    absent: int
    late_minutes: int
    on_site_hours: float


class StatusReport(BaseModel):
    start: date
    end: date
    tz: str
    items: list[PersonStatusesOut]
    total: int
    limit: int
    offset: int


class EvidenceSighting(BaseModel):
    sighting_id: int
    node_id: str
    corrected_utc: datetime
    viewer_local: str
    node_local_time: str
    node_timezone: str
    drift_offset_ms: float
    lamport: int
    score: float
    threshold: float
    received_at: datetime


class EvidencePresence(BaseModel):
    presence_id: int
    node_id: str
    first_seen: datetime
    last_seen: datetime
    first_seen_local: str
    last_seen_local: str
    frames: int
    score: float


class EvidenceOut(BaseModel):
    person_id: int
    status: DayStatusOut
    presences: list[EvidencePresence]
    sightings: list[EvidenceSighting]
    corrections: list[CorrectionOut]
