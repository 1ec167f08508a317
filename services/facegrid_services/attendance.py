"""Attendance and intruder rules (pure logic; the store applies the results atomically).

* Attendance is per person per *site-local* day.  Check-in is the earliest
  sighting, check-out the latest, ordered by ``(time, lamport)``: equal times
  are ordered by the Lamport value.
* Times are judged against the event's arrival in Redis (its stream id time),
  not the worker's clock, so a backlog processed hours later is judged as it
  arrived.  A sighting whose ``corrected_utc`` lies more than ``clock_tolerance``
  after its arrival, or more than ``max_age`` before it (a node buffers events
  for minutes: older is back-dated), is suspect; its attendance time is the
  arrival instead (the sighting keeps all its own times for audit).
* Sightings closer than ``cooldown`` to each other merge into one visit
  (``attendance.sightings`` counts visits, not frames).
* Intruder: ``count`` unknown sightings within ``window`` seconds, across all
  nodes, raise one alert per window bucket (deduplicated by :func:`alert_key`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class Seen:
    """One recognised sighting, as attendance needs it."""

    person_id: int
    time: datetime  # the attendance time (see attendance_time)
    lamport: int
    node_id: str


@dataclass(frozen=True, slots=True)
class AttendanceUpdate:
    person_id: int
    day: date
    check_in: datetime
    check_in_lamport: int
    check_in_node: str
    check_out: datetime
    check_out_lamport: int
    check_out_node: str
    #: Visits in this batch (sightings further apart than the cooldown).
    visits: int
    #: The batch's first visit merges with a stored row whose [check_in, check_out]
    #: comes within the cooldown: check_out >= merge_after and check_in <= merge_before.
    merge_after: datetime
    merge_before: datetime


def attendance_time(corrected: datetime, arrival: datetime, clock_tolerance: timedelta,
                    max_age: timedelta | None = None) -> tuple[datetime, bool]:
    """``(time used for attendance, clock suspect?)``.

    ``arrival``: when the event reached Redis (its stream id time).  A corrected time
    more than ``clock_tolerance`` after it, or more than ``max_age`` before it (nodes
    buffer events for minutes, so an older one is back-dated), is suspect: attendance
    uses the arrival.
    """
    if corrected - arrival > clock_tolerance:
        return arrival, True
    if max_age is not None and arrival - corrected > max_age:
        return arrival, True
    return corrected, False


def plan_attendance(seen: list[Seen], tz: ZoneInfo, cooldown: timedelta) -> list[AttendanceUpdate]:
    """Fold one batch of recognised sightings into one update per (person, local day)."""
    groups: dict[tuple[int, date], list[Seen]] = defaultdict(list)
    for s in seen:
        groups[(s.person_id, s.time.astimezone(tz).date())].append(s)
    out = []
    for (person_id, day), items in groups.items():
        items.sort(key=lambda s: (s.time, s.lamport))
        first, last = items[0], items[-1]
        visits = 1
        visit_end = first.time
        for s in items[1:]:
            if s.time - visit_end > cooldown:
                visits += 1
            visit_end = s.time
        out.append(AttendanceUpdate(
            person_id=person_id, day=day,
            check_in=first.time, check_in_lamport=first.lamport, check_in_node=first.node_id,
            check_out=last.time, check_out_lamport=last.lamport, check_out_node=last.node_id,
            visits=visits, merge_after=first.time - cooldown, merge_before=last.time + cooldown))
    out.sort(key=lambda u: (u.person_id, u.day))  # one lock order for every replica
    return out


def alert_key(t: datetime, window_s: float) -> str:
    """One intruder alert per window bucket: the deduplication key."""
    bucket = math.floor(t.timestamp() / window_s)
    return f"intruder:{window_s:g}:{bucket}"


def is_intrusion(recent: list[datetime], t: datetime, count: int, window_s: float) -> bool:
    """``recent``: the latest (up to ``count``) unknown times <= t, newest first."""
    return len(recent) >= count and t - recent[count - 1] < timedelta(seconds=window_s)
