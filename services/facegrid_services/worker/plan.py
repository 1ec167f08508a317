"""The batch planner: stream entries in, a typed plan out.  Pure: no Redis, no database.

:meth:`Planner.plan` runs every check on each entry (poison by delivery count, wire
format, token judged at the entry's arrival, model id, Lamport plausibility),
matches the accepted embeddings against one gallery snapshot and decides each
event's attendance time.  Whatever one entry does — a refusal or any exception —
ends as a :class:`DeadLetter` for that entry alone; the other entries of the batch
are planned as usual.  The store commit (:mod:`.commit`) and the acknowledgement
carry the plan out.

Time bounds: an entry's *arrival* is its stream id time (when Redis accepted the
XADD), never later than the planner's clock (ids can be chosen by a client).  A
``corrected_utc`` more than ``clock_tolerance`` after the arrival, or more than
``max_event_age`` before it (a node buffers events for minutes, not hours), is
suspect: the sighting keeps its own times for audit, attendance uses the arrival.
So neither a fast clock nor a back-dated replay moves anyone's attendance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from facegrid import wire
from facegrid_services.attendance import attendance_time

from .checks import CHECK_FAILED, LAMPORT_JUMP, POISON, EntryChecker, Rejected
from .gallery import Gallery

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Entry:
    """One stream entry as read: id, fields (None when trimmed while pending), deliveries."""

    sid: str
    fields: Mapping[Any, Any] | None
    deliveries: int = 1


@dataclass(slots=True)
class DeadLetter:
    sid: str
    fields: Mapping[Any, Any]
    reason: str
    detail: str


@dataclass(slots=True)
class Accepted:
    """A valid event with its match and the time attendance will use."""

    sid: str
    event: wire.Event
    arrival: datetime
    person_id: int | None
    score: float
    recognised: bool
    attendance_at: datetime
    suspect: bool


@dataclass(slots=True)
class BatchPlan:
    #: Every entry id of the batch: all are acknowledged once the plan is carried out.
    ack_ids: list[str]
    accepted: list[Accepted] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    #: Entries repeating an event id already in this batch (acknowledged, not stored).
    duplicates: int = 0
    threshold: float = 0.0
    #: The highest Lamport value among the accepted events (None: none accepted).
    lamport_max: int | None = None
    #: The gallery snapshot the batch was matched against (presences decide on it).
    gallery: Gallery | None = None


def stream_id_seconds(sid: str) -> float | None:
    """The millisecond part of a stream id, in epoch seconds (None if not an id)."""
    head = sid.split("-", 1)[0]
    if not head.isdigit() or len(head) > 15:
        return None
    return int(head) / 1000.0


def _safe_detail(e: BaseException) -> str:
    try:
        text = str(e)
    except Exception:  # a __str__ that raises
        text = "(unprintable)"
    return f"{type(e).__name__}: {text}"[:500]


class Planner:
    def __init__(self, checker: EntryChecker, *, threshold: float,
                 clock_tolerance: timedelta, max_event_age: timedelta, max_deliveries: int,
                 lamport_max_jump: int, clock=time.time) -> None:
        self.checker = checker
        self.threshold = threshold
        self.clock_tolerance = clock_tolerance
        self.max_event_age = max_event_age
        self.max_deliveries = max_deliveries
        self.lamport_max_jump = lamport_max_jump
        self._clock = clock

    def plan(self, entries: Sequence[Entry], gallery: Gallery, *,
             fleet_lamport: int = 0) -> BatchPlan:
        """Plan one batch.  ``fleet_lamport``: the highest Lamport value the fleet has
        seen; an event more than ``lamport_max_jump`` above it is refused."""
        now = self._clock()
        plan = BatchPlan(ack_ids=[e.sid for e in entries], threshold=self.threshold,
                         gallery=gallery)
        ceiling = max(fleet_lamport, 0) + self.lamport_max_jump
        checked: list[tuple[Entry, wire.Event, float]] = []
        seen_ids: set[str] = set()
        for e in entries:
            if not e.fields:  # trimmed from the stream while pending: nothing to process
                continue
            if e.deliveries > self.max_deliveries:
                plan.dead.append(DeadLetter(e.sid, e.fields, POISON,
                                            f"delivered {e.deliveries} times without an ack"))
                continue
            sid_t = stream_id_seconds(e.sid)
            arrival = now if sid_t is None else min(sid_t, now)
            try:
                ev = self.checker.check(e.fields, at=arrival)
            except Rejected as r:
                plan.dead.append(DeadLetter(e.sid, e.fields, r.reason, r.detail))
                continue
            except Exception as exc:  # any failure is this entry's alone
                log.warning("check of entry %s failed: %s", e.sid, _safe_detail(exc))
                plan.dead.append(DeadLetter(e.sid, e.fields, CHECK_FAILED, _safe_detail(exc)))
                continue
            if ev.payload.lamport > ceiling:
                plan.dead.append(DeadLetter(
                    e.sid, e.fields, LAMPORT_JUMP,
                    f"lamport {ev.payload.lamport} is more than {self.lamport_max_jump} above "
                    f"the fleet maximum {fleet_lamport}"))
                continue
            if ev.payload.event_id in seen_ids:
                plan.duplicates += 1
                continue
            seen_ids.add(ev.payload.event_id)
            checked.append((e, ev, arrival))
        self._match(plan, checked, gallery)
        return plan

    def _match(self, plan: BatchPlan, checked: list[tuple[Entry, wire.Event, float]],
               gallery: Gallery) -> None:
        if not checked:
            return
        try:
            m = gallery.match(np.stack([ev.embedding for _, ev, _ in checked]), self.threshold)
            results = list(zip(m.person_ids.tolist(), m.scores.tolist(), m.recognised.tolist(),
                               strict=True))
        except Exception as exc:  # find the entry that fails, alone
            log.warning("batch match failed (%s): matching one by one", _safe_detail(exc))
            results = []
            for entry, ev, _ in checked:
                try:
                    one = gallery.match(ev.embedding[None, :], self.threshold)
                    results.append((int(one.person_ids[0]), float(one.scores[0]),
                                    bool(one.recognised[0])))
                except Exception as e1:
                    results.append(None)
                    plan.dead.append(DeadLetter(entry.sid, entry.fields or {}, CHECK_FAILED,
                                                _safe_detail(e1)))
        for (entry, ev, arrival_s), res in zip(checked, results, strict=True):
            if res is None:
                continue
            person, score, ok = res
            arrival = datetime.fromtimestamp(arrival_s, UTC)
            at, suspect = attendance_time(ev.corrected_at, arrival, self.clock_tolerance,
                                          self.max_event_age)
            plan.accepted.append(Accepted(entry.sid, ev, arrival, person if ok else None, score, ok,
                                          at, suspect))
            lamport = ev.payload.lamport
            if plan.lamport_max is None or lamport > plan.lamport_max:
                plan.lamport_max = lamport
