"""Revoked token ids as this server knows them.

The database (``revoked_tokens``) is the source of truth; Redis carries the
same ids in ``keys.REVOKED_SET`` and announces new ones on
``keys.REVOKED_CHANNEL``.  The server keeps an in-memory set (what
``TokenVerifier(is_revoked=...)`` consults on every node request: a set
lookup), filled from the database and Redis at start, added to on every
revocation through this server, kept current by a listener thread on the
channel for revocations made through another replica, and reloaded from the
database every ``revocation_reload_s`` (a missed message, or Redis away while
another replica revoked, is caught up within that time).

A whole node can be revoked too (``revoked_nodes``, ``keys.REVOKED_NODES``):
every token of that node issued before the ``not_before`` instant is refused,
whatever its jti (tokens the operator no longer knows about included).
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
from facegrid.contract import NodeRevokeRequest, RevokeRequest
from facegrid.tokens import Claims
from facegrid_services.store.models import RevokedNode, RevokedToken

from . import metrics

log = logging.getLogger(__name__)


class RevocationList:
    def __init__(self, session_factory: sessionmaker[Session], redis_client: redis.Redis) -> None:
        self._sessions = session_factory
        self._redis = redis_client
        self._jtis: set[str] = set()
        self._nodes: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __contains__(self, jti: str) -> bool:
        return jti in self._jtis

    def is_revoked(self, jti: str) -> bool:
        return jti in self._jtis

    def node_not_before(self, node_id: str) -> float | None:
        return self._nodes.get(node_id)

    def is_claims_revoked(self, claims: Claims) -> bool:
        """The token's jti is revoked, or its node was revoked after it was issued."""
        if claims.jti in self._jtis:
            return True
        cutoff = self._nodes.get(claims.node_id)
        return cutoff is not None and claims.issued_at < cutoff

    def _add(self, jtis) -> None:
        with self._lock:
            for j in jtis:
                node = keys.parse_node_revocation(j)
                if node is not None:
                    self._add_node(*node)
                else:
                    self._jtis.add(j)
            metrics.REVOKED_KNOWN.set(len(self._jtis))

    def _add_node(self, node_id: str, not_before: float) -> None:
        nodes = dict(self._nodes)
        nodes[node_id] = max(not_before, nodes.get(node_id, 0.0))
        self._nodes = nodes

    def load(self) -> None:
        """Fill the set from the database, then from Redis (best effort).  Only adds."""
        with self._sessions() as s:
            jtis = s.scalars(select(RevokedToken.jti)).all()
            nodes = [(r.node_id, r.not_before.timestamp())
                     for r in s.scalars(select(RevokedNode)).all()]
        self._add(jtis)
        with self._lock:
            for node_id, nb in nodes:
                self._add_node(node_id, nb)
        try:
            members = self._redis.smembers(keys.REVOKED_SET)
            self._add(m.decode() if isinstance(m, bytes) else m for m in members)
            for node_id, nb in self._redis.hgetall(keys.REVOKED_NODES).items():
                with self._lock:
                    self._add_node(node_id.decode(), float(nb))
        except (redis.RedisError, ValueError) as e:
            log.warning("cannot read the revocations from Redis (%s); using the database only",
                        e)

    def revoke_node(self, req: NodeRevokeRequest) -> tuple[RevokedNode, bool]:
        """Revoke every token of ``req.node_id`` issued before ``req.not_before``.

        Idempotent; a later ``not_before`` for the same node wins."""
        with self._sessions() as s:
            row = s.get(RevokedNode, req.node_id)
            created = row is None
            if row is None:
                row = RevokedNode(node_id=req.node_id, not_before=req.not_before,
                                  reason=req.reason, revoked_at=datetime.now(UTC))
                s.add(row)
            elif req.not_before > row.not_before:
                row.not_before, row.reason = req.not_before, req.reason
                row.revoked_at = datetime.now(UTC)
            try:
                s.commit()
            except IntegrityError:  # a concurrent first revocation of the same node
                s.rollback()
                row, created = s.get(RevokedNode, req.node_id), False
            s.refresh(row)
            s.expunge(row)
        epoch = row.not_before.timestamp()
        with self._lock:
            self._add_node(req.node_id, epoch)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(keys.REVOKED_NODES, req.node_id, repr(epoch))
        pipe.publish(keys.REVOKED_CHANNEL, f"{keys.REVOKED_NODE_PREFIX}{req.node_id}:{epoch!r}")
        pipe.execute()
        if created:
            metrics.REVOCATIONS.inc()
        return row, created

    async def reload_loop(self, interval_s: float) -> None:
        """Reload from the database every ``interval_s`` until cancelled."""
        import asyncio

        while True:
            await asyncio.sleep(interval_s)
            try:
                await asyncio.to_thread(self.load)
            except Exception as e:
                log.warning("revocation reload failed (retrying in %.0f s): %s", interval_s, e)

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
