"""Carrying out a :class:`~.plan.BatchPlan`: one store transaction, then one Redis MULTI.

:class:`Store` writes the accepted events (sightings insert-ignore by ``event_id``,
attendance upsert, intruder alerts) in ONE transaction.  A transient database
failure is raised (the loop retries the whole batch; nothing is acknowledged).
Any other failure is one entry's fault: the batch is split in halves until the
entry the store refuses is alone, and only that one becomes a dead letter
(``store_rejected``); the store is idempotent, so halves committed before are
simply stored.

:func:`acknowledge` then sends, in one ``MULTI``: the dead letters (the dead-letter
stream is capped at ``dead_letter_maxlen``; how many were evicted is returned),
``XACK`` of every entry of the batch, one :class:`facegrid.wire.Result` per event
to its node, the fleet's Lamport maximum and the threshold statistics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import redis
from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc

from facegrid import keys, wire
from facegrid_services.attendance import Seen, plan_attendance
from facegrid_services.notify import outbox as notify_outbox
from facegrid_services.store import repo

from .checks import STORE_REJECTED
from .gallery import THRESHOLD_GRID, threshold_counts
from .plan import Accepted, BatchPlan, DeadLetter

log = logging.getLogger(__name__)

TRANSIENT = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError,
             sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError)

#: Field names a dead letter adds; an original field of the same name is kept as original_<name>.
_DLQ_FIELDS = ("reason", "detail", "source_id")

# Raise KEYS[1] to ARGV[1] if larger (decimal strings: compares beyond 2**53 exactly).
LAMPORT_MAX_LUA = """
local cur = redis.call('GET', KEYS[1])
local new = ARGV[1]
if (not cur) or (#new > #cur) or (#new == #cur and new > cur) then
  redis.call('SET', KEYS[1], new)
  return new
end
return cur
"""


def dead_letter_fields(sid: str, fields, reason: str, detail: str) -> dict:
    """The dead-letter entry: every original field (renamed only on a clash) + why."""
    out: dict = {}
    for k, v in (fields or {}).items():
        name = k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)
        if name in _DLQ_FIELDS or name.startswith("original_"):
            name = "original_" + name
        out[name] = v
    out["reason"] = reason
    out["detail"] = detail[:500]
    out["source_id"] = sid
    return out


@dataclass(slots=True)
class StoreOutcome:
    #: Event ids this commit inserted (the others were already stored: duplicates).
    inserted: set[str] = field(default_factory=set)
    recognised: int = 0
    unknown: int = 0
    alerts: int = 0
    #: Ends of intruder alerts now known (cache them: dedup without a query).
    alert_ends: list[datetime] = field(default_factory=list)
    #: Events the store refused on their own (become dead letters).
    rejected: list[DeadLetter] = field(default_factory=list)


def _rows(accepted: list[Accepted], threshold: float, received: datetime) -> list[tuple]:
    rows = []  # repo.SIGHTING_COLUMNS order
    for a in accepted:
        ev = a.event
        p = ev.payload
        rows.append((
            p.event_id, a.sid, p.node_id, a.person_id, a.recognised, a.score, threshold,
            p.model, p.lamport, ev.node_time, p.local_time, p.timezone, p.timezone_offset,
            p.drift_offset_ms, ev.corrected_at, p.track_id, p.box, p.det_confidence,
            (p.quality.brightness, p.quality.blur), received))
    return rows


class Store:
    def __init__(self, engine: Engine, *, tz: ZoneInfo, cooldown: timedelta,
                 intruder_count: int, intruder_window_s: float, notify: bool = True) -> None:
        self.engine = engine
        self.tz = tz
        self.cooldown = cooldown
        self.intruder_count = intruder_count
        self.intruder_window_s = intruder_window_s
        self.notify = notify

    def commit(self, plan: BatchPlan, recent_alerts: list[datetime], *,
               split: bool = True) -> StoreOutcome:
        """Store the plan's accepted events.  ``split``: isolate any the store refuses
        (dead letters in ``rejected``); else a refusal is raised."""
        out = StoreOutcome()
        if plan.accepted:
            if split:
                self._commit_split(plan.accepted, plan.threshold, recent_alerts, out)
            else:
                self._commit(plan.accepted, plan.threshold, recent_alerts, out)
        return out

    def _commit_split(self, accepted: list[Accepted], threshold: float,
                      recent_alerts: list[datetime], out: StoreOutcome) -> None:
        try:
            self._commit(accepted, threshold, [*recent_alerts, *out.alert_ends], out)
        except TRANSIENT:
            raise
        except Exception as e:  # find the entry the store refuses
            if len(accepted) == 1:
                a = accepted[0]
                detail = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                log.error("store refused event %s (entry %s): %s", a.event.payload.event_id,
                          a.sid, detail[:300])
                out.rejected.append(DeadLetter(a.sid, _entry_fields(a), STORE_REJECTED,
                                               detail))
                return
            half = len(accepted) // 2
            log.warning("store refused a batch of %d (%s): splitting it", len(accepted),
                        type(e).__name__)
            self._commit_split(accepted[:half], threshold, recent_alerts, out)
            self._commit_split(accepted[half:], threshold, recent_alerts, out)

    def _commit(self, accepted: list[Accepted], threshold: float,
                recent_alerts: list[datetime], out: StoreOutcome) -> None:
        received = datetime.now(UTC)
        rows = _rows(accepted, threshold, received)
        seen: list[Seen] = []
        unknowns: list[tuple[datetime, str]] = []
        new_alerts: list[datetime] = []
        alerts = 0
        presences: list[dict] = []  # notification outbox rows, one per stored event
        with self.engine.begin() as conn:
            inserted = repo.insert_sightings(conn, rows)
            for a in accepted:
                p = a.event.payload
                if p.event_id not in inserted:
                    continue
                if a.recognised:
                    seen.append(Seen(a.person_id, a.attendance_at, p.lamport, p.node_id))
                else:
                    unknowns.append((a.event.corrected_at, p.node_id))
                if self.notify:
                    presences.append(notify_outbox.presence_row(
                        event_id=p.event_id, node_id=p.node_id, track_id=p.track_id,
                        person_id=a.person_id if a.recognised else None, score=a.score,
                        at=a.event.corrected_at))
            repo.upsert_attendance(conn, plan_attendance(seen, self.tz, self.cooldown))
            notify_outbox.presences_stored(conn, presences)
            if unknowns:
                new_alerts, alerts = repo.raise_intruder_alerts(
                    conn, unknowns, count=self.intruder_count,
                    window_s=self.intruder_window_s, recent_alerts=recent_alerts)
        # Only after the commit.
        out.inserted |= inserted
        out.recognised += len(seen)
        out.unknown += len(unknowns)
        out.alerts += alerts
        out.alert_ends.extend(new_alerts)


def _entry_fields(a: Accepted) -> dict:
    """The stream entry of an accepted event, rebuilt (for its dead letter)."""
    ev = a.event
    return wire.encode(ev.payload, ev.token, ev.embedding)


@dataclass(slots=True)
class AckOutcome:
    dead_letters_evicted: int = 0


def acknowledge(client: redis.Redis, plan: BatchPlan, outcome: StoreOutcome, *,
                dead_letter_maxlen: int) -> AckOutcome:
    """One MULTI: dead letters, XACK of the whole batch, results, Lamport max, statistics."""
    dead = [*plan.dead, *outcome.rejected]
    pipe = client.pipeline(transaction=True)
    if dead:
        pipe.xlen(keys.DEAD_LETTER_STREAM)
        for d in dead:
            pipe.xadd(keys.DEAD_LETTER_STREAM, dead_letter_fields(d.sid, d.fields, d.reason,
                                                                  d.detail),
                      maxlen=dead_letter_maxlen, approximate=False)
        pipe.xlen(keys.DEAD_LETTER_STREAM)
    if plan.ack_ids:
        pipe.xack(keys.EVENTS_STREAM, keys.WORKER_GROUP, *plan.ack_ids)
    channels: dict[str, str] = {}
    rejected = {d.sid for d in outcome.rejected}
    for a in plan.accepted:
        if a.sid in rejected:
            continue
        p = a.event.payload
        channel = channels.get(p.node_id)
        if channel is None:
            channel = channels[p.node_id] = keys.results_channel(p.node_id)
        pipe.publish(channel, wire.result_json(p.event_id, p.track_id, a.recognised))
    if plan.lamport_max is not None:
        pipe.eval(LAMPORT_MAX_LUA, 1, keys.LAMPORT_MAX, str(plan.lamport_max))
    stored = len(outcome.inserted)
    if stored:
        scores = np.asarray([a.score for a in plan.accepted
                             if a.event.payload.event_id in outcome.inserted], np.float32)
        for t, n in zip(THRESHOLD_GRID, threshold_counts(scores), strict=True):
            if n:
                pipe.hincrby(keys.THRESHOLD_GRID, f"{t:.2f}", n)
        pipe.hincrby(keys.THRESHOLD_GRID, "total", stored)
    res = pipe.execute()
    ack = AckOutcome()
    if dead:
        before, after = res[0], res[len(dead) + 1]
        ack.dead_letters_evicted = max(0, before + len(dead) - after)
    return ack
