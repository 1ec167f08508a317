"""People administration: people, their enrolled embeddings, complete erasure, and
telling the workers (whose matcher, worker/gallery.py, reloads the gallery).

Every change is announced on ``keys.GALLERY_CHANNEL`` after it is committed, so
every worker drops its cached copy within seconds (erasure is a GDPR duty).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
from datetime import UTC, datetime

import numpy as np
import redis
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from facegrid import keys, wire
from facegrid.errors import FacegridError
from facegrid_services import dead_letters
from facegrid_services.notify import webhooks as notify_webhooks
from facegrid_services.store import queries
from facegrid_services.store.models import (
    Attendance,
    Embedding,
    Person,
    Presence,
    Schedule,
    Sighting,
)

from . import metrics
from .schemas import EmbeddingIn, ErasedOut, PersonCreate, PersonOut, PersonUpdate

log = logging.getLogger(__name__)


class InvalidEmbedding(FacegridError, ValueError):
    pass


class Conflict(FacegridError, ValueError):
    pass


class MissingSchedule(FacegridError, LookupError):
    pass


def _check_schedule(session: Session, schedule_id: int | None) -> None:
    if schedule_id is not None and session.get(Schedule, schedule_id) is None:
        raise MissingSchedule(f"schedule {schedule_id} does not exist")


def announce(r: redis.Redis, change: str, person_id: int) -> bool:
    """Publish a gallery change; False (logged, counted) if Redis is unreachable."""
    try:
        r.publish(keys.GALLERY_CHANNEL,
                  json.dumps({"change": change, "person_id": person_id}))
    except redis.RedisError as e:
        metrics.GALLERY_NOTIFY_FAILED.inc()
        log.error("gallery change %s of person %d not announced: %s", change, person_id, e)
        return False
    metrics.GALLERY_CHANGES.labels(change).inc()
    return True


def person_out(person: Person, counts: dict[str, int]) -> PersonOut:
    return PersonOut(id=person.id, name=person.name, external_id=person.external_id,
                     created_at=person.created_at, updated_at=person.updated_at,
                     schedule_id=person.schedule_id, embeddings=counts)


def _unique_check(session: Session, name: str | None, external_id: str | None,
                  exclude: int | None = None) -> None:
    if name is not None:
        other = session.scalar(select(Person.id).where(Person.name == name))
        if other is not None and other != exclude:
            raise Conflict(f"a person named {name!r} already exists (id {other})")
    if external_id is not None:
        other = session.scalar(select(Person.id).where(Person.external_id == external_id))
        if other is not None and other != exclude:
            raise Conflict(f"external_id {external_id!r} belongs to person {other}")


def create_person(session: Session, body: PersonCreate) -> Person:
    _unique_check(session, body.name, body.external_id)
    _check_schedule(session, body.schedule_id)
    now = datetime.now(UTC)
    person = Person(name=body.name, external_id=body.external_id, created_at=now,
                    updated_at=now, schedule_id=body.schedule_id)
    session.add(person)
    session.commit()  # IntegrityError on a race: the app maps it to 409
    return person


def update_person(session: Session, person: Person, body: PersonUpdate) -> Person:
    fields = body.model_dump(exclude_unset=True)
    if "name" in fields and fields["name"] is None:
        raise Conflict("name cannot be removed")
    _unique_check(session, fields.get("name"), fields.get("external_id"), exclude=person.id)
    _check_schedule(session, fields.get("schedule_id"))
    for k, v in fields.items():
        setattr(person, k, v)
    person.updated_at = datetime.now(UTC)
    session.commit()
    return person


def parse_embedding(value: str | list[float]) -> bytes:
    """base64 string or list of 512 numbers → the wire's 2 KiB little-endian float32 bytes.

    Validated with :func:`facegrid.wire.decode_embedding` (length, finite, unit norm).
    """
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidEmbedding("embedding is not valid base64") from None
    else:
        if len(value) != wire.EMBEDDING_DIM:
            raise InvalidEmbedding(f"embedding has {len(value)} values, need "
                                   f"{wire.EMBEDDING_DIM}")
        if not all(math.isfinite(v) for v in value):
            raise InvalidEmbedding("embedding holds NaN or infinity")
        with np.errstate(over="ignore"):
            arr = np.asarray(value, dtype=np.float64).astype(wire.EMBEDDING_DTYPE)
        raw = arr.tobytes()
    try:
        emb = wire.decode_embedding(raw)
    except wire.WireError as e:
        raise InvalidEmbedding(e.detail) from None
    return emb.tobytes()


def add_embedding(session: Session, person: Person, body: EmbeddingIn) -> tuple[Embedding, bool]:
    """Enroll one embedding; (row, created).  Same (person, model, image_hash) → no-op."""
    vector = parse_embedding(body.embedding)
    existing = queries.find_embedding(session, person.id, body.model, body.image_hash)
    if existing is not None:
        return existing, False
    row = Embedding(person_id=person.id, model=body.model, vector=vector,
                    image_hash=body.image_hash, created_at=datetime.now(UTC))
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # the same photo uploaded concurrently
        session.rollback()
        existing = queries.find_embedding(session, person.id, body.model, body.image_hash)
        if existing is None:
            raise
        return existing, False
    return row, True


def delete_embedding(session: Session, person: Person, embedding_id: int) -> bool:
    result = session.execute(delete(Embedding).where(
        Embedding.id == embedding_id, Embedding.person_id == person.id))
    session.commit()
    return result.rowcount > 0


def erase_person(session: Session, person: Person, r: redis.Redis) -> ErasedOut:
    """The whole erasure: the person with every embedding, presence, sighting,
    attendance row and notification about them (one transaction); then the workers
    are told (they drop the person within seconds); then the dead letters that match
    the person are deleted (:mod:`facegrid_services.dead_letters`)."""
    pid = person.id
    traces = dead_letters.person_traces(session, pid)  # before the rows go
    counts = delete_person_rows(session, person)
    notified = announce(r, "erased", pid)
    return ErasedOut(person_id=pid, workers_notified=notified,
                     dead_letters=erase_dead_letters(r, traces), **counts)


def delete_person_rows(session: Session, person: Person) -> dict[str, int]:
    """Delete the person and every row about them (one transaction); counts by kind."""
    pid = person.id
    counts = {
        "embeddings": session.scalar(
            select(func.count()).select_from(Embedding).where(Embedding.person_id == pid)),
        "sightings": session.scalar(
            select(func.count()).select_from(Sighting).where(Sighting.person_id == pid)),
        "attendance": session.scalar(
            select(func.count()).select_from(Attendance).where(Attendance.person_id == pid)),
        "presences": session.scalar(
            select(func.count()).select_from(Presence).where(Presence.person_id == pid)),
    }
    session.execute(delete(Attendance).where(Attendance.person_id == pid))
    session.execute(delete(Presence).where(Presence.person_id == pid))
    session.execute(delete(Sighting).where(Sighting.person_id == pid))
    session.execute(delete(Embedding).where(Embedding.person_id == pid))
    # queued notifications and the webhook delivery log mentioning the person go too
    notify_webhooks.erase_person(session, pid)
    session.execute(delete(Person).where(Person.id == pid))
    session.commit()
    return {k: int(v or 0) for k, v in counts.items()}


def erase_dead_letters(r: redis.Redis, traces: dead_letters.Traces) -> int | None:
    """The person's (or stranger's) dead letters deleted (None, logged and counted, if
    Redis failed: they expire with the dead-letter age)."""
    try:
        n = dead_letters.erase(r, traces)
    except redis.RedisError as e:
        metrics.ERASE_DEAD_LETTERS_FAILED.inc()
        log.error("dead letters of erased %s not deleted (they expire with the "
                  "dead-letter age): %s", traces.subject, e)
        return None
    metrics.DEAD_LETTERS_ERASED.inc(n)
    if n:
        log.info("erased %s: %d dead letters deleted", traces.subject, n)
    return n

