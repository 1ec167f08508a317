"""Request and response bodies of REST v1 (the node contract lives in facegrid.contract)."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from facegrid import types
from facegrid.contract import NodeStatus

from .api_tokens import NAME_RE

#: The rule of API-token names (api_tokens.NAME_RE).
TOKEN_NAME_PATTERN = NAME_RE.pattern

T = TypeVar("T")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _printable(v: str) -> str:
    v = v.strip()
    if not v:
        raise ValueError("must not be empty or blank")
    if _CONTROL.search(v):
        raise ValueError("must not contain control characters")
    return v


PrintableName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_printable)]
ModelId = Annotated[types.ModelId,
                    Field(description="Embedding model id, e.g. facenet-casia-webface")]
ImageHash = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$",
                                 description="SHA-256 (hex) of the source image file")]


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


# --- nodes --------------------------------------------------------------------

class NodeInfo(NodeStatus):
    """NodeStatus plus what the fleet view shows."""

    version: str
    camera: str
    events_sent: int
    events_dropped: int
    backlog: int


# --- people and embeddings -------------------------------------------------------

#: A row id in a request body: a JSON integer, strictly (``true`` is not 1, ``"3"`` not 3).
RowId = Annotated[int, Field(ge=1, le=2**31 - 1, strict=True)]

OwnSchedule = Annotated[RowId | None, Field(
    description="The person's own schedule, taking precedence over their groups' "
                "(null: their groups' schedule)")]


class PersonCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: PrintableName
    external_id: Annotated[str, Field(max_length=200), AfterValidator(_printable)] | None = None
    schedule_id: OwnSchedule = None


class PersonUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: PrintableName | None = None
    external_id: Annotated[str, Field(max_length=200), AfterValidator(_printable)] | None = None
    schedule_id: OwnSchedule = None


class PersonOut(BaseModel):
    id: int
    name: str
    external_id: str | None
    created_at: datetime
    updated_at: datetime
    schedule_id: int | None = Field(default=None,
                                    description="Own schedule (null: the groups')")
    embeddings: dict[str, int] = Field(description="Number of enrolled embeddings per model")


class EmbeddingIn(BaseModel):
    """One enrolled face: the 512-d L2-normalised embedding, never a picture."""

    model_config = ConfigDict(extra="forbid")
    model: ModelId
    image_hash: ImageHash
    embedding: str | list[float] = Field(
        description="base64 of 512 little-endian float32, or a list of 512 numbers; "
                    "L2-normalised")


class EmbeddingOut(BaseModel):
    id: int
    person_id: int
    model: str
    image_hash: str
    created_at: datetime
    created: bool = Field(description="False when this image was already enrolled")


class ErasedOut(BaseModel):
    person_id: int
    embeddings: int
    sightings: int
    attendance: int
    presences: int = 0
    #: Dead letters matched to the person and deleted (facegrid_services.dead_letters);
    #: None: Redis failed, they expire with FACEGRID_DEAD_LETTER_MAX_AGE_S.
    dead_letters: int | None = 0
    workers_notified: bool


# --- sightings and attendance -------------------------------------------------------

class SightingOut(BaseModel):
    id: int
    event_id: str
    node_id: str
    person_id: int | None
    person_name: str | None
    recognised: bool
    score: float
    threshold: float
    model: str
    lamport: int
    corrected_utc: datetime
    utc_timestamp: datetime
    local_time: str
    timezone: str
    timezone_offset: str
    drift_offset_ms: float
    track_id: int
    det_confidence: float
    received_at: datetime


class PresenceOut(BaseModel):
    """One person in view for a while at one camera (one track), with one decision."""

    id: int
    node_id: str
    track_id: int
    status: Literal["pending", "recognised", "unknown"]
    person_id: int | None
    person_name: str | None
    stranger_id: int | None = Field(description="Pseudo-id of a repeat stranger (unknown #N)")
    locked: bool = Field(description="Recognised with a clear margin")
    first_seen: datetime
    last_seen: datetime
    duration_s: float
    frames: int
    events: int
    score: float = Field(description="Aggregate score of the decision")
    best_score: float
    threshold: float
    history: list[dict] = Field(description="Decision changes: at, status, person_id, score")


class StrangerOut(BaseModel):
    id: int
    label: str = Field(description="unknown #N")
    presences: int
    first_seen: datetime
    last_seen: datetime
    nodes: list[str]
    seen_today: int = Field(description="Presences linked to it since the site's midnight")


class StrangerErasedOut(BaseModel):
    stranger_id: int
    presences_unlinked: int
    #: Dead letters of its presences' tracks or its face, deleted (None: Redis failed).
    dead_letters: int | None = 0


class CalibrationOut(BaseModel):
    """The threshold in force and how it was calibrated (worker/calibration.py)."""

    threshold: float | None
    source: str = Field(description="gallery | default | setting | none (no worker yet)")
    target_far: float | None
    people: int
    samples: int = Field(description="Impostor scores behind the estimate")
    estimate: float | None
    low: float | None = Field(description="90% interval of the estimate (low end)")
    high: float | None = Field(description="90% interval (high end); null: not bounded")
    note: str
    camera_thresholds: dict[str, float] = Field(default_factory=dict)


class AttendanceOut(BaseModel):
    person_id: int
    person_name: str
    day: date = Field(description="The site-local day (FACEGRID_SITE_TIMEZONE)")
    check_in: datetime = Field(description="UTC")
    check_out: datetime = Field(description="UTC")
    check_in_local: str = Field(description="check_in in the requested tz, ISO-8601")
    check_out_local: str = Field(description="check_out in the requested tz, ISO-8601")
    check_in_node: str
    check_out_node: str
    sightings: int


class AttendanceReport(Page[AttendanceOut]):
    tz: str
    site_timezone: str


# --- alerts, stats, stream -------------------------------------------------------------

class AlertOut(BaseModel):
    id: int
    kind: str
    created_at: datetime
    window_start: datetime
    window_end: datetime
    count: int
    nodes: list[str]
    message: str
    acknowledged_at: datetime | None
    acknowledged_by: str | None


class AcknowledgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Who acknowledges; the token's name when not given.
    by: Annotated[str, Field(max_length=200), AfterValidator(_printable)] | None = None


class ThresholdPoint(BaseModel):
    threshold: float
    accepted: int


class ThresholdStats(BaseModel):
    grid: list[ThresholdPoint]
    events: int = Field(description="Events counted (accepted at the lowest threshold)")
    suggested_threshold: float | None
    reason: str


class GroupInfo(BaseModel):
    name: str
    consumers: int
    pending: int
    lag: int | None
    last_delivered_id: str


class StreamInfo(BaseModel):
    stream: str
    exists: bool
    length: int
    groups: list[GroupInfo]
    pending: int = Field(description="Delivered to a worker, not yet acknowledged")
    oldest_pending_id: str | None
    dead_letters: int


class DeadLetterOut(BaseModel):
    id: str
    reason: str
    detail: str
    source_id: str
    node_id: str | None
    event_id: str | None
    fields: list[str] = Field(description="Original field names kept (values are not shown)")


class ReplayOut(BaseModel):
    dead_letter_id: str
    new_id: str | None
    action: Literal["replayed", "deleted"]


class RevokeOut(BaseModel):
    jti: str
    node_id: str | None
    revoked_at: datetime
    expires_at: datetime | None
    reason: str
    created: bool


class NodeRevokeOut(BaseModel):
    node_id: str
    not_before: datetime
    revoked_at: datetime
    reason: str
    created: bool


class ApiTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=100,
                               pattern=TOKEN_NAME_PATTERN)]
    role: Literal["admin", "operator", "viewer"]
    #: When the token stops working (UTC); none = never.
    expires_at: types.IsoDateTime | None = None


class ApiTokenOut(BaseModel):
    id: int
    name: str
    role: str
    prefix: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiTokenCreated(ApiTokenOut):
    #: The token itself: shown this once, only its SHA-256 is stored.
    token: str


class WhoAmI(BaseModel):
    name: str
    role: str
    token_id: int | None
    expires_at: datetime | None
    #: What this role may do on the dashboard (and the API).
    can: list[str]


class AuditOut(BaseModel):
    id: int
    at: datetime
    token_id: int | None
    actor: str
    role: str
    method: str
    route: str
    path: str
    status: int


EventTypeName = Literal["presence.recognised", "presence.unknown", "alert.intruder",
                        "camera.online", "camera.offline", "camera.idle", "camera.active"]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=100,
                               pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,99}$")]
    url: Annotated[str, Field(min_length=8, max_length=2000)]
    events: Annotated[list[EventTypeName], Field(min_length=1, max_length=7)]
    #: Privacy: people's names only if true, else a pseudonymous id per subscription.
    include_names: bool = False


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Annotated[str, Field(min_length=8, max_length=2000)] | None = None
    events: Annotated[list[EventTypeName], Field(min_length=1, max_length=7)] | None = None
    include_names: bool | None = None
    active: bool | None = None


class WebhookOut(BaseModel):
    id: int
    name: str
    url: str
    events: list[str]
    include_names: bool
    active: bool
    created_at: datetime
    created_by: str
    consecutive_failures: int
    paused_until: datetime | None
    #: Deliveries by status: pending, delivered, dead.
    deliveries: dict[str, int]


class WebhookCreated(WebhookOut):
    #: The signing secret (Standard Webhooks, whsec_…): shown this once.
    secret: str


class DeliveryOut(BaseModel):
    id: int
    subscription_id: int
    event_id: str
    type: str
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    last_status: int | None
    last_error: str
    #: The signed JSON body (never a picture; names only if the subscription asks).
    body: str


class ReplayedOut(BaseModel):
    replayed: int
