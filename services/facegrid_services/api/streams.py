"""The event stream seen from the server: backlog (XINFO/XPENDING) and dead letters.

A dead letter holds the original entry's fields (``v``, ``token``, ``payload``,
``embedding``) plus ``reason``, ``detail`` and ``source_id``.  Replaying one
after a fix puts exactly the original fields back on the events stream and
deletes the dead letter, in one MULTI/EXEC transaction.
"""

from __future__ import annotations

import json
import re

import redis

from facegrid import keys, wire
from facegrid.errors import FacegridError

from .schemas import DeadLetterOut, GroupInfo, StreamInfo

STREAM_ID_RE = re.compile(r"^\d{1,20}-\d{1,20}$")


class DeadLetterNotFound(FacegridError, LookupError):
    pass


def check_entry_id(entry_id: str) -> str:
    """The canonical form of a stream entry id ``ms-seq`` (both parts below 2**64).

    Raises ValueError otherwise.  Leading zeros are dropped (Redis reads ``0-00``
    as ``0-0``; callers compare canonical ids).
    """
    if not STREAM_ID_RE.match(entry_id):
        raise ValueError(f"{entry_id[:45]!r} is not a stream entry id like 1732486490123-0")
    ms, seq = (int(p) for p in entry_id.split("-"))
    if ms >= 2**64 or seq >= 2**64:
        raise ValueError(f"stream entry id {entry_id} is out of range")
    return f"{ms}-{seq}"


def _s(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def stream_info(r: redis.Redis) -> StreamInfo:
    exists = bool(r.exists(keys.EVENTS_STREAM))
    length = int(r.xlen(keys.EVENTS_STREAM)) if exists else 0
    groups: list[GroupInfo] = []
    pending = 0
    oldest: str | None = None
    if exists:
        for g in r.xinfo_groups(keys.EVENTS_STREAM):
            lag = g.get("lag")
            groups.append(GroupInfo(
                name=_s(g["name"]), consumers=int(g["consumers"]), pending=int(g["pending"]),
                lag=None if lag is None else int(lag),
                last_delivered_id=_s(g["last-delivered-id"])))
            if _s(g["name"]) == keys.WORKER_GROUP:
                summary = r.xpending(keys.EVENTS_STREAM, keys.WORKER_GROUP)
                pending = int(summary["pending"])
                oldest = _s(summary["min"]) if summary.get("min") else None
    dead = int(r.xlen(keys.DEAD_LETTER_STREAM)) if r.exists(keys.DEAD_LETTER_STREAM) else 0
    return StreamInfo(stream=keys.EVENTS_STREAM, exists=exists, length=length, groups=groups,
                      pending=pending, oldest_pending_id=oldest, dead_letters=dead)


def _dead_letter_out(entry_id, fields: dict) -> DeadLetterOut:
    f = {_s(k): v for k, v in fields.items()}
    node_id = event_id = None
    try:
        payload = json.loads(f.get("payload", b"") or b"")
        if isinstance(payload, dict):
            node_id = payload.get("node_id") if isinstance(payload.get("node_id"), str) else None
            event_id = (payload.get("event_id")
                        if isinstance(payload.get("event_id"), str) else None)
    except (ValueError, TypeError, RecursionError):
        pass
    return DeadLetterOut(
        id=_s(entry_id), reason=_s(f.get("reason")), detail=_s(f.get("detail"))[:500],
        source_id=_s(f.get("source_id")), node_id=node_id and node_id[:63],
        event_id=event_id and event_id[:64],
        fields=sorted(k for k in f if k in wire.ENTRY_FIELDS))


_SKIP_CHUNK = 1000


def list_dead_letters(r: redis.Redis, *, limit: int = 100,
                      offset: int = 0) -> tuple[list[DeadLetterOut], int]:
    """One page of dead letters, newest first, and how many there are.

    A stream cannot skip by position: the first ``offset`` entries are read and
    dropped in chunks (the queue is capped by the worker's dead_letter_maxlen).
    """
    total = int(r.xlen(keys.DEAD_LETTER_STREAM))
    if offset >= total:
        return [], total
    top = "+"
    while offset > 0:
        skipped = r.xrevrange(keys.DEAD_LETTER_STREAM, max=top, min="-",
                              count=min(offset, _SKIP_CHUNK))
        if not skipped:
            return [], total
        offset -= len(skipped)
        top = f"({_s(skipped[-1][0])}"
    entries = r.xrevrange(keys.DEAD_LETTER_STREAM, max=top, min="-", count=limit)
    return [_dead_letter_out(i, f) for i, f in entries], total


def get_dead_letter(r: redis.Redis, entry_id: str) -> DeadLetterOut:
    entry_id = check_entry_id(entry_id)
    entries = r.xrange(keys.DEAD_LETTER_STREAM, min=entry_id, max=entry_id)
    if not entries:
        raise DeadLetterNotFound(entry_id)
    return _dead_letter_out(*entries[0])


def replay_dead_letter(r: redis.Redis, entry_id: str) -> str:
    """Put the original fields back on the events stream and delete the dead letter."""
    entry_id = check_entry_id(entry_id)
    entries = r.xrange(keys.DEAD_LETTER_STREAM, min=entry_id, max=entry_id)
    if not entries:
        raise DeadLetterNotFound(entry_id)
    _, fields = entries[0]
    original = {_s(k): v for k, v in fields.items() if _s(k) in wire.ENTRY_FIELDS}
    if not original:
        raise ValueError(f"dead letter {entry_id} holds none of the original event fields")
    pipe = r.pipeline(transaction=True)
    pipe.xadd(keys.EVENTS_STREAM, original)
    pipe.xdel(keys.DEAD_LETTER_STREAM, entry_id)
    new_id, _ = pipe.execute()
    return _s(new_id)


def delete_dead_letter(r: redis.Redis, entry_id: str) -> None:
    entry_id = check_entry_id(entry_id)
    if not r.xdel(keys.DEAD_LETTER_STREAM, entry_id):
        raise DeadLetterNotFound(entry_id)
