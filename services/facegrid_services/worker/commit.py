"""Carrying out a :class:`~.plan.BatchPlan`: one store transaction, then one Redis MULTI.

:class:`Store` writes the accepted events in ONE transaction: each event's
presence (``(node, track)``) is locked and decided on the track's aggregate
(:mod:`.presence`), sightings are inserted (insert-ignore by ``event_id``) pointing
at their presence with the presence's decision, then attendance (upsert),
repeat-stranger links and intruder alerts (distinct unknown presences).  A transient database
failure is raised (the loop retries the whole batch; nothing is acknowledged).
Any other failure is one entry's fault: the batch is split in halves until the
entry the store refuses is alone, and only that one becomes a dead letter
(``store_rejected``); the store is idempotent, so halves committed before are
simply stored.

:func:`acknowledge` then sends, in one ``MULTI``: the dead letters (the dead-letter
stream is capped at ``dead_letter_maxlen``; how many were evicted is returned),
``XACK`` of every entry of the batch, one :class:`facegrid.wire.Result` per event
to its node, the fleet's Lamport maximum and the threshold statistics.

A full Redis (``maxmemory`` with ``noeviction``) refuses that MULTI (``XADD``,
``HINCRBY`` need memory); the worker first frees what it can (trims acknowledged
entries, evicts dead letters) and tries again; if Redis is still full,
:func:`acknowledge_when_full` acknowledges the batch (outside MULTI, which a full
Redis refuses whole) and sends the results without
the statistics, and the batch's dead letters, which cannot be written, are dropped
loudly (logged without token or embedding, counted, alerted).  Otherwise the
worker could never acknowledge, so never trim, and a full Redis would stay full.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

import numpy as np
import redis
from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc

from facegrid import keys, wire
from facegrid_services.attendance import Seen, plan_attendance
from facegrid_services.notify import outbox as notify_outbox
from facegrid_services.store import repo

from . import presence
from .checks import STORE_REJECTED
from .gallery import THRESHOLD_GRID, Gallery, threshold_counts
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


def _track_of(p: wire.EventPayload) -> tuple[float | None, int | None]:
    """(node aggregate weight, frames) of a v2 event; (None, None) for v1."""
    if p.track is None:
        return None, None
    return p.track.weight, p.track.frames


class PresenceRules(Protocol):
    """What the store needs to decide presences (the :class:`~.consumer.Worker`)."""

    unknown_min_frames: int
    threshold: float

    def threshold_for(self, node_id: str) -> float: ...

    def rule_for(self, node_id: str) -> presence.PresenceRule: ...


class Store:
    def __init__(self, engine: Engine, *, tz: ZoneInfo, cooldown: timedelta,
                 intruder_count: int, intruder_window_s: float,
                 presences: PresenceRules, notify: bool = True) -> None:
        self.engine = engine
        self.presences = presences
        #: Queue presence events for the notifier (notify/outbox.py) in this transaction.
        self.notify = notify
        self.tz = tz
        self.cooldown = cooldown
        self.intruder_count = intruder_count
        self.intruder_window_s = intruder_window_s

    def commit(self, plan: BatchPlan, recent_alerts: list[datetime], *,
               split: bool = True) -> StoreOutcome:
        """Store the plan's accepted events.  ``split``: isolate any the store refuses
        (dead letters in ``rejected``); else a refusal is raised."""
        out = StoreOutcome()
        self._gallery = plan.gallery if plan.gallery is not None else Gallery.empty(None)
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
        rules = self.presences
        gallery = self._gallery
        received = datetime.now(UTC)
        seen: list[Seen] = []
        new_alerts: list[datetime] = []
        alerts = 0
        with self.engine.begin() as conn:
            # A redelivered event must not count twice in its presence.
            known = repo.known_event_ids(conn, [a.event.payload.event_id for a in accepted])
            fresh = [a for a in accepted if a.event.payload.event_id not in known]
            first: dict[presence.Key, datetime] = {}
            for a in fresh:
                p = a.event.payload
                key = (p.node_id, p.track_id)
                first[key] = min(first.get(key, a.event.corrected_at), a.event.corrected_at)
            tracked = repo.lock_presences(conn, first, model=gallery.model or "",
                                          threshold=rules.threshold, received_at=received)
            before = {k: (t.state.status, t.state.person_id) for k, t in tracked.items()}
            outcomes, confirmed = presence.plan(
                [presence.Seen((a.event.payload.node_id, a.event.payload.track_id),
                               a.event.corrected_at, a.event.embedding,
                               *_track_of(a.event.payload)) for a in fresh],
                tracked, gallery.templates, gallery.person_ids, rules.rule_for,
                min_frames=rules.unknown_min_frames, project=gallery.project)
            rows = []  # repo.SIGHTING_COLUMNS order
            decided: list[tuple[Accepted, presence.Outcome]] = []
            for a, o in zip(fresh, outcomes, strict=True):
                ev, p = a.event, a.event.payload
                ok = o.status == presence.RECOGNISED
                decided.append((a, o))
                rows.append((
                    p.event_id, a.sid, p.node_id, o.person_id if ok else None, ok, o.score,
                    rules.threshold_for(p.node_id), p.model, p.lamport, ev.node_time,
                    p.local_time, p.timezone, p.timezone_offset, p.drift_offset_ms,
                    ev.corrected_at, p.track_id, p.box, p.det_confidence,
                    (p.quality.brightness, p.quality.blur), received, o.presence_id))
            inserted = repo.insert_sightings(conn, rows)
            repo.save_presences(conn, tracked, threshold_of=rules.threshold_for,
                                confirmed_now={tracked[k].id: at for k, at in confirmed},
                                received_at=received)
            unknown = 0
            for a, o in decided:
                p = a.event.payload
                if p.event_id not in inserted:
                    continue
                if o.status == presence.RECOGNISED:
                    seen.append(Seen(o.person_id, a.attendance_at, p.lamport, p.node_id))
                else:
                    unknown += 1
            repo.upsert_attendance(conn, plan_attendance(seen, self.tz, self.cooldown))
            if self.notify:
                notify_outbox.presences_stored(conn, _presence_events(
                    decided, inserted, before, tracked, confirmed))
            if confirmed and gallery.model is not None:
                repo.link_strangers(
                    conn, [(tracked[k].id, gallery.project(tracked[k].aggregate), at, k[0])
                           for k, at in confirmed if tracked[k].aggregate is not None],
                    model=gallery.model, threshold=rules.threshold, received_at=received)
            if confirmed:
                new_alerts, alerts = repo.raise_presence_alerts(
                    conn, [(at, k[0]) for k, at in confirmed], count=self.intruder_count,
                    window_s=self.intruder_window_s, recent_alerts=recent_alerts)
        # Only after the commit: the events' results are their presence's decision.
        for a, o in decided:
            a.recognised = o.status == presence.RECOGNISED
            a.person_id = o.person_id if a.recognised else None
            a.score = o.score
        out.inserted |= inserted
        out.recognised += len(seen)
        out.unknown += unknown
        out.alerts += alerts
        out.alert_ends.extend(new_alerts)


def _entry_fields(a: Accepted) -> dict:
    """The stream entry of an accepted event, rebuilt (for its dead letter)."""
    ev = a.event
    return wire.encode(ev.payload, ev.token, ev.embedding)


@dataclass(slots=True)
class AckOutcome:
    dead_letters_evicted: int = 0
    #: Dead letters Redis was too full to take (only from acknowledge_when_full).
    dead_letters_dropped: list[DeadLetter] = field(default_factory=list)


def is_oom(e: BaseException) -> bool:
    """Whether ``e`` is Redis refusing a command for want of memory (maxmemory reached)."""
    return isinstance(e, redis.exceptions.OutOfMemoryError) or (
        isinstance(e, redis.ResponseError) and "maxmemory" in str(e))


def acknowledge_when_full(client: redis.Redis, plan: BatchPlan,
                          outcome: StoreOutcome) -> AckOutcome:
    """Redis is full: only what needs no memory — ``XACK`` of the whole batch (one
    command, atomic) and the results; the dead letters are returned as dropped.  No
    MULTI: a full Redis refuses every command queued in one."""
    pipe = client.pipeline(transaction=False)
    if plan.ack_ids:
        pipe.xack(keys.EVENTS_STREAM, keys.WORKER_GROUP, *plan.ack_ids)
    rejected = {d.sid for d in outcome.rejected}
    for a in plan.accepted:
        if a.sid not in rejected:
            p = a.event.payload
            pipe.publish(keys.results_channel(p.node_id),
                         wire.result_json(p.event_id, p.track_id, a.recognised))
    pipe.execute()
    return AckOutcome(dead_letters_dropped=[*plan.dead, *outcome.rejected])


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


def _presence_events(decided, inserted: set[str], before: dict, tracked: dict,
                     confirmed) -> list[dict]:
    """Outbox rows: a presence that became recognised (or changed person) in this batch,
    and each presence that became a confirmed stranger — one event per presence."""
    rows: list[dict] = []
    announced: set = set()
    for a, o in decided:
        p = a.event.payload
        key = (p.node_id, p.track_id)
        if p.event_id not in inserted or key in announced or o.status != presence.RECOGNISED:
            continue
        if before.get(key) == (presence.RECOGNISED, o.person_id):
            continue  # already announced by an earlier batch
        state = tracked[key].state
        if state.status != presence.RECOGNISED or state.person_id != o.person_id:
            continue  # only the presence's decision at the end of the batch
        announced.add(key)
        rows.append(notify_outbox.presence_row(
            presence_id=o.presence_id, node_id=p.node_id, track_id=p.track_id,
            person_id=o.person_id, score=o.score, at=a.event.corrected_at))
    for key, at in confirmed:
        t = tracked[key]
        rows.append(notify_outbox.presence_row(
            presence_id=t.id, node_id=key[0], track_id=key[1], person_id=None,
            score=t.state.best_score, at=at))
    return rows
