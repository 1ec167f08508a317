"""The notifier loop: outbox → webhook deliveries and MQTT; deliveries → receivers.

One asyncio loop (``facegrid notifier``, one replica): store work runs in
threads, each webhook subscription delivers in its own task with at most
``webhook_concurrency`` requests in flight, so a hanging receiver holds up only
its own subscription, and never the worker, which only writes the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from facegrid import __version__
from facegrid_services.store.models import (
    NotifyOutbox,
    NotifyState,
    Person,
    WebhookDelivery,
)

from . import cameras, metrics, signing, webhooks
from .events import render
from .http import HttpError, HttpPool
from .settings import NotifierSettings

log = logging.getLogger(__name__)
MQTT_KEY = "mqtt_pseudonym_key"


def mqtt_pseudonym_key(sessions: sessionmaker[Session], settings: NotifierSettings) -> bytes:
    """The configured key, else one generated once and kept in the store."""
    if settings.mqtt_pseudonym_key is not None:
        return settings.mqtt_pseudonym_key.get_secret_value().encode()
    with sessions() as s:
        row = s.get(NotifyState, MQTT_KEY)
        if row is None:
            row = NotifyState(key=MQTT_KEY, value={"key": secrets.token_hex(32)})
            s.add(row)
            s.commit()
        return bytes.fromhex(row.value["key"])


class Notifier:
    def __init__(self, settings: NotifierSettings, sessions: sessionmaker[Session], *,
                 mqtt=None, now=lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.sessions = sessions
        self.mqtt = mqtt
        self.now = now
        #: Delivery rounds running per subscription (two overlap: one sends while the
        #: next is fetched and the last one's outcomes are stored).
        self._tasks: dict[int, list[asyncio.Task]] = {}
        self._inflight: dict[int, set[int]] = {}
        self._fetch_locks: dict[int, asyncio.Lock] = {}
        self._last_camera_poll = 0.0
        self._last_housekeeping = 0.0

    # --- store work (threads) -------------------------------------------------------------
    def fan_out_once(self) -> int:
        """Move up to ``notify_batch`` outbox events to deliveries and MQTT; returns how many."""
        s = self.settings
        with self.sessions() as session:
            events = list(session.scalars(select(NotifyOutbox).order_by(NotifyOutbox.id)
                                          .limit(s.notify_batch)))
            if not events:
                metrics.OUTBOX_BACKLOG.set(0)
                return 0
            subs = [sub for sub in webhooks.list_subscriptions(session, active_only=True)
                    if set(sub.events) & {e.type for e in events}]
            person_ids = {e.person_id for e in events if e.person_id is not None}
            names: dict[int, str] = {}
            if person_ids and (any(sub.include_names for sub in subs)
                               or (self.mqtt is not None and self.mqtt.include_names)):
                names = dict(session.execute(select(Person.id, Person.name)
                                             .where(Person.id.in_(person_ids))).all())
            now = self.now()
            webhooks.fan_out(session, events, subs, names, now)
            if self.mqtt is not None:
                for e in events:
                    self.mqtt.publish_event(render(
                        e.event_id, e.type, e.occurred_at, e.data,
                        names=names if self.mqtt.include_names else None,
                        pseudonym_key=self.mqtt.pseudonym_key))
            session.execute(delete(NotifyOutbox).where(
                NotifyOutbox.id.in_([e.id for e in events])))
            session.commit()
            for e in events:
                metrics.EVENTS.labels(e.type).inc()
            metrics.OUTBOX_BACKLOG.set(len(events) if len(events) == s.notify_batch else 0)
            return len(events)

    def poll_cameras(self) -> int:
        with self.sessions() as session:
            return len(cameras.poll(session, self.now(), self.settings.offline_after_s))

    def sync_camera_states(self) -> None:
        """At start: the retained MQTT camera topics (and discovery) from the known states."""
        if self.mqtt is None:
            return
        with self.sessions() as session:
            for node, st in cameras.known_states(session).items():
                self.mqtt.camera_state(node, online=st["online"], activity=st["activity"])

    def ready_subscriptions(self) -> list[tuple[int, str, str, bool]]:
        """(id, url, secret, failing) of active subscriptions not backing off now."""
        now = self.now()
        with self.sessions() as session:
            return [(sub.id, sub.url, sub.secret, sub.consecutive_failures > 0)
                    for sub in webhooks.list_subscriptions(session, active_only=True)
                    if sub.paused_until is None or sub.paused_until <= now]

    def housekeeping(self) -> None:
        with self.sessions() as session:
            webhooks.purge_delivered(
                session, self.now() - timedelta(days=self.settings.webhook_log_days))
            counts = dict(session.execute(
                select(WebhookDelivery.status, func.count())
                .where(WebhookDelivery.status.in_([webhooks.PENDING, webhooks.DEAD]))
                .group_by(WebhookDelivery.status)).all())
        metrics.PENDING.set(counts.get(webhooks.PENDING, 0))
        metrics.DEAD.set(counts.get(webhooks.DEAD, 0))

    # --- delivery (async) -----------------------------------------------------------------
    async def _post(self, http: HttpPool, url: str, secret: str,
                    d: webhooks.Due) -> webhooks.Result:
        body = d.body.encode()
        headers = {"Content-Type": "application/json",
                   "User-Agent": f"facegrid-webhooks/{__version__}",
                   **signing.headers(secret, d.event_id, body)}
        try:
            code = await http.post(url, body, headers)
        except TimeoutError:
            return webhooks.Result(d.id, False, None,
                                   f"timed out after {self.settings.webhook_timeout_s:g} s")
        except (OSError, HttpError, ValueError) as e:
            return webhooks.Result(d.id, False, None, f"{type(e).__name__}: {e}"[:300])
        if 200 <= code < 300:
            return webhooks.Result(d.id, True, code)
        return webhooks.Result(d.id, False, code, f"HTTP {code}")

    async def deliver(self, http: HttpPool, sub_id: int, url: str, secret: str,
                      failing: bool = False) -> int:
        """One round for one subscription: up to ``webhook_batch`` due deliveries, at most
        ``webhook_concurrency`` in flight, outcomes stored in one transaction.  While the
        receiver is failing, one delivery probes it; the backlog follows once it answers."""
        inflight = self._inflight.setdefault(sub_id, set())
        async with self._fetch_locks.setdefault(sub_id, asyncio.Lock()):
            batch = await asyncio.to_thread(self._due, sub_id, 1 if failing else None,
                                            frozenset(inflight))
            inflight.update(d.id for d in batch)
        if not batch:
            return 0
        try:
            return await self._send_and_record(http, sub_id, url, secret, batch)
        finally:
            inflight.difference_update(d.id for d in batch)

    async def _send_and_record(self, http: HttpPool, sub_id: int, url: str, secret: str,
                               batch: list[webhooks.Due]) -> int:
        gate = asyncio.Semaphore(self.settings.webhook_concurrency)

        async def one(d: webhooks.Due) -> webhooks.Result:
            async with gate:
                return await self._post(http, url, secret, d)

        results = await asyncio.gather(*(one(d) for d in batch))
        now = self.now()
        delivered, failed, dead = await asyncio.to_thread(self._record, sub_id, results, now)
        created = {d.id: d.created_at for d in batch}
        for r in results:
            if r.ok and created.get(r.delivery_id) is not None:
                metrics.LATENCY.observe(max(0.0, (now - created[r.delivery_id]).total_seconds()))
        metrics.DELIVERIES.labels("delivered").inc(delivered)
        metrics.DELIVERIES.labels("failed").inc(failed)
        metrics.DELIVERIES.labels("dead").inc(dead)
        if failed or dead:
            log.warning("webhook %d (%s): %d delivered, %d failed, %d dead; e.g. %s", sub_id,
                        url, delivered, failed, dead,
                        next(r.error for r in results if not r.ok))
        return len(batch)

    def _due(self, sub_id: int, limit: int | None = None,
             exclude: frozenset[int] = frozenset()) -> list[webhooks.Due]:
        with self.sessions() as session:
            return webhooks.due(session, sub_id, self.now(),
                                limit or self.settings.webhook_batch, exclude)

    def _record(self, sub_id: int, results, now: datetime) -> tuple[int, int, int]:
        s = self.settings
        with self.sessions() as session:
            return webhooks.record(session, sub_id, results, now,
                                   max_attempts=s.webhook_max_attempts,
                                   base=s.webhook_backoff_base_s, cap=s.webhook_backoff_max_s)

    async def step(self, http: HttpPool) -> bool:
        """One round; True if there was work (the loop then goes on without sleeping)."""
        busy = await asyncio.to_thread(self.fan_out_once) > 0
        mono = time.monotonic()
        if mono - self._last_camera_poll >= self.settings.camera_poll_interval_s:
            self._last_camera_poll = mono
            busy |= await asyncio.to_thread(self.poll_cameras) > 0
        if mono - self._last_housekeeping >= 60:
            self._last_housekeeping = mono
            await asyncio.to_thread(self.housekeeping)
        for sub_id, url, secret, failing in await asyncio.to_thread(self.ready_subscriptions):
            running = []
            for task in self._tasks.get(sub_id, []):
                if not task.done():
                    running.append(task)
                elif not task.cancelled() and task.exception() is not None:
                    log.error("webhook %d delivery round failed: %r", sub_id, task.exception())
            if len(running) < (1 if failing else 2):
                running.append(asyncio.create_task(
                    self.deliver(http, sub_id, url, secret, failing), name=f"webhook-{sub_id}"))
            self._tasks[sub_id] = running
        return busy

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        await asyncio.to_thread(self.sync_camera_states)
        http = HttpPool(s.webhook_timeout_s)
        try:
            while not stop.is_set():
                try:
                    busy = await self.step(http)
                except Exception:  # database away: log, wait, go on (nothing is lost)
                    log.exception("notifier round failed; retrying")
                    busy = False
                    await asyncio.sleep(1.0)
                if not busy:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), s.notify_poll_interval_s)
        finally:
            tasks = [t for ts in self._tasks.values() for t in ts]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            http.close()


