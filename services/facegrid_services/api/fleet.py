"""Camera fleet: node registration, heartbeats, and the online/idle/offline status."""

from __future__ import annotations

from datetime import UTC, datetime

import redis
from sqlalchemy.orm import Session

from facegrid import keys
from facegrid.clock import LAMPORT_OBSERVE_LIMIT
from facegrid.contract import HeartbeatReply, NodeState, Registration
from facegrid.tokens import Claims
from facegrid_services.store.models import Node

from .schemas import NodeInfo


def register(session: Session, reg: Registration, claims: Claims, now: datetime) -> Node:
    """Create or refresh the node's row from its registration (idempotent)."""
    node = session.get(Node, reg.node_id)
    if node is None:
        node = Node(node_id=reg.node_id, registered_at=now, state=NodeState.ACTIVE.value,
                    state_seconds=0.0, fps=0.0, drift_offset_ms=0.0, lamport=0,
                    camera_up=False, events_sent=0, events_dropped=0, backlog=0)
        session.add(node)
    node.timezone = reg.timezone
    node.model = reg.model
    node.version = reg.version
    node.camera = reg.camera
    node.token_jti = claims.jti
    node.token_expires_at = datetime.fromtimestamp(claims.expires_at, UTC)
    session.commit()
    return node


def lamport_max(r: redis.Redis, floor: int = 0) -> int:
    """Highest Lamport value seen by the workers (keys.LAMPORT_MAX), at least ``floor``."""
    raw = r.get(keys.LAMPORT_MAX)
    try:
        value = int(raw) if raw is not None and len(raw) <= 20 else 0
    except ValueError:
        value = 0
    if value > LAMPORT_OBSERVE_LIMIT:  # implausible: nodes would ignore it anyway
        value = 0
    return min(max(value, floor), LAMPORT_OBSERVE_LIMIT)


def heartbeat_reply(now: float, lamport: int, interval_s: float) -> HeartbeatReply:
    return HeartbeatReply(server_time=now, server_time_iso=datetime.fromtimestamp(now, UTC),
                          lamport_max=lamport, heartbeat_interval_s=interval_s)


def node_status(node: Node, now: datetime, offline_after_s: float) -> str:
    """online (active, heartbeat recent), idle (idle, recent) or offline (none recently)."""
    if node.last_heartbeat_at is None:
        return "offline"
    age = (now - node.last_heartbeat_at).total_seconds()
    if age > offline_after_s:
        return "offline"
    return "idle" if node.state == NodeState.IDLE.value else "online"


def node_info(node: Node, now: datetime, offline_after_s: float) -> NodeInfo:
    age = (None if node.last_heartbeat_at is None
           else max(0.0, (now - node.last_heartbeat_at).total_seconds()))
    return NodeInfo(
        node_id=node.node_id, status=node_status(node, now, offline_after_s),
        state=NodeState(node.state), state_seconds=node.state_seconds,
        last_heartbeat_at=node.last_heartbeat_at, heartbeat_age_s=age,
        registered_at=node.registered_at, drift_offset_ms=node.drift_offset_ms,
        fps=node.fps, lamport=node.lamport, camera_up=node.camera_up, model=node.model,
        timezone=node.timezone, version=node.version, camera=node.camera,
        events_sent=node.events_sent, events_dropped=node.events_dropped,
        backlog=node.backlog)
