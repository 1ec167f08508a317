"""Dead letters of an erased person (or repeat stranger): find them and delete them.

A dead letter keeps its entry's original fields (``facegrid.wire``: the payload
JSON and the 2 KiB embedding), so it is biometric data.  Every dead letter
expires after ``FACEGRID_DEAD_LETTER_MAX_AGE_S`` (the worker trims by age);
erasing a person also deletes at once every dead letter that can be matched to
that person.  A dead letter was never stored, so it carries no person id; it is
the person's when ANY of these holds:

* its ``event_id`` is one of the person's stored sightings (an event stored and
  later dead-lettered again, e.g. a redelivery past ``max_deliveries``);
* its ``(node_id, track_id)`` is one of the person's presences (track ids are
  unique per node: the node starts them at its boot time in milliseconds), so
  the other frames of a track recognised as the person go with it;
* its embedding scores at least the matching threshold against one of the
  person's enrolled embeddings of the same model (any model when the payload
  cannot tell) — the worker would have recognised that face as the person.
  The threshold is the lowest in force (the worker's calibration in Redis and
  its per-camera thresholds), else the worker's default: erasing errs towards
  deleting more.

What cannot be matched stays until it expires: a dead letter whose embedding is
missing or unreadable and whose payload does not name a stored event or presence
of the person (e.g. a frame of a track never stored, with a corrupt embedding),
a face scoring below the threshold (a poor frame), one of a model the person has
no enrolled embedding of, and dead letters written after the erasure (the
person's embeddings are gone by then, so the worker treats their faces as
unknown).  The scan reads the stream in pages (``XRANGE``) and deletes the
matches with ``XDEL``; the dead-letter stream is bounded
(``FACEGRID_DEAD_LETTER_MAXLEN``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from facegrid import keys, wire
from facegrid_services.store.models import Embedding, Presence, Sighting, Stranger

log = logging.getLogger(__name__)

#: Entries read per XRANGE while scanning.
PAGE = 500


def default_threshold() -> float:
    """The worker's threshold while nothing is calibrated (its setting's default)."""
    from facegrid_services.worker.settings import WorkerSettings

    return float(WorkerSettings.model_fields["default_threshold"].default)


@dataclass(slots=True)
class Traces:
    """What identifies a person's (or a stranger's) data in a dead letter, read before
    the erasure; ``subject`` names them in logs ("person 5", "stranger 3")."""

    subject: str
    event_ids: set[str] = field(default_factory=set)
    tracks: set[tuple[str, int]] = field(default_factory=set)
    #: model id -> (n, 512) unit embeddings enrolled for the person.
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)

    def match(self, fields: Mapping[Any, Any], threshold: float) -> bool:
        """Whether the dead letter ``fields`` is this person's (see the module's rules)."""
        payload = payload_of(fields)
        event_id = payload.get("event_id")
        if isinstance(event_id, str) and event_id in self.event_ids:
            return True
        node_id, track_id = payload.get("node_id"), payload.get("track_id")
        if (isinstance(node_id, str) and type(track_id) is int
                and (node_id, track_id) in self.tracks):
            return True
        emb = _embedding(fields)
        if emb is None or not self.embeddings:
            return False
        model = payload.get("model")
        gallery = ([self.embeddings[model]] if isinstance(model, str) and model in self.embeddings
                   else list(self.embeddings.values()))
        return any(float(np.max(g @ emb)) >= threshold for g in gallery)


def person_traces(session: Session, person_id: int) -> Traces:
    """The person's stored event ids, presences' tracks and enrolled embeddings."""
    t = Traces(f"person {person_id}")
    t.event_ids = set(session.scalars(select(Sighting.event_id)
                                      .where(Sighting.person_id == person_id)))
    t.tracks = {(n, int(k)) for n, k in session.execute(
        select(Presence.node_id, Presence.track_id).where(Presence.person_id == person_id))}
    by_model: dict[str, list[np.ndarray]] = {}
    for model, vector in session.execute(select(Embedding.model, Embedding.vector)
                                         .where(Embedding.person_id == person_id)):
        v = _unit(vector)
        if v is not None:
            by_model.setdefault(model, []).append(v)
    t.embeddings = {m: np.stack(vs) for m, vs in by_model.items()}
    return t


def stranger_traces(session: Session, stranger_id: int) -> Traces:
    """A repeat stranger's presences' tracks and its embedding (the mean of theirs)."""
    t = Traces(f"stranger {stranger_id}")
    t.tracks = {(n, int(k)) for n, k in session.execute(
        select(Presence.node_id, Presence.track_id).where(Presence.stranger_id == stranger_id))}
    row = session.execute(select(Stranger.model, Stranger.vector)
                          .where(Stranger.id == stranger_id)).first()
    v = _unit(row[1]) if row is not None else None
    if v is not None:
        t.embeddings = {row[0]: v[None, :]}
    return t


def match_threshold(r: redis.Redis) -> float:
    """The lowest threshold in force: the worker's calibration and per-camera thresholds
    (Redis ``facegrid:calibration``), else the worker's default."""
    try:
        data = json.loads(r.get(keys.CALIBRATION) or "null")
    except ValueError:
        data = None
    found: list[float] = []
    if isinstance(data, dict):
        candidates = [data.get("threshold")]
        cams = data.get("camera_thresholds")
        if isinstance(cams, dict):
            candidates += list(cams.values())
        found = [float(v) for v in candidates
                 if isinstance(v, int | float) and not isinstance(v, bool) and -1 <= v <= 1]
    return min(found) if found else default_threshold()


def erase(r: redis.Redis, traces: Traces, *, threshold: float | None = None,
          page: int = PAGE) -> int:
    """Delete the person's dead letters; returns how many.  Raises redis.RedisError."""
    if threshold is None:
        threshold = match_threshold(r)
    deleted = 0
    start = "-"
    while True:
        entries = r.xrange(keys.DEAD_LETTER_STREAM, min=start, count=page)
        if not entries:
            return deleted
        doomed = [sid for sid, fields in entries if _safe_match(traces, fields, threshold)]
        if doomed:
            deleted += int(r.xdel(keys.DEAD_LETTER_STREAM, *doomed))
        last = entries[-1][0]
        start = "(" + (last.decode() if isinstance(last, bytes) else last)
        if len(entries) < page:
            return deleted


def _safe_match(traces: Traces, fields, threshold: float) -> bool:
    try:
        return traces.match(fields, threshold)
    except Exception:  # a dead letter is whatever a client sent: never let one stop the scan
        log.exception("dead letter could not be checked against %s", traces.subject)
        return False


def _field(fields: Mapping[Any, Any], name: str) -> Any:
    v = fields.get(name.encode())
    return fields.get(name) if v is None else v


def payload_of(fields: Mapping[Any, Any]) -> dict:
    """The entry's payload JSON as a dict ({} when missing, oversized or not JSON)."""
    raw = _field(fields, "payload")
    if not isinstance(raw, bytes | str) or len(raw) > wire.MAX_PAYLOAD_BYTES:
        return {}
    try:
        d = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return d if isinstance(d, dict) else {}


def _embedding(fields: Mapping[Any, Any]) -> np.ndarray | None:
    raw = _field(fields, "embedding")
    return _unit(raw) if isinstance(raw, bytes) else None


def _unit(raw: bytes) -> np.ndarray | None:
    """Little-endian float32 × 512 as a unit vector (None: wrong size, non-finite, zero)."""
    if len(raw) != wire.EMBEDDING_BYTES:
        return None
    v = np.frombuffer(raw, wire.EMBEDDING_DTYPE).astype(np.float64)
    if not np.all(np.isfinite(v)):
        return None
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 and np.isfinite(n) else None
