"""Revoked token ids as this server knows them.

The database (``revoked_tokens``) is the source of truth; Redis carries the
same ids in ``keys.REVOKED_SET`` and announces new ones on
``keys.REVOKED_CHANNEL``.  The server keeps an in-memory set (what
``TokenVerifier(is_revoked=...)`` consults on every node request: a set
lookup), filled from the database and Redis at start, added to on every
revocation through this server, and kept current by a listener thread on the
channel for revocations made through another replica.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from datetime import UTC, datetime

import redis
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from facegrid import keys
from facegrid.contract import RevokeRequest
from facegrid_services.store.models import RevokedToken

from . import metrics

log = logging.getLogger(__name__)


class RevocationRegistry:
    """The server's revocations: records them (database, then Redis) and answers
    membership from memory; the worker's read-only mirror is ``worker.revocation.RevokedCache``."""

    def __init__(self, session_factory: sessionmaker[Session], redis_client: redis.Redis) -> None:
        self._sessions = session_factory
        self._redis = redis_client
        self._jtis: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __contains__(self, jti: str) -> bool:
        return jti in self._jtis

    def _add(self, jtis) -> None:
        with self._lock:
            self._jtis.update(jtis)
            metrics.REVOKED_KNOWN.set(len(self._jtis))

    def load(self) -> None:
        """Fill the set from the database, then from Redis (best effort)."""
        with self._sessions() as s:
            self._add(s.scalars(select(RevokedToken.jti)).all())
        try:
            members = self._redis.smembers(keys.REVOKED_SET)
            self._add(m.decode() if isinstance(m, bytes) else m for m in members)
        except redis.RedisError as e:
            log.warning("cannot read %s from Redis (%s); using the database only",
                        keys.REVOKED_SET, e)

    def revoke(self, req: RevokeRequest) -> tuple[RevokedToken, bool]:
        """Record a revocation; returns (row, created).  Idempotent per jti."""
        with self._sessions() as s:
            row = s.get(RevokedToken, req.jti)
            created = False
            if row is None:
                row = RevokedToken(jti=req.jti, node_id=req.node_id, reason=req.reason,
                                   expires_at=req.expires_at, revoked_at=datetime.now(UTC))
                s.add(row)
                try:
                    s.commit()
                    created = True
                except IntegrityError:  # a concurrent revocation of the same jti
                    s.rollback()
                    row = s.get(RevokedToken, req.jti)
        self._add([req.jti])
        # Redis second: the DB row already makes this durable; Redis makes it fast.
        pipe = self._redis.pipeline(transaction=True)
        pipe.sadd(keys.REVOKED_SET, req.jti)
        pipe.publish(keys.REVOKED_CHANNEL, req.jti)
        pipe.execute()
        if created:
            metrics.REVOCATIONS.inc()
        return row, created

    # --- listener for other replicas' revocations --------------------------------

    def start_listener(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._listen, name="revocation-listener",
                                        daemon=True)
        self._thread.start()

    def stop_listener(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _listen(self) -> None:
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(keys.REVOKED_CHANNEL)
                # Catch up on anything revoked while we were not subscribed.
                members = self._redis.smembers(keys.REVOKED_SET)
                self._add(m.decode() if isinstance(m, bytes) else m for m in members)
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=0.5)
                    if msg and msg.get("type") == "message":
                        data = msg["data"]
                        self._add([data.decode() if isinstance(data, bytes) else str(data)])
            except redis.RedisError as e:
                log.warning("revocation listener lost Redis (%s); retrying", e)
                self._stop.wait(1.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(redis.RedisError):
                        pubsub.close()
