"""Camera state changes (online/offline, idle/active) from the nodes table, as outbox events.

The server writes every node's latest heartbeat to ``nodes`` once a second; the
notifier compares it with the last state it announced (kept in ``notify_state``
so a restart neither repeats nor misses a change) and queues one event per
change.  Offline = no heartbeat for ``offline_after_s`` (as ``GET /nodes`` says)
or the node reports its camera down.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from facegrid_services.store.models import Node, NotifyState

from . import outbox
from .events import EventType, iso

STATE_KEY = "cameras"


@dataclass(frozen=True)
class CameraState:
    online: bool
    activity: str  # idle or active
    reason: str = ""

    def as_json(self) -> dict:
        return {"online": self.online, "activity": self.activity, "reason": self.reason}


def current(node: Node, now: datetime, offline_after_s: float) -> CameraState:
    beat = node.last_heartbeat_at
    if beat is None or now - beat > timedelta(seconds=offline_after_s):
        return CameraState(False, node.state or "active", "no_heartbeat")
    if not node.camera_up:
        return CameraState(False, node.state or "active", "camera_down")
    return CameraState(True, "idle" if node.state == "idle" else "active")


def known_states(session: Session) -> dict[str, dict]:
    row = session.get(NotifyState, STATE_KEY)
    return dict(row.value) if row is not None else {}


def poll(session: Session, now: datetime, offline_after_s: float) -> list[dict]:
    """Queue events for every change since the last poll; returns the outbox rows added."""
    row = session.get(NotifyState, STATE_KEY)
    known: dict[str, dict] = dict(row.value) if row is not None else {}
    added: list[dict] = []
    changed = False
    for node in session.scalars(select(Node).order_by(Node.node_id)):
        cur = current(node, now, offline_after_s)
        before = known.get(node.node_id)
        seen = iso(node.last_heartbeat_at) if node.last_heartbeat_at else None
        if before is None or before["online"] != cur.online:
            type_ = EventType.camera_online if cur.online else EventType.camera_offline
            detail = {"last_heartbeat_at": seen}
            if not cur.online:
                detail["reason"] = cur.reason
            added.append(outbox.camera_changed(session, type_, node.node_id, now, **detail))
        if cur.online and (before is None or before["activity"] != cur.activity):
            type_ = EventType.camera_idle if cur.activity == "idle" else EventType.camera_active
            added.append(outbox.camera_changed(session, type_, node.node_id, now,
                                               last_heartbeat_at=seen))
        if before != cur.as_json():
            known[node.node_id] = cur.as_json()
            changed = True
    if changed:
        if row is None:
            session.add(NotifyState(key=STATE_KEY, value=known))
        else:
            row.value = known
    session.commit()
    return added
