"""SQL schema of facegrid (SQLite by default, PostgreSQL at scale).

Every instant is stored as an aware UTC datetime (:class:`UTCDateTime`).
Changing this file means adding an Alembic revision in ``migrations/versions``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store aware UTC instants only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is UTC:  # PostgreSQL sessions run in UTC (db.make_engine)
            return value
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Person(Base):
    __tablename__ = "people"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    #: The person's own schedule: precedes their groups' (attendance_rules.schedules_of).
    schedule_id: Mapped[int | None] = mapped_column(
        ForeignKey("schedules.id", name="fk_people_schedule_id", ondelete="SET NULL"),
        index=True)

    embeddings: Mapped[list[Embedding]] = relationship(
        back_populates="person", cascade="all, delete-orphan", passive_deletes=True)


class Embedding(Base):
    """One enrolled face of a person, from one model.  Never a picture."""

    __tablename__ = "embeddings"
    __table_args__ = (UniqueConstraint("person_id", "model", "image_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"),
                                           index=True)
    model: Mapped[str] = mapped_column(String(64), index=True)
    #: 512 little-endian float32, L2-normalised (the wire's embedding bytes).
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    #: SHA-256 of the source image file: re-enrolling the same photo is a no-op.
    image_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    person: Mapped[Person] = relationship(back_populates="embeddings")


class Node(Base):
    """A camera node as the server knows it (registration + last heartbeat)."""

    __tablename__ = "nodes"

    node_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    model: Mapped[str] = mapped_column(String(64), default="")
    version: Mapped[str] = mapped_column(String(32), default="")
    camera: Mapped[str] = mapped_column(String(256), default="")
    state: Mapped[str] = mapped_column(String(16), default="active")
    state_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    fps: Mapped[float] = mapped_column(Float, default=0.0)
    drift_offset_ms: Mapped[float] = mapped_column(Float, default=0.0)
    lamport: Mapped[int] = mapped_column(BigInteger, default=0)
    camera_up: Mapped[bool] = mapped_column(Boolean, default=False)
    events_sent: Mapped[int] = mapped_column(BigInteger, default=0)
    events_dropped: Mapped[int] = mapped_column(BigInteger, default=0)
    backlog: Mapped[int] = mapped_column(BigInteger, default=0)
    token_jti: Mapped[str | None] = mapped_column(String(64))
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RevokedToken(Base):
    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_id: Mapped[str | None] = mapped_column(String(63), index=True)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(200), default="")


class RevokedNode(Base):
    """Every token of ``node_id`` issued before ``not_before`` is revoked (a whole node)."""

    __tablename__ = "revoked_nodes"

    node_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reason: Mapped[str] = mapped_column(String(200), default="")


class Stranger(Base):
    """A repeat stranger: unknown presences whose aggregates are close share one pseudo-id.

    Only embeddings (the mean of its presences' aggregates), never a picture;
    erasable, and deleted with its presences after the retention period.
    """

    __tablename__ = "strangers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(64))
    #: Unit mean of the linked presences' aggregates (512 little-endian float32).
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    presences: Mapped[int] = mapped_column(Integer, default=0)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    nodes: Mapped[list] = mapped_column(JSON, default=list)
    #: When the worker last linked a presence to it (server clock): retention counts
    #: from here, never from ``last_seen`` (a node's clock).
    #: (Nullable in the schema only: migration 0007 added it in place; never NULL.)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True,
                                                  nullable=True)


class Presence(Base):
    """One person in view for a while at one camera: one track of one node, one decision.

    ``status``: ``pending`` (no face good enough to decide yet), ``recognised``
    (``person_id``) or ``unknown``; the decision is taken on the track's
    aggregate embedding (worker/presence.py) and its changes are in ``history``.
    """

    __tablename__ = "presences"
    __table_args__ = (
        UniqueConstraint("node_id", "track_id"),
        Index("ix_presences_last_seen", "last_seen"),
        Index("ix_presences_status_last_seen", "status", "last_seen"),
        Index("ix_presences_person_first_seen", "person_id", "first_seen"),
        Index("ix_presences_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                     primary_key=True)
    node_id: Mapped[str] = mapped_column(String(63))
    track_id: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    person_id: Mapped[int | None] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), nullable=True)
    #: Recognised with a clear margin: later frames refine but do not flip it lightly.
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    #: Frames behind the aggregate (the node's count; events for v1 nodes).
    frames: Mapped[int] = mapped_column(Integer, default=0)
    events: Mapped[int] = mapped_column(Integer, default=0)
    #: Aggregate score of the current decision; best aggregate score ever reached.
    score: Mapped[float] = mapped_column(Float, default=-1.0)
    best_score: Mapped[float] = mapped_column(Float, default=-1.0)
    threshold: Mapped[float] = mapped_column(Float, default=0.0)
    model: Mapped[str] = mapped_column(String(64), default="")
    #: The aggregate embedding (unit, 512 little-endian float32) and the weight behind it.
    aggregate: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    weight: Mapped[float] = mapped_column(Float, default=0.0)
    history: Mapped[list] = mapped_column(JSON, default=list)
    #: When it became a confirmed stranger (unknown with enough frames behind it).
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    stranger_id: Mapped[int | None] = mapped_column(
        ForeignKey("strangers.id", ondelete="SET NULL"), nullable=True, index=True)
    #: When the worker last stored an event of it (server clock): retention counts from
    #: here, never from ``last_seen`` (a node's clock: 2099 would keep it for ever).
    #: (Nullable in the schema only: migration 0007 added it in place; never NULL.)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=True)


class Sighting(Base):
    """One event, classified.  Every time field of the event is kept for audit."""

    __tablename__ = "sightings"
    __table_args__ = (
        Index("ix_sightings_person_time", "person_id", "corrected_utc"),
        Index("ix_sightings_node_time", "node_id", "corrected_utc"),
        Index("ix_sightings_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                     primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    stream_id: Mapped[str] = mapped_column(String(40), default="")
    node_id: Mapped[str] = mapped_column(String(63))
    person_id: Mapped[int | None] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), nullable=True)
    recognised: Mapped[bool] = mapped_column(Boolean)
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    model: Mapped[str] = mapped_column(String(64))
    lamport: Mapped[int] = mapped_column(BigInteger)
    utc_timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    local_time: Mapped[str] = mapped_column(String(40))
    timezone: Mapped[str] = mapped_column(String(64))
    timezone_offset: Mapped[str] = mapped_column(String(6))
    drift_offset_ms: Mapped[float] = mapped_column(Float)
    corrected_utc: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    track_id: Mapped[int] = mapped_column(BigInteger)
    box: Mapped[list] = mapped_column(JSON)
    det_confidence: Mapped[float] = mapped_column(Float)
    quality: Mapped[dict] = mapped_column(JSON)
    #: When the worker stored it (server clock, never the node's): retention counts from here.
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The presence this event belongs to (NULL: stored before presences existed
    #: and not backfilled, or the presence was erased).
    presence_id: Mapped[int | None] = mapped_column(
        ForeignKey("presences.id", ondelete="SET NULL"), nullable=True, index=True)


class Attendance(Base):
    """Per person per site-local day: first and last sighting (by corrected_utc)."""

    __tablename__ = "attendance"
    __table_args__ = (UniqueConstraint("person_id", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date, index=True)
    check_in: Mapped[datetime] = mapped_column(UTCDateTime)
    check_in_lamport: Mapped[int] = mapped_column(BigInteger)
    check_in_node: Mapped[str] = mapped_column(String(63))
    check_out: Mapped[datetime] = mapped_column(UTCDateTime)
    check_out_lamport: Mapped[int] = mapped_column(BigInteger)
    check_out_node: Mapped[str] = mapped_column(String(63))
    #: Sightings merged into this row (repeats within the cooldown count once).
    sightings: Mapped[int] = mapped_column(Integer, default=1)


class Alert(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    #: Deduplication key: one alert per kind and window bucket.
    dedup_key: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    count: Mapped[int] = mapped_column(Integer)
    nodes: Mapped[list] = mapped_column(JSON)
    message: Mapped[str] = mapped_column(Text, default="")
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))


class ApiToken(Base):
    """A named API token with a role.  Only the SHA-256 of the secret is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    #: admin, operator or viewer (facegrid_services.api.roles.Role).
    role: Mapped[str] = mapped_column(String(16))
    #: The public lookup part of the token (``fgk_<prefix>_<secret>``).
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    #: SHA-256 (hex) of the whole token string.
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100), default="")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """One management write: which token did it, to what, with what outcome."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                     primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: ApiToken.id; None for the bootstrap admin token (FACEGRID_ADMIN_TOKEN).
    token_id: Mapped[int | None] = mapped_column(Integer, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(8))
    #: Route template, e.g. /api/v1/people/{person_id}.
    route: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(String(500))
    status: Mapped[int] = mapped_column(Integer)


class NotifyOutbox(Base):
    """Events waiting for the notifier (webhooks, MQTT), written in the producer's transaction.

    The notifier fans each row out to subscriptions and the broker, then deletes it
    (a queue, not a log: rows committed late by another replica are never skipped).
    """

    __tablename__ = "notify_outbox"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                     primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    #: facegrid_services.notify.events.EventType
    type: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: Set for presence events: erasing the person deletes the row.
    person_id: Mapped[int | None] = mapped_column(Integer, index=True)
    data: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    url: Mapped[str] = mapped_column(String(2000))
    #: Standard Webhooks secret (``whsec_`` + base64); signs every delivery.
    secret: Mapped[str] = mapped_column(String(100))
    #: Event types this subscription receives.
    events: Mapped[list] = mapped_column(JSON)
    #: Privacy: people's names go out only if set, else a pseudonymous id.
    include_names: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100), default="")
    #: Failures in a row (any delivery); the subscription backs off on them.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """One event for one subscription: the delivery log, retries and dead letters."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                     primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(36))
    type: Mapped[str] = mapped_column(String(32))
    person_id: Mapped[int | None] = mapped_column(Integer, index=True)
    #: The exact JSON body sent (and signed) on every attempt.
    body: Mapped[str] = mapped_column(Text)
    #: pending, delivered or dead.
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(String(300), default="")


class NotifyState(Base):
    """The notifier's small durable state: last known camera states, MQTT pseudonym key."""

    __tablename__ = "notify_state"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
# --- attendance rules (groups, schedules, closures, corrections) ---------------

class Schedule(Base):
    """Expected working hours in one time zone (facegrid_services.day_status.Schedule)."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    timezone: Mapped[str] = mapped_column(String(64))
    #: [{"weekday": 0-6 (Monday=0), "start": "HH:MM", "end": "HH:MM"}, …];
    #: end <= start is an overnight shift that belongs to the day it starts.
    shifts: Mapped[list] = mapped_column(JSON)
    grace_late_min: Mapped[int] = mapped_column(Integer, default=5)
    grace_early_min: Mapped[int] = mapped_column(Integer, default=5)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Group(Base):
    """A class, team or shift.  Its schedule applies to its members."""

    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(String(500), default="")
    schedule_id: Mapped[int | None] = mapped_column(
        ForeignKey("schedules.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GroupMember(Base):
    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"),
                                          primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"),
                                           primary_key=True, index=True)


class Closure(Base):
    """A holiday or closure: for one schedule, or for the whole site (schedule_id None)."""

    __tablename__ = "closures"
    __table_args__ = (UniqueConstraint("day", "schedule_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date, index=True)
    schedule_id: Mapped[int | None] = mapped_column(
        ForeignKey("schedules.id", ondelete="CASCADE"), nullable=True)
    name: Mapped[str] = mapped_column(String(200), default="")


class Correction(Base):
    """An immutable correction of one person's day; camera evidence is never changed.

    ``before``/``after`` keep the day's status as it was computed just before and
    just after the correction, so the trail reads without recomputing history.
    """

    __tablename__ = "corrections"
    __table_args__ = (Index("ix_corrections_person_day", "person_id", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    #: facegrid_services.day_status.CorrectionKind
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(500))
    made_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The API token's name and id (None: the bootstrap admin token).
    made_by: Mapped[str] = mapped_column(String(100))
    made_by_token_id: Mapped[int | None] = mapped_column(Integer)
    before: Mapped[dict] = mapped_column(JSON)
    after: Mapped[dict] = mapped_column(JSON)
