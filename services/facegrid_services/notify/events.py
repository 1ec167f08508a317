"""Event types and the message body every channel sends (never a picture).

A message is ``{"id", "type", "occurred_at", "data"}``.  Presence events name
the person only for receivers that asked for names; everyone else gets a
pseudonymous id (HMAC-SHA256 of the person id under the receiver's own key:
stable for one receiver, unlinkable between receivers).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from enum import StrEnum


class EventType(StrEnum):
    presence_recognised = "presence.recognised"
    presence_unknown = "presence.unknown"
    alert_intruder = "alert.intruder"
    camera_online = "camera.online"
    camera_offline = "camera.offline"
    camera_idle = "camera.idle"
    camera_active = "camera.active"


ALL_TYPES = [t.value for t in EventType]


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def pseudonym(key: bytes, person_id: int) -> str:
    """A stable id for one receiver that does not reveal the person (``p_`` + 16 hex)."""
    return "p_" + hmac.new(key, f"person:{person_id}".encode(), hashlib.sha256).hexdigest()[:16]


def render(event_id: str, type_: str, occurred_at: datetime, data: dict, *,
           names: dict[int, str] | None, pseudonym_key: bytes) -> dict:
    """The message for one receiver.  ``names`` is None when it must not see names."""
    out = dict(data)
    person_id = out.pop("person_id", None)
    if type_ in (EventType.presence_recognised, EventType.presence_unknown):
        if person_id is None:
            out["person"] = None
        elif names is not None:
            out["person"] = {"id": person_id, "name": names.get(person_id)}
        else:
            out["person"] = {"id": pseudonym(pseudonym_key, person_id)}
    return {"id": event_id, "type": type_, "occurred_at": iso(occurred_at), "data": out}


def dumps(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
