"""The worker's periodic duties on Redis: take-over, stream figures, trimming, clean-up.

* :meth:`StreamDuties.reclaim` takes over entries a dead consumer left pending
  (``XAUTOCLAIM``, entries and their delivery counts returned for processing);
  entries trimmed while pending are acknowledged.
* :meth:`StreamDuties.stats` reads the group's pending count, the backlog (entries
  not yet delivered) and the age of the oldest undelivered and oldest pending
  entry, from stream ids, so the figures hold after a Redis restart.  When Redis
  has lost the group's read counter (``lag`` is nil after an AOF replay) the
  backlog is counted in one Lua script that also repairs the counter
  (``XGROUP SETID … ENTRIESREAD``), so Redis' own lag (KEDA) is right again.
* :meth:`StreamDuties.trim_acked` deletes what the group has acknowledged
  (``XTRIM MINID`` at the oldest entry still pending or undelivered): Redis holds
  only unfinished work, and nothing unread is ever trimmed.
* :meth:`StreamDuties.expire_dead_letters` drops dead letters older than their
  lifetime; :meth:`StreamDuties.relieve_memory` evicts the oldest dead letters
  while Redis' used memory is above a share of its ``maxmemory`` (dead letters
  must never fill a ``noeviction`` Redis so that nodes' events are refused);
  :meth:`StreamDuties.remove_stale_consumers` deletes consumers of gone workers
  once they hold nothing pending.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

import redis

from facegrid import keys

from .plan import Entry, stream_id_seconds

log = logging.getLogger(__name__)

#: Count the undelivered entries (after the group's last-delivered id) and, when the
#: count is complete, restore the group's entries-read counter so XINFO lag is right.
#: KEYS[1] stream; ARGV[1] group, ARGV[2] the most entries to count.
_BACKLOG_LUA = """
local last = nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local t = {}
  for i = 1, #g, 2 do t[g[i]] = g[i + 1] end
  if t['name'] == ARGV[1] then last = t['last-delivered-id'] end
end
if not last then return -1 end
local n, cap, start = 0, tonumber(ARGV[2]), '(' .. last
while n < cap do
  local chunk = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 1000)
  if #chunk == 0 then break end
  n = n + #chunk
  start = '(' .. chunk[#chunk][1]
end
if n < cap then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'entries-added' then
      redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], last, 'ENTRIESREAD', info[i + 1] - n)
    end
  end
end
return n
"""
BACKLOG_COUNT_CAP = 1_000_000


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass(slots=True)
class StreamStats:
    pending: int = 0
    #: Entries not yet delivered to the group.
    backlog: int = 0
    #: Seconds since the oldest undelivered entry arrived (0: none).
    backlog_age_s: float = 0.0
    #: Seconds since the oldest pending (delivered, unacknowledged) entry arrived.
    pending_age_s: float = 0.0
    #: Whether Redis had lost the group's read counter (and it was counted here).
    lag_recounted: bool = False
    #: How far the stream's last id is ahead of this clock (0: not ahead).  A client
    #: may XADD an explicit future id (ACLs cannot forbid it); every later entry then
    #: inherits that time, and ages computed from ids read 0.
    id_ahead_s: float = 0.0
    used_memory: int = 0
    maxmemory: int = 0


def _next_id(sid: str) -> str:
    ms, _, seq = sid.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


class StreamDuties:
    def __init__(self, client: redis.Redis, *, stream: str = keys.EVENTS_STREAM,
                 group: str = keys.WORKER_GROUP, clock=time.time) -> None:
        self.redis = client
        self.stream = stream
        self.group = group
        self._clock = clock

    # --- take-over -----------------------------------------------------------------

    def reclaim(self, consumer: str, min_idle_ms: int, count: int,
                max_rounds: int = 20) -> list[Entry]:
        """Claim entries idle longer than ``min_idle_ms`` for ``consumer``; return them
        (with their delivery counts) for processing, at most ``count * max_rounds``."""
        claimed: list[Entry] = []
        cursor = "0-0"
        for _ in range(max_rounds):
            cursor, entries, deleted = self._xautoclaim(consumer, min_idle_ms, cursor, count)
            if deleted:  # trimmed from the stream while pending: nothing left to process
                self.redis.xack(self.stream, self.group, *deleted)
            claimed += [Entry(_s(sid), fields) for sid, fields in entries]
            if cursor == "0-0":
                break
        if claimed:
            self.fill_deliveries(claimed)
        return claimed

    def _xautoclaim(self, consumer: str, min_idle_ms: int, cursor: str, count: int):
        res = self.redis.xautoclaim(self.stream, self.group, consumer, min_idle_ms,
                                    start_id=cursor, count=count)
        cursor = _s(res[0])
        entries = res[1] or []
        deleted = res[2] if len(res) > 2 else []
        # A claimed id already deleted from the stream comes back as (id, None).
        return cursor, [(sid, f) for sid, f in entries if f is not None], list(deleted) + [
            sid for sid, f in entries if f is None]

    def fill_deliveries(self, entries: list[Entry]) -> None:
        """Set each entry's delivery count from XPENDING (one call)."""
        if not entries:
            return
        ids = [e.sid for e in entries]
        lo = min(ids, key=_id_key)
        hi = max(ids, key=_id_key)
        counts: dict[str, int] = {}
        rows = self.redis.xpending_range(self.stream, self.group, min=lo, max=hi,
                                         count=max(len(ids) * 4, 100))
        for row in rows:
            counts[_s(row["message_id"])] = int(row["times_delivered"])
        for e in entries:
            e.deliveries = counts.get(e.sid, e.deliveries)

    def remove_stale_consumers(self, keep: str, idle_ms: int) -> list[str]:
        """Delete consumers idle longer than ``idle_ms`` that hold nothing pending."""
        removed = []
        for c in self.redis.xinfo_consumers(self.stream, self.group):
            name = _s(c["name"])
            if name == keep or int(c.get("pending") or 0) or int(c.get("idle") or 0) < idle_ms:
                continue
            # DELCONSUMER returns the pending count it dropped: re-check it is 0 (a claim
            # could have landed between the two calls: then keep the entries' owner).
            n = self.redis.xgroup_delconsumer(self.stream, self.group, name)
            if n:
                log.error("consumer %s gained %d pending entries while being removed; "
                          "they are reclaimed from the group", name, n)
            removed.append(name)
        if removed:
            log.info("removed %d stale consumers: %s", len(removed), ", ".join(removed[:10]))
        return removed

    # --- figures ---------------------------------------------------------------------

    def _group(self) -> dict | None:
        for g in self.redis.xinfo_groups(self.stream):
            if _s(g["name"]) == self.group:
                return g
        return None

    def stats(self) -> StreamStats:
        out = StreamStats()
        now = self._clock()
        g = self._group()
        if g is not None:
            out.pending = int(g.get("pending") or 0)
            lag = g.get("lag")
            last = _s(g.get("last-delivered-id") or "0-0")
            if lag is None:
                n = int(self.redis.eval(_BACKLOG_LUA, 1, self.stream, self.group,
                                        BACKLOG_COUNT_CAP))
                out.backlog, out.lag_recounted = max(n, 0), True
            else:
                out.backlog = int(lag)
            nxt = self.redis.xrange(self.stream, min=_next_id(last), count=1)
            if nxt:
                t = stream_id_seconds(_s(nxt[0][0]))
                out.backlog_age_s = max(0.0, now - t) if t is not None else 0.0
            if out.pending:
                summary = self.redis.xpending(self.stream, self.group)
                lo = summary.get("min")
                t = stream_id_seconds(_s(lo)) if lo else None
                out.pending_age_s = max(0.0, now - t) if t is not None else 0.0
        with contextlib.suppress(redis.ResponseError):  # no stream yet
            info = self.redis.xinfo_stream(self.stream)
            t = stream_id_seconds(_s(info.get("last-generated-id") or "0-0"))
            out.id_ahead_s = max(0.0, t - now) if t is not None else 0.0
        mem = self.redis.info("memory")
        out.used_memory = int(mem.get("used_memory") or 0)
        out.maxmemory = int(mem.get("maxmemory") or 0)
        return out

    def group_exists(self) -> bool:
        return self._group() is not None

    # --- trimming --------------------------------------------------------------------

    def trim_acked(self) -> int:
        """Delete entries every consumer of the group has acknowledged; returns how many.

        MINID = the oldest pending entry, else the entry after the last delivered one:
        entries below it were delivered and acknowledged.  Entries delivered later only
        have larger ids, so a concurrent read cannot make this trim unread entries.
        """
        g = self._group()
        if g is None:
            return 0
        minid = _next_id(_s(g.get("last-delivered-id") or "0-0"))
        if int(g.get("pending") or 0):
            lo = self.redis.xpending(self.stream, self.group).get("min")
            if lo:
                minid = min(minid, _s(lo), key=_id_key)
        if minid == "0-1":
            return 0
        return int(self.redis.xtrim(self.stream, minid=minid, approximate=False))

    def expire_dead_letters(self, max_age_s: float) -> int:
        """Delete dead letters that arrived more than ``max_age_s`` ago; returns how many."""
        cutoff_ms = int((self._clock() - max_age_s) * 1000)
        if cutoff_ms <= 0:
            return 0
        return int(self.redis.xtrim(keys.DEAD_LETTER_STREAM, minid=f"{cutoff_ms}-0",
                                    approximate=False))

    def relieve_memory(self, ratio: float) -> int:
        """Evict the oldest dead letters while Redis uses more than ``ratio`` of its
        maxmemory: as many as the excess needs (from the dead-letter stream's own memory
        usage), all at most; returns how many.  XTRIM runs even when Redis is full."""
        mem = self.redis.info("memory")
        used, cap = int(mem.get("used_memory") or 0), int(mem.get("maxmemory") or 0)
        if cap <= 0 or used <= ratio * cap:
            return 0
        n = int(self.redis.xlen(keys.DEAD_LETTER_STREAM))
        if not n:
            return 0
        size = int(self.redis.memory_usage(keys.DEAD_LETTER_STREAM) or 0)
        excess = used - ratio * cap
        evict = n if size <= excess else min(n, int(n * excess / size) + 1)
        return int(self.redis.xtrim(keys.DEAD_LETTER_STREAM, maxlen=n - evict,
                                    approximate=False))


def _id_key(sid: str) -> tuple[int, int]:
    ms, _, seq = sid.partition("-")
    return int(ms), int(seq or 0)
