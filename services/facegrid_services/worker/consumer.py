"""The classify worker's loop: read a batch, check, match, commit, then acknowledge.

Delivery guarantees
-------------------
* Entries are read with ``XREADGROUP`` in batches (``COUNT batch_size``, ``BLOCK
  block_ms``) in the group ``keys.WORKER_GROUP``; any number of replicas share
  the stream.
* A batch is stored in ONE database transaction; only after its commit are the
  entries acknowledged, in one Redis ``MULTI`` together with the dead letters,
  per-event results, Lamport maximum and threshold statistics.  A crash at any
  point leaves the entries pending; they are processed again and the store
  ignores event ids it already holds, so every event lands exactly once.
* After any failure, and at start, the worker first re-reads its own pending
  entries (id ``0``); pending entries of a dead consumer are taken over with
  ``XAUTOCLAIM`` once idle for ``claim_idle_ms``.
* Redis or database failures are retried with capped exponential backoff:
  nothing is dropped, nothing is acknowledged before it is stored.
* Entries failing a check go to ``keys.DEAD_LETTER_STREAM`` with their original
  fields plus ``reason``, ``detail`` and ``source_id``; the worker carries on.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import redis
from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc

from facegrid import keys, wire
from facegrid.tokens import TokenVerifier
from facegrid_services.attendance import Seen, attendance_time, plan_attendance
from facegrid_services.notify import outbox as notify_outbox
from facegrid_services.store import db, repo

from . import metrics
from .checks import STORE_REJECTED, EntryChecker, Rejected
from .gallery import THRESHOLD_GRID, Gallery, threshold_counts
from .revocation import RevokedSet
from .settings import WorkerSettings

log = logging.getLogger(__name__)

#: Field names a dead letter adds; an original field of the same name is kept as original_<name>.
_DLQ_FIELDS = ("reason", "detail", "source_id")
_ALERT_CACHE = 256

# Raise KEYS[1] to ARGV[1] if larger (decimal strings: compares beyond 2**53 exactly).
_LAMPORT_MAX_LUA = """
local cur = redis.call('GET', KEYS[1])
local new = ARGV[1]
if (not cur) or (#new > #cur) or (#new == #cur and new > cur) then
  redis.call('SET', KEYS[1], new)
  return new
end
return cur
"""

TRANSIENT = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError,
             sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError)


class GalleryModelError(RuntimeError):
    """The gallery holds several models and FACEGRID_MODEL does not say which: fatal."""


@dataclass(slots=True)
class BatchResult:
    entries: int = 0
    stored: int = 0
    duplicates: int = 0
    dead: int = 0
    recognised: int = 0
    unknown: int = 0
    alerts: int = 0


def _stage(name: str):
    return metrics.STAGE_SECONDS.labels(name).time()


def _stream_id_time(sid: str) -> float:
    try:
        return int(sid.split("-", 1)[0]) / 1000.0
    except ValueError:
        return time.time()


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


class Worker:
    def __init__(self, settings: WorkerSettings, *, redis_client: redis.Redis | None = None,
                 engine: Engine | None = None, verifier: TokenVerifier | None = None) -> None:
        self.settings = settings
        self.redis = redis_client or redis.Redis.from_url(
            settings.redis_url, socket_timeout=settings.block_ms / 1000 + 10,
            socket_connect_timeout=5, health_check_interval=30)
        self.engine = engine or db.make_engine(settings.database_url)
        self.sessions = db.session_factory(self.engine)
        self.revoked = RevokedSet()
        self.verifier = verifier or TokenVerifier.from_pem(
            settings.public_key_file, audience=settings.token_audience,
            leeway=settings.token_leeway_s, is_revoked=self.revoked.__contains__)
        self.checker = EntryChecker(self.verifier, settings.model)
        self.tz = ZoneInfo(settings.site_timezone)
        self.gallery = Gallery.empty(settings.model)
        self._gallery_loaded = False
        self.suggested_threshold: float | None = None
        self._pubsub: redis.client.PubSub | None = None
        self._started = False
        self._read_pending = True
        self._last_reclaim = self._last_stats = self._last_revocations = 0.0
        #: Ends of recent intruder alerts (dedup without a query per unknown sighting).
        self._alert_ends: deque[datetime] = deque(maxlen=_ALERT_CACHE)
        self._lamport_max = -1
        self._cooldown = timedelta(seconds=settings.cooldown_s)
        self._clock_tolerance = timedelta(seconds=settings.clock_tolerance_s)
        metrics.THRESHOLD.set(settings.threshold)

    # --- start-up and background duties -----------------------------------------

    def start(self) -> None:
        """(Re)connect: group, gallery, revocations, subscriptions.  Safe to repeat."""
        self._close_pubsub()
        try:
            self.redis.xgroup_create(keys.EVENTS_STREAM, keys.WORKER_GROUP, id="0",
                                     mkstream=True)
            log.info("created consumer group %s on %s", keys.WORKER_GROUP, keys.EVENTS_STREAM)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        # Subscribe before loading, so a change between load and subscribe is not missed.
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(keys.GALLERY_CHANNEL, keys.REVOKED_CHANNEL)
        self._pubsub = pubsub
        self.reload_gallery()
        self.refresh_revocations()
        self._read_pending = True
        self._started = True

    def _close_pubsub(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(redis.RedisError):
                self._pubsub.close()
            self._pubsub = None

    def _choose_model(self, models: dict[str, int]) -> str | None:
        """The model to match: the pinned one, else the gallery's (None: empty gallery)."""
        if self.settings.model is not None:
            return self.settings.model
        if len(models) <= 1:
            return next(iter(models), None)
        listing = ", ".join(f"{m} ({n} embeddings)" for m, n in sorted(models.items()))
        current = self.gallery.model
        if current in models:
            log.error("the gallery holds embeddings of several models: %s; still matching %s."
                      " Set FACEGRID_MODEL to the model the nodes send", listing, current)
            return current
        raise GalleryModelError(
            f"the gallery holds embeddings of several models: {listing}. Set FACEGRID_MODEL "
            "(or --model) to the model id the nodes send (their FACEGRID_WEIGHTS' model)")

    def reload_gallery(self) -> None:
        with self.sessions() as s:
            model = self._choose_model(repo.gallery_models(s))
            rows = repo.gallery_rows(s, model) if model is not None else []
        full = Gallery.from_rows(model, rows)
        suggested = full.suggest_threshold(self.settings.target_far)
        gallery = full.templates_only()
        if model != self.gallery.model or not self._gallery_loaded:
            if model is None:
                log.info("gallery empty and FACEGRID_MODEL unset: accepting events of any "
                         "model, all unknown, until people are enrolled")
            else:
                log.info("matching model %s (%s)", model, "FACEGRID_MODEL"
                         if self.settings.model is not None else "the gallery's embeddings")
        # One reference swap each: a batch uses one snapshot.
        self.gallery = gallery
        self.checker.model = model
        self._gallery_loaded = True
        self.suggested_threshold = suggested
        metrics.GALLERY_EMBEDDINGS.set(gallery.size)
        metrics.GALLERY_PEOPLE.set(gallery.people)
        metrics.GALLERY_RELOADS.inc()
        if suggested is not None:
            metrics.THRESHOLD_SUGGESTED.set(suggested)
            self.redis.hset(keys.THRESHOLD_GRID, "suggested", f"{suggested:.4f}")
        log.info("gallery %s: %d embeddings of %d people (templates); threshold %.3f "
                 "(suggested %s)", gallery.model or "(any model)", gallery.size, gallery.people,
                 self.settings.threshold, "n/a" if suggested is None else f"{suggested:.3f}")

    def refresh_revocations(self) -> None:
        with self.sessions() as s:
            jtis = set(repo.revoked_jtis(s))
        jtis.update(m.decode() for m in self.redis.smembers(keys.REVOKED_SET))
        self.revoked.replace(jtis)
        self._last_revocations = time.monotonic()

    def poll_notifications(self) -> None:
        """Apply gallery changes and revocations announced since the last batch."""
        if self._pubsub is None:
            return
        reload = False
        while True:
            msg = self._pubsub.get_message(timeout=0)
            if msg is None:
                break
            channel = msg["channel"].decode()
            if channel == keys.REVOKED_CHANNEL:
                self.revoked.add([msg["data"]])
                log.info("token %s revoked", msg["data"].decode(errors="replace"))
            elif channel == keys.GALLERY_CHANNEL:
                reload = True
        if reload:
            self.reload_gallery()

    def reclaim(self) -> int:
        """Take over entries a dead consumer left pending longer than claim_idle_ms."""
        self._last_reclaim = time.monotonic()
        claimed, cursor, rounds = 0, "0-0", 0
        while rounds < 20:
            rounds += 1
            # Raw command: redis-py drops the cursor when parsing JUSTID replies.
            res = self.redis.execute_command(
                "XAUTOCLAIM", keys.EVENTS_STREAM, keys.WORKER_GROUP, self.settings.consumer,
                self.settings.claim_idle_ms, cursor, "COUNT", self.settings.batch_size, "JUSTID")
            cursor, ids = res[0], res[1]
            deleted = res[2] if len(res) > 2 else []
            if deleted:  # trimmed from the stream while pending: nothing left to process
                self.redis.xack(keys.EVENTS_STREAM, keys.WORKER_GROUP, *deleted)
            claimed += len(ids)
            if cursor in (b"0-0", "0-0"):
                break
        if claimed:
            log.info("reclaimed %d pending entries of dead consumers", claimed)
            metrics.RECLAIMED.inc(claimed)
            self._read_pending = True
        return claimed

    def update_stream_stats(self) -> None:
        self._last_stats = time.monotonic()
        for g in self.redis.xinfo_groups(keys.EVENTS_STREAM):
            name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
            if name == keys.WORKER_GROUP:
                metrics.PENDING.set(g.get("pending") or 0)
                lag = g.get("lag")
                if lag is not None:
                    metrics.BACKLOG.set(lag)

    # --- the loop ------------------------------------------------------------------

    def read(self) -> list[tuple[str, dict | None]]:
        s = self.settings
        if self._read_pending:
            resp = self.redis.xreadgroup(keys.WORKER_GROUP, s.consumer, {keys.EVENTS_STREAM: "0"},
                                         count=s.batch_size)
            entries = resp[0][1] if resp else []
            if entries:
                return [(sid.decode(), f) for sid, f in entries]
            self._read_pending = False
        resp = self.redis.xreadgroup(keys.WORKER_GROUP, s.consumer, {keys.EVENTS_STREAM: ">"},
                                     count=s.batch_size, block=s.block_ms)
        entries = resp[0][1] if resp else []
        return [(sid.decode(), f) for sid, f in entries]

    def step(self) -> BatchResult:
        """One iteration: duties that are due, then one batch (possibly empty)."""
        if not self._started:
            self.start()
        now = time.monotonic()
        self.poll_notifications()
        s = self.settings
        if now - self._last_revocations >= s.revocation_refresh_s:
            self.refresh_revocations()
        if now - self._last_reclaim >= s.reclaim_interval_s:
            self.reclaim()
        if now - self._last_stats >= s.stats_interval_s:
            self.update_stream_stats()
        entries = self.read()
        if not entries:
            return BatchResult()
        return self.process(entries)

    def run(self, stop: threading.Event) -> None:
        """Process until ``stop`` is set; the current batch is always finished first."""
        backoff = 0.1
        integrity_failures = 0
        while not stop.is_set():
            try:
                self.step()
                backoff, integrity_failures = 0.1, 0
                continue
            except GalleryModelError as e:
                log.error("cannot choose a model: %s", e)
                self._close_pubsub()
                raise
            except TRANSIENT as e:
                stage = "redis" if isinstance(e, redis.RedisError) else "database"
                log.warning("%s unavailable (%s); retrying in %.1f s", stage,
                            str(e).splitlines()[0][:200], backoff)
            except redis.ResponseError as e:
                stage = "redis"
                log.warning("redis refused a command (%s); resynchronising", e)
            except sa_exc.IntegrityError as e:
                # e.g. a person erased after our gallery snapshot: reload and retry.
                stage = "integrity"
                integrity_failures += 1
                log.warning("store refused the batch (%s); reloading the gallery",
                            str(e).splitlines()[0][:200])
                if integrity_failures >= 3:
                    self._dead_letter_pending(str(e).splitlines()[0])
                    integrity_failures = 0
            except Exception:
                stage = "internal"
                log.exception("unexpected error; retrying in %.1f s", backoff)
            metrics.ERRORS.labels(stage).inc()
            self._started = False  # full resync (group, gallery, revocations, pending)
            stop.wait(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, self.settings.max_backoff_s)
        self._close_pubsub()
        log.info("worker %s stopped", self.settings.consumer)

    def _dead_letter_pending(self, detail: str) -> None:
        """Last resort for valid entries the store keeps refusing: park them, lose nothing."""
        resp = self.redis.xreadgroup(keys.WORKER_GROUP, self.settings.consumer,
                                     {keys.EVENTS_STREAM: "0"}, count=self.settings.batch_size)
        entries = resp[0][1] if resp else []
        pipe = self.redis.pipeline(transaction=True)
        for sid, fields in entries:
            sid = sid.decode()
            pipe.xadd(keys.DEAD_LETTER_STREAM,
                      dead_letter_fields(sid, fields, STORE_REJECTED, detail))
            pipe.xack(keys.EVENTS_STREAM, keys.WORKER_GROUP, sid)
        pipe.execute()
        metrics.DEAD_LETTERS.labels(STORE_REJECTED).inc(len(entries))
        log.error("dead-lettered %d entries the store refused three times", len(entries))

    # --- one batch -----------------------------------------------------------------

    def process(self, entries: list[tuple[str, dict | None]]) -> BatchResult:
        result = BatchResult(entries=len(entries))
        metrics.CONSUMED.inc(len(entries))
        metrics.BATCH_SIZE.observe(len(entries))
        ids = [sid for sid, _ in entries]
        dead: list[tuple[str, dict, str, str]] = []
        events: list[tuple[str, wire.Event]] = []
        seen_ids: set[str] = set()
        with _stage("check"):
            for sid, fields in entries:
                if not fields:  # deleted from the stream while pending
                    continue
                try:
                    ev = self.checker.check(fields)
                except Rejected as r:
                    dead.append((sid, fields, r.reason, r.detail))
                    continue
                if ev.payload.event_id in seen_ids:
                    result.duplicates += 1
                    continue
                seen_ids.add(ev.payload.event_id)
                events.append((sid, ev))

        gallery, threshold = self.gallery, self.settings.threshold
        with _stage("match"):
            if events:
                m = gallery.match(np.stack([ev.embedding for _, ev in events]), threshold)
            else:
                m = gallery.match(np.zeros((0, wire.EMBEDDING_DIM), np.float32), threshold)
            persons, scores, recognised = (m.person_ids.tolist(), m.scores.tolist(),
                                           m.recognised.tolist())

        received = datetime.now(UTC)
        rows = []  # repo.SIGHTING_COLUMNS order
        for (sid, ev), person, score, ok in zip(events, persons, scores, recognised,
                                                strict=True):
            p = ev.payload
            rows.append((
                p.event_id, sid, p.node_id, person if ok else None, ok, score, threshold,
                p.model, p.lamport, ev.node_time, p.local_time, p.timezone, p.timezone_offset,
                p.drift_offset_ms, ev.corrected_at, p.track_id, p.box, p.det_confidence,
                (p.quality.brightness, p.quality.blur), received))

        new_alerts: list[datetime] = []
        inserted: set[str] = set()
        seen: list[Seen] = []
        unknowns: list[tuple[datetime, str]] = []
        presences: list[dict] = []  # notification outbox rows (one per stored event)
        with _stage("store"):
            if rows:
                with self.engine.begin() as conn:
                    inserted = repo.insert_sightings(conn, rows)
                    for (_sid, ev), person, ok, score in zip(events, persons, recognised, scores,
                                                             strict=True):
                        p = ev.payload
                        if p.event_id not in inserted:
                            continue
                        if ok:
                            t, _suspect = attendance_time(ev.corrected_at, received,
                                                          self._clock_tolerance)
                            seen.append(Seen(person, t, p.lamport, p.node_id))
                        else:
                            unknowns.append((ev.corrected_at, p.node_id))
                        presences.append(notify_outbox.presence_row(
                            event_id=p.event_id, node_id=p.node_id, track_id=p.track_id,
                            person_id=person if ok else None, score=score,
                            at=ev.corrected_at))
                    repo.upsert_attendance(conn, plan_attendance(seen, self.tz, self._cooldown))
                    notify_outbox.presences_stored(conn, presences)
                    if unknowns:
                        new_alerts, result.alerts = repo.raise_intruder_alerts(
                            conn, unknowns, count=self.settings.intruder_count,
                            window_s=self.settings.intruder_window_s,
                            recent_alerts=self._alert_ends)
                result.stored = len(inserted)
                result.duplicates += len(rows) - len(inserted)
                result.recognised = len(seen)
                result.unknown = len(unknowns)
        self._alert_ends.extend(new_alerts)  # only after the commit

        with _stage("ack"):
            pipe = self.redis.pipeline(transaction=True)
            for sid, fields, reason, detail in dead:
                pipe.xadd(keys.DEAD_LETTER_STREAM, dead_letter_fields(sid, fields, reason, detail))
            pipe.xack(keys.EVENTS_STREAM, keys.WORKER_GROUP, *ids)
            channels: dict[str, str] = {}
            for (_sid, ev), ok in zip(events, recognised, strict=True):
                p = ev.payload
                channel = channels.get(p.node_id)
                if channel is None:
                    channel = channels[p.node_id] = keys.results_channel(p.node_id)
                # The JSON json.dumps(separators=(",", ":")) would write: event_id is a
                # checked UUID and track_id an int, so nothing needs escaping.
                pipe.publish(channel, f'{{"event_id":"{p.event_id}","track_id":{p.track_id:d},'
                                      f'"recognised":{"true" if ok else "false"}}}')
            lamport = max((ev.payload.lamport for _, ev in events), default=None)
            if lamport is not None:
                pipe.eval(_LAMPORT_MAX_LUA, 1, keys.LAMPORT_MAX, str(lamport))
            if result.stored:
                stored_scores = np.asarray(
                    [r[5] for r in rows if r[0] in inserted], np.float32)
                for t, n in zip(THRESHOLD_GRID, threshold_counts(stored_scores), strict=True):
                    if n:
                        pipe.hincrby(keys.THRESHOLD_GRID, f"{t:.2f}", n)
                pipe.hincrby(keys.THRESHOLD_GRID, "total", result.stored)
            pipe.execute()

        done = time.time()
        result.dead = len(dead)
        metrics.ACKED.inc(len(ids))
        for _, _, reason, _ in dead:
            metrics.DEAD_LETTERS.labels(reason).inc()
        if result.duplicates:
            metrics.DUPLICATES.inc(result.duplicates)
        if result.recognised:
            metrics.SIGHTINGS.labels("recognised").inc(result.recognised)
        if result.unknown:
            metrics.SIGHTINGS.labels("unknown").inc(result.unknown)
        if result.alerts:
            metrics.ALERTS.inc(result.alerts)
        if events:
            metrics.UNKNOWN_RATIO.set(1.0 - float(m.recognised.mean()))
            for score in scores:
                metrics.MATCH_SCORE.observe(score)
            for sid, _ in events:
                metrics.CLASSIFY_LATENCY.observe(max(0.0, done - _stream_id_time(sid)))
        if lamport is not None and lamport > self._lamport_max:
            self._lamport_max = lamport
            metrics.LAMPORT_MAX.set(lamport)
        return result
