"""The classify worker's loop: read a batch, plan it, commit it, then acknowledge it.

The work is split in three (each its own module): :mod:`.plan` (pure: checks,
match, decisions → a :class:`~.plan.BatchPlan`), :mod:`.commit` (one store
transaction, then one Redis MULTI) and :mod:`.duties` (take-over, stream figures,
trimming, clean-up).  :class:`Worker` only sequences them.

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
* A batch that fails on a Redis or database outage is kept in memory and retried
  with capped exponential backoff: nothing is dropped, nothing is acknowledged
  before it is stored.  At start the worker first re-reads its own pending
  entries (id ``0``); pending entries of a dead consumer are taken over with
  ``XAUTOCLAIM`` once idle for ``claim_idle_ms``.
* Whatever one entry does (a failed check, any exception, a refusal by the store)
  it becomes a dead letter in ``keys.DEAD_LETTER_STREAM`` with its original fields
  plus ``reason``, ``detail`` and ``source_id``, and the rest of the batch goes on.
  An entry delivered more than ``max_deliveries`` times (it crashed or hung
  workers) is dead-lettered as ``poison`` without being looked at again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import redis
from sqlalchemy import Engine, func, select

from facegrid import keys
from facegrid.errors import FacegridError
from facegrid.tokens import TokenVerifier
from facegrid_services import dead_letters
from facegrid_services.store import db, repo
from facegrid_services.store.models import Sighting

from . import metrics, presence
from .calibration import calibrate
from .checks import EntryChecker
from .commit import (
    TRANSIENT,
    AckOutcome,
    Store,
    StoreOutcome,
    acknowledge,
    acknowledge_when_full,
    dead_letter_fields,
    is_oom,
)
from .duties import StreamDuties
from .gallery import Gallery
from .plan import BatchPlan, Entry, Planner, stream_id_seconds
from .revocation import RevokedCache
from .settings import WorkerSettings

log = logging.getLogger(__name__)

__all__ = ["TRANSIENT", "BatchResult", "GalleryModelError", "Worker", "dead_letter_fields"]

_ALERT_CACHE = 256


class GalleryModelError(FacegridError, RuntimeError):
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


def _identity(fields) -> str:
    """Node and event id of an entry, for a log line (never its token or embedding)."""
    p = dead_letters.payload_of(fields or {})
    return f"node {str(p.get('node_id'))[:63]!r}, event {str(p.get('event_id'))[:36]!r}"


def _stage(name: str):
    return metrics.STAGE_SECONDS.labels(name).time()


class Worker:
    def __init__(self, settings: WorkerSettings, *, redis_client: redis.Redis | None = None,
                 engine: Engine | None = None, verifier: TokenVerifier | None = None) -> None:
        self.settings = settings
        self.redis = redis_client or redis.Redis.from_url(
            settings.redis_url, socket_timeout=settings.block_ms / 1000 + 10,
            socket_connect_timeout=5, health_check_interval=30)
        self.engine = engine or db.make_engine(settings.database_url)
        self.sessions = db.session_factory(self.engine)
        self.revoked = RevokedCache()
        self.verifier = verifier or TokenVerifier.from_pem(
            settings.public_key_file, audience=settings.token_audience,
            leeway=settings.token_leeway_s, is_revoked=self.revoked.__contains__,
            node_not_before=self.revoked.node_not_before)
        self.checker = EntryChecker(self.verifier, settings.model)
        self.calibration = calibrate(np.zeros(0), 0, target_far=settings.target_far,
                                     default=settings.default_threshold,
                                     pinned=settings.threshold)
        self._rules: dict[float, presence.PresenceRule] = {}
        self.planner = Planner(
            self.checker, threshold=self.calibration.threshold,
            clock_tolerance=timedelta(seconds=settings.clock_tolerance_s),
            max_event_age=timedelta(seconds=settings.max_event_age_s),
            max_deliveries=settings.max_deliveries, lamport_max_jump=settings.lamport_max_jump)
        self.store = Store(self.engine, tz=ZoneInfo(settings.site_timezone),
                           cooldown=timedelta(seconds=settings.cooldown_s),
                           intruder_count=settings.intruder_count,
                           intruder_window_s=settings.intruder_window_s,
                           presences=self, notify=settings.notify)
        self.duties = StreamDuties(self.redis)
        self.gallery = Gallery.empty(settings.model)
        self._gallery_loaded = False
        self.suggested_threshold: float | None = None
        self._pubsub: redis.client.PubSub | None = None
        self._started = False
        self._read_pending = True
        #: The batch being worked on: kept across failures until acknowledged.
        self._batch: list[Entry] | None = None
        #: Entries claimed from dead consumers, processed before new reads.
        self._claimed: list[Entry] = []
        #: Whether the last entry seen had a stream id in the future (see _watch_ids).
        self._ids_ahead = False
        self._last_reclaim = self._last_stats = self._last_revocations = 0.0
        self._last_trim = self._last_consumers = 0.0
        #: Ends of recent intruder alerts (dedup without a query per unknown sighting).
        self._alert_ends: deque[datetime] = deque(maxlen=_ALERT_CACHE)
        self._lamport_max = -1
        #: The fleet's Lamport maximum (Redis, else the store's); None until read.
        self.fleet_lamport: int | None = None
        #: time.monotonic() of the loop's last completed iteration (liveness).
        self.last_progress = time.monotonic()
        metrics.THRESHOLD.set(self.calibration.threshold)

    # --- presences (the Store asks; see worker/presence.py) -------------------------

    @property
    def unknown_min_frames(self) -> int:
        return self.settings.unknown_min_frames

    @property
    def threshold(self) -> float:
        """The worker's threshold in force (calibrated, default or pinned)."""
        return self.calibration.threshold

    def threshold_for(self, node_id: str) -> float:
        """The threshold in force at one camera (its override, else the worker's)."""
        return self.settings.camera_thresholds.get(node_id, self.calibration.threshold)

    def rule_for(self, node_id: str) -> presence.PresenceRule:
        t = self.threshold_for(node_id)
        rule = self._rules.get(t)
        if rule is None:
            s = self.settings
            rule = self._rules[t] = presence.PresenceRule(
                t, lock_margin=s.lock_margin, lead_margin=s.lead_margin,
                flip_margin=s.flip_margin, drop_margin=s.drop_margin)
        return rule

    # --- start-up and background duties -----------------------------------------

    def start(self) -> None:
        """(Re)connect: group, gallery, revocations, subscriptions.  Safe to repeat."""
        self._close_pubsub()
        try:
            self.redis.xgroup_create(keys.EVENTS_STREAM, keys.WORKER_GROUP, id="0",
                                     mkstream=True)
            log.info("created consumer group %s on %s", keys.WORKER_GROUP, keys.EVENTS_STREAM)
        except redis.ResponseError as e:
            # A full Redis refuses even an existing group's XGROUP CREATE: carry on if
            # the group is there (reading and acknowledging need no memory).
            if "BUSYGROUP" not in str(e) and not (is_oom(e) and self.duties.group_exists()):
                raise
        # Subscribe before loading, so a change between load and subscribe is not missed.
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(keys.GALLERY_CHANNEL, keys.REVOKED_CHANNEL)
        self._pubsub = pubsub
        self.reload_gallery()
        self.refresh_revocations()
        self.refresh_fleet_lamport()
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
        st = self.settings
        full = Gallery.from_rows(model, rows, centre_from=st.calibration_min_people)
        cal = calibrate(full.impostor_scores(), full.people, target_far=st.target_far,
                        default=st.default_threshold, min_people=st.calibration_min_people,
                        pinned=st.threshold)
        # The raw gallery quantile is still published as a suggestion when too few people
        # stand behind it to apply it.
        suggested = cal.estimate if cal.estimate is not None else full.suggest_threshold(
            st.target_far)
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
        self.calibration = cal
        self.planner.threshold = cal.threshold
        metrics.THRESHOLD.set(cal.threshold)
        try:
            self.redis.set(keys.CALIBRATION, json.dumps(
                {**cal.as_json(), "camera_thresholds": st.camera_thresholds}))
        except redis.ResponseError as e:
            if not is_oom(e):
                raise
            log.warning("Redis is full: the calibration is not published (the API shows it "
                        "once Redis has room again)")
        metrics.GALLERY_EMBEDDINGS.set(gallery.size)
        metrics.GALLERY_PEOPLE.set(gallery.people)
        metrics.GALLERY_RELOADS.inc()
        if suggested is not None:
            metrics.THRESHOLD_SUGGESTED.set(suggested)
            with contextlib.suppress(redis.ResponseError):  # only OOM: a statistic
                self.redis.hset(keys.THRESHOLD_GRID, "suggested", f"{suggested:.4f}")
        log.info("gallery %s: %d embeddings of %d people (templates); threshold %.3f (%s: %s)",
                 gallery.model or "(any model)", gallery.size, gallery.people, cal.threshold,
                 cal.source, cal.note)

    def refresh_revocations(self) -> None:
        """Full reload: revoked jtis and revoked nodes, from the database and Redis."""
        with self.sessions() as s:
            jtis = set(repo.revoked_jtis(s))
            nodes = repo.revoked_nodes(s)
        jtis.update(m.decode() for m in self.redis.smembers(keys.REVOKED_SET))
        for node_id, nb in self.redis.hgetall(keys.REVOKED_NODES).items():
            with contextlib.suppress(ValueError):
                node = node_id.decode()
                nodes[node] = max(nodes.get(node, 0.0), float(nb))
        self.revoked.replace(jtis)
        self.revoked.replace_nodes(nodes)
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

    def refresh_fleet_lamport(self) -> None:
        """The fleet's Lamport maximum: Redis' key, else (lost) the highest stored value."""
        raw = self.redis.get(keys.LAMPORT_MAX)
        value = int(raw) if raw is not None and raw.isdigit() and len(raw) <= 20 else None
        if value is None:
            with self.engine.connect() as c:
                value = c.execute(select(func.max(Sighting.lamport))).scalar() or 0
            log.info("fleet Lamport maximum not in Redis: %d from the store", value)
        self.fleet_lamport = max(value, self._lamport_max, 0)

    def reclaim(self) -> int:
        """Take over entries a dead consumer left pending longer than claim_idle_ms."""
        self._last_reclaim = time.monotonic()
        s = self.settings
        claimed = self.duties.reclaim(s.consumer, s.claim_idle_ms, s.batch_size)
        if claimed:
            log.info("reclaimed %d pending entries of dead consumers", len(claimed))
            metrics.RECLAIMED.inc(len(claimed))
            self._claimed.extend(claimed)
        return len(claimed)

    def update_stream_stats(self) -> None:
        self._last_stats = time.monotonic()
        st = self.duties.stats()
        metrics.PENDING.set(st.pending)
        metrics.BACKLOG.set(st.backlog)
        metrics.BACKLOG_AGE.set(st.backlog_age_s)
        metrics.STREAM_ID_AHEAD.set(st.id_ahead_s)
        metrics.PENDING_AGE.set(st.pending_age_s)
        metrics.REDIS_USED_MEMORY.set(st.used_memory)
        metrics.REDIS_MAXMEMORY.set(st.maxmemory)
        if st.lag_recounted:
            log.info("Redis had lost the group's read counter: counted %d undelivered "
                     "entries and restored it", st.backlog)
        self.refresh_fleet_lamport()

    def trim(self) -> None:
        """Delete acknowledged entries and expired dead letters."""
        self._last_trim = time.monotonic()
        n = self.duties.trim_acked()
        if n:
            metrics.TRIMMED.inc(n)
        expired = self.duties.expire_dead_letters(self.settings.dead_letter_max_age_s)
        if expired:
            metrics.DEAD_LETTERS_EVICTED.labels("expired").inc(expired)
            log.info("%d dead letters older than %.0f s expired", expired,
                     self.settings.dead_letter_max_age_s)
        evicted = self.duties.relieve_memory(self.settings.dead_letter_memory_ratio)
        if evicted:
            metrics.DEAD_LETTERS_EVICTED.labels("memory").inc(evicted)
            log.warning("Redis above %.0f%% of its maxmemory: %d oldest dead letters evicted",
                        self.settings.dead_letter_memory_ratio * 100, evicted)

    def remove_stale_consumers(self) -> None:
        self._last_consumers = time.monotonic()
        removed = self.duties.remove_stale_consumers(
            self.settings.consumer, int(self.settings.stale_consumer_s * 1000))
        if removed:
            metrics.CONSUMERS_REMOVED.inc(len(removed))

    # --- the loop ------------------------------------------------------------------

    def _xreadgroup(self, start: str, block: int | None) -> list[Entry]:
        s = self.settings
        resp = self.redis.xreadgroup(keys.WORKER_GROUP, s.consumer, {keys.EVENTS_STREAM: start},
                                     count=s.batch_size, block=block)
        entries = resp[0][1] if resp else []
        return [Entry(sid.decode(), f) for sid, f in entries]

    def read(self) -> list[Entry]:
        """The next batch: claimed entries, then own pending ones (at start), then new."""
        s = self.settings
        if self._claimed:
            batch, self._claimed = self._claimed[:s.batch_size], self._claimed[s.batch_size:]
            return batch
        if self._read_pending:
            entries = self._xreadgroup("0", None)
            if entries:
                self.duties.fill_deliveries(entries)
                return entries
            self._read_pending = False
        return self._xreadgroup(">", s.block_ms)

    def duties_due(self) -> None:
        """Run the periodic duties that are due (each also at the first step)."""
        now = time.monotonic()
        s = self.settings
        self.poll_notifications()
        if now - self._last_revocations >= s.revocation_refresh_s:
            self.refresh_revocations()
        if now - self._last_reclaim >= s.reclaim_interval_s:
            self.reclaim()
        if now - self._last_stats >= s.stats_interval_s:
            self.update_stream_stats()
        if now - self._last_trim >= s.trim_interval_s:
            self.trim()
        if now - self._last_consumers >= s.stale_consumer_s / 4:
            self.remove_stale_consumers()

    def step(self) -> BatchResult:
        """One iteration: duties that are due, then one batch (possibly empty).

        A batch that fails (Redis or the database away) stays in memory and is retried
        by the next step: it is not read again, so its delivery count only grows when a
        worker process dies or another worker claims it.
        """
        if not self._started:
            self.start()
        self.duties_due()
        if self._batch is None:
            self._batch = self.read()
        if not self._batch:
            self._batch = None
            return BatchResult()
        result = self.process(self._batch)
        self._batch = None
        return result

    def run(self, stop: threading.Event) -> None:
        """Process until ``stop`` is set; the current batch is always finished first."""
        backoff = 0.1
        while not stop.is_set():
            try:
                self.step()
                backoff = 0.1
                self._progress()
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
            except Exception:
                stage = "internal"
                log.exception("unexpected error; retrying in %.1f s", backoff)
            metrics.ERRORS.labels(stage).inc()
            self._started = False  # resync (group, gallery, revocations); the batch is kept
            self._progress()
            stop.wait(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, self.settings.max_backoff_s)
        self._close_pubsub()
        log.info("worker %s stopped", self.settings.consumer)

    def _progress(self) -> None:
        self.last_progress = time.monotonic()
        metrics.LAST_PROGRESS.set(time.time())

    # --- one batch -----------------------------------------------------------------

    def plan(self, entries: list[Entry]) -> BatchPlan:
        with _stage("check"):
            return self.planner.plan(entries, self.gallery,
                                     fleet_lamport=self.fleet_lamport or 0)

    def commit(self, entries: list[Entry], plan: BatchPlan) -> tuple[BatchPlan, StoreOutcome]:
        """Store the plan.  A refusal by the store (not an outage) first reloads the gallery
        (a person erased since the snapshot) and re-plans; the store then isolates any
        entry it still refuses."""
        with _stage("store"):
            try:
                return plan, self.store.commit(plan, list(self._alert_ends), split=False)
            except TRANSIENT:
                raise
            except Exception as e:
                log.warning("store refused the batch (%s): reloading the gallery and "
                            "re-planning", str(e).splitlines()[0][:200] if str(e) else e)
                metrics.ERRORS.labels("store_refused").inc()
            self.reload_gallery()
            plan = self.plan(entries)
            return plan, self.store.commit(plan, list(self._alert_ends), split=True)

    def acknowledge(self, plan: BatchPlan, outcome: StoreOutcome) -> AckOutcome:
        """The ack MULTI; when Redis is full: free memory and retry, then acknowledge
        without dead letters and statistics (commit.py) rather than never again."""
        for attempt in range(2):
            try:
                return acknowledge(self.redis, plan, outcome,
                                   dead_letter_maxlen=self.settings.dead_letter_maxlen)
            except redis.ResponseError as e:
                if not is_oom(e):
                    raise
            if attempt == 0:
                log.warning("Redis is full (maxmemory): trimming and evicting dead letters "
                            "first")
                metrics.REDIS_FULL.inc()
                self.trim()
        ack = acknowledge_when_full(self.redis, plan, outcome)
        for d in ack.dead_letters_dropped:
            metrics.DEAD_LETTERS_DROPPED.labels(d.reason).inc()
            log.error("Redis full: the dead letter of entry %s could not be written and is "
                      "dropped (%s: %s; %s)", d.sid, d.reason, d.detail[:200],
                      _identity(d.fields))
        return ack

    def _watch_ids(self, entries: list[Entry]) -> None:
        """Name the sender of the entry whose id jumped into the future: a client chose
        it (XADD with an explicit id); the entries after it only inherit that time."""
        now = time.time()
        for e in entries:
            t = stream_id_seconds(e.sid)
            ahead = t is not None and t > now + self.settings.clock_tolerance_s
            if ahead and not self._ids_ahead:
                log.error("stream entry %s has an id %.0f s in the future, chosen by its "
                          "sender (%s); every later entry inherits that time", e.sid,
                          t - now, _identity(e.fields))
            self._ids_ahead = ahead

    def process(self, entries: list[Entry]) -> BatchResult:
        result = BatchResult(entries=len(entries))
        metrics.CONSUMED.inc(len(entries))
        metrics.BATCH_SIZE.observe(len(entries))
        self._watch_ids(entries)
        plan = self.plan(entries)
        plan, outcome = self.commit(entries, plan)
        self._alert_ends.extend(outcome.alert_ends)  # only after the commit
        with _stage("ack"):
            ack = self.acknowledge(plan, outcome)
        if ack.dead_letters_evicted:
            metrics.DEAD_LETTERS_EVICTED.labels("maxlen").inc(ack.dead_letters_evicted)
            log.warning("dead-letter stream full: %d oldest dead letters evicted",
                        ack.dead_letters_evicted)

        done = time.time()
        dropped = {d.sid for d in ack.dead_letters_dropped}
        dead = [d for d in (*plan.dead, *outcome.rejected) if d.sid not in dropped]
        result.stored = len(outcome.inserted)
        result.duplicates = plan.duplicates + len(plan.accepted) - len(outcome.rejected) \
            - result.stored
        result.dead = len(dead)
        result.recognised, result.unknown = outcome.recognised, outcome.unknown
        result.alerts = outcome.alerts
        metrics.ACKED.inc(len(plan.ack_ids))
        for d in dead:
            metrics.DEAD_LETTERS.labels(d.reason).inc()
        if result.duplicates:
            metrics.DUPLICATES.inc(result.duplicates)
        if result.recognised:
            metrics.SIGHTINGS.labels("recognised").inc(result.recognised)
        if result.unknown:
            metrics.SIGHTINGS.labels("unknown").inc(result.unknown)
        if result.alerts:
            metrics.ALERTS.inc(result.alerts)
        if plan.accepted:
            metrics.UNKNOWN_RATIO.set(
                sum(not a.recognised for a in plan.accepted) / len(plan.accepted))
            for a in plan.accepted:
                metrics.MATCH_SCORE.observe(a.score)
                t = stream_id_seconds(a.sid)
                if t is not None:
                    metrics.CLASSIFY_LATENCY.observe(max(0.0, done - t))
        lamport = plan.lamport_max
        if lamport is not None:
            if lamport > self._lamport_max:
                self._lamport_max = lamport
                metrics.LAMPORT_MAX.set(lamport)
            self.fleet_lamport = max(self.fleet_lamport or 0, lamport)
        return result
