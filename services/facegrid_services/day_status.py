"""Day statuses from visits and a schedule (pure logic, no I/O).

The unit of attendance is a person's *visit* to the site: an interval during
which the cameras saw them (presences closer than ``max_gap`` merge into one
visit, see :func:`visits_from_presences`).  A *schedule* says, per weekday, the
shifts a person is expected to work in the site's time zone.  This module turns
both into one :class:`DayStatus` per person per site-local day.

Rules (each one tested in tests/unit/test_day_status.py):

* **Days are site-local days**, all instants are aware UTC.  A shift's local
  start and end are converted with :mod:`zoneinfo` (PEP 495): a start inside a
  spring-forward gap begins when the wall clock has jumped past it, a start in a
  repeated autumn hour is its first occurrence.  A 08:00-16:00 shift lasts 8 h
  on a DST-change day as on any other day, because both ends are local.
* **Overnight shifts** (``end <= start``) end on the next local day and belong
  to the day they start.  Time is split between days at a boundary: local
  midnight, pushed past the end of an overnight shift by ``checkout_slack``
  (but never further than half-way to the next day's first shift).  Every
  instant belongs to exactly one day, so no minute is counted twice.
* **Status**: ``holiday`` (closure or holiday date), ``off`` (no shift that
  weekday), ``upcoming`` (a scheduled day that has not begun yet), ``absent``
  (a scheduled day without a visit), ``late`` (first in
  after the first shift's start + ``grace_late``), ``left_early`` (last out
  before the last shift's end - ``grace_early``), else ``present``.  Late and
  left early can both hold: ``status`` is ``late`` and ``left_early_by`` is
  still reported.  Someone who comes in on an ``off`` day or holiday keeps that
  status and has time on site (it is all overtime).
* **Time on site** is the sum of the day's visits (their union, clipped to the
  day), not last out minus first in.  **Overtime** is time on site beyond the
  scheduled duration.
* **Corrections** never touch camera evidence: they are applied on top of the
  visits, in the order they were made, and the result says it is corrected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

ZERO = timedelta(0)


class Status(StrEnum):
    PRESENT = "present"
    LATE = "late"
    LEFT_EARLY = "left_early"
    ABSENT = "absent"
    OFF = "off"
    HOLIDAY = "holiday"
    #: A scheduled day that has not started yet (``now`` before its first shift + grace).
    UPCOMING = "upcoming"


@dataclass(frozen=True, slots=True)
class Shift:
    """Expected local working hours; ``end <= start`` means it ends the next day."""

    start: time
    end: time

    @property
    def overnight(self) -> bool:
        return self.end <= self.start


@dataclass(frozen=True, slots=True)
class Schedule:
    tz: ZoneInfo
    #: weekday (0 = Monday) -> the shifts of that day, in any order.
    week: Mapping[int, Sequence[Shift]]
    grace_late: timedelta = timedelta(minutes=5)
    grace_early: timedelta = timedelta(minutes=5)
    holidays: frozenset[date] = frozenset()
    #: How long after an overnight shift's end a departure still counts to it.
    checkout_slack: timedelta = timedelta(hours=4)

    def shifts_on(self, day: date) -> list[Shift]:
        if day in self.holidays:
            return []
        return sorted(self.week.get(day.weekday(), ()), key=lambda s: s.start)


@dataclass(frozen=True, slots=True)
class Visit:
    start: datetime
    end: datetime
    #: True when a correction made or changed this visit.
    corrected: bool = False

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("visits take aware instants")
        if self.end < self.start:
            raise ValueError(f"visit ends before it starts: {self.start} > {self.end}")


class CorrectionKind(StrEnum):
    #: The person arrived at ``at`` (the camera missed it, or saw them late).
    SET_CHECK_IN = "set_check_in"
    #: The person left at ``at``.
    SET_CHECK_OUT = "set_check_out"
    #: The person was on site from ``at`` to ``until``.
    ADD_VISIT = "add_visit"
    #: Camera visits overlapping ``at``..``until`` were not this person.
    VOID = "void"


@dataclass(frozen=True, slots=True)
class Correction:
    """An admin's immutable statement about one local day (the audit trail keeps it)."""

    id: int
    day: date
    kind: CorrectionKind
    at: datetime
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class DayStatus:
    day: date
    status: Status
    scheduled: timedelta
    first_in: datetime | None
    last_out: datetime | None
    on_site: timedelta
    late_by: timedelta = ZERO
    left_early_by: timedelta = ZERO
    overtime: timedelta = ZERO
    visits: int = 0
    corrected: bool = False
    corrections: tuple[int, ...] = field(default=())


def local_instant(day: date, t: time, tz: ZoneInfo) -> datetime:
    """``day`` at local wall time ``t`` as an aware UTC instant (PEP 495 rules)."""
    naive = datetime.combine(day, t)
    aware = naive.replace(tzinfo=tz)
    # Round-trip: a wall time in a spring-forward gap does not exist; PEP 495
    # maps it with the offset before the jump, i.e. just past the jump.
    return aware.astimezone(UTC)


def shift_window(day: date, shift: Shift, tz: ZoneInfo) -> tuple[datetime, datetime]:
    end_day = day + timedelta(days=1) if shift.overnight else day
    return local_instant(day, shift.start, tz), local_instant(end_day, shift.end, tz)


def day_start(day: date, sched: Schedule) -> datetime:
    """Where ``day`` begins: local midnight, or after the previous overnight shift."""
    midnight = local_instant(day, time(0), sched.tz)
    prev = day - timedelta(days=1)
    ends = [shift_window(prev, s, sched.tz)[1] for s in sched.shifts_on(prev) if s.overnight]
    if not ends:
        return midnight
    end = max(ends)
    slack = sched.checkout_slack
    today = sched.shifts_on(day)
    if today:
        first_start = shift_window(day, today[0], sched.tz)[0]
        slack = min(slack, max(ZERO, (first_start - end) / 2))
    return max(midnight, end + slack)


def visits_from_presences(spans: Iterable[tuple[datetime, datetime]],
                          max_gap: timedelta) -> list[Visit]:
    """Presences (first/last seen) closer than ``max_gap`` merge into one visit."""
    out: list[Visit] = []
    for start, end in sorted(spans):
        if out and start - out[-1].end <= max_gap:
            last = out[-1]
            out[-1] = Visit(last.start, max(last.end, end))
        else:
            out.append(Visit(start, end))
    return out


def _union(visits: Sequence[Visit], lo: datetime, hi: datetime) -> list[Visit]:
    if len(visits) == 1:  # the common day: one visit, nothing to merge
        v = visits[0]
        if v.end < lo or v.start >= hi:
            return []
        if v.start >= lo and v.end <= hi:
            return [v]
        return [Visit(max(v.start, lo), min(v.end, hi), v.corrected)]
    clipped = sorted((Visit(max(v.start, lo), min(v.end, hi), v.corrected)
                      for v in visits if v.end >= lo and v.start < hi),
                     key=lambda v: (v.start, v.end))
    out: list[Visit] = []
    for v in clipped:
        if out and v.start <= out[-1].end:
            last = out[-1]
            out[-1] = Visit(last.start, max(last.end, v.end), last.corrected or v.corrected)
        else:
            out.append(v)
    return out


def apply_corrections(visits: list[Visit], corrections: Sequence[Correction]) -> list[Visit]:
    """The visits as corrected, in the order the corrections were made (by id)."""
    out = sorted(visits, key=lambda v: v.start)
    for c in sorted(corrections, key=lambda c: c.id):
        if c.kind is CorrectionKind.ADD_VISIT:
            out.append(Visit(c.at, c.until or c.at, corrected=True))
        elif c.kind is CorrectionKind.VOID:
            until = c.until or c.at
            out = [v for v in out if v.end < c.at or v.start > until]
        elif c.kind is CorrectionKind.SET_CHECK_IN:
            kept = [v for v in out if v.end >= c.at]
            if kept:
                first = min(kept, key=lambda v: v.start)
                kept.remove(first)
                kept.append(Visit(c.at, max(first.end, c.at), corrected=True))
            else:
                kept = [Visit(c.at, c.at, corrected=True)]
            out = kept
        elif c.kind is CorrectionKind.SET_CHECK_OUT:
            kept = [v for v in out if v.start <= c.at]
            if kept:
                last = max(kept, key=lambda v: v.end)
                kept.remove(last)
                kept.append(Visit(min(last.start, c.at), c.at, corrected=True))
            else:
                kept = [Visit(c.at, c.at, corrected=True)]
            out = kept
        out.sort(key=lambda v: v.start)
    return out


@dataclass(frozen=True, slots=True)
class DayFrame:
    """What a schedule says about one local day, whoever the person is."""

    day: date
    lo: datetime  # where the day begins (see day_start)
    hi: datetime  # where the next day begins
    windows: tuple[tuple[datetime, datetime], ...]  # shifts as UTC intervals
    scheduled: timedelta
    holiday: bool


def day_frame(day: date, sched: Schedule) -> DayFrame:
    windows = tuple(shift_window(day, s, sched.tz) for s in sched.shifts_on(day))
    return DayFrame(day=day, lo=day_start(day, sched),
                    hi=day_start(day + timedelta(days=1), sched), windows=windows,
                    scheduled=sum(((e - s) for s, e in windows), ZERO),
                    holiday=day in sched.holidays)


def day_frames(first: date, last: date, sched: Schedule) -> list[DayFrame]:
    """The frames of every local day from ``first`` to ``last`` inclusive (shared by
    everyone on the schedule: compute once per schedule and period)."""
    days = (last - first).days + 1
    if days < 1:
        raise ValueError(f"period ends before it starts: {first} > {last}")
    return [day_frame(first + timedelta(days=i), sched) for i in range(days)]


def frame_status(frame: DayFrame, visits: Sequence[Visit], sched: Schedule,
                 corrections: Sequence[Correction] = (),
                 now: datetime | None = None) -> DayStatus:
    """One person's status in one day frame (``visits`` may span any days).

    ``now``: the day is judged as far as it has happened: before its first shift
    (+ grace) nobody is absent yet (``upcoming``), and before its last shift ends
    nobody has left early yet."""
    day, lo, hi = frame.day, frame.lo, frame.hi
    mine = [c for c in corrections if c.day == day] if corrections else ()
    # Corrections apply to the day's visits only: other days keep theirs.
    visits = _union(visits, lo, hi)
    if mine:
        visits = _union(apply_corrections(visits, mine), lo, hi)
    windows, scheduled = frame.windows, frame.scheduled
    if visits:
        on_site = ZERO
        corrected = bool(mine)
        for v in visits:
            on_site += v.end - v.start
            corrected = corrected or v.corrected
        first_in, last_out = visits[0].start, visits[-1].end
    else:
        on_site, corrected, first_in, last_out = ZERO, bool(mine), None, None
    fixes = tuple(sorted(c.id for c in mine)) if mine else ()

    def status(kind: Status, late_by: timedelta = ZERO, left_early_by: timedelta = ZERO,
               overtime: timedelta = ZERO) -> DayStatus:
        return DayStatus(day, kind, scheduled, first_in, last_out, on_site, late_by,
                         left_early_by, overtime, len(visits), corrected, fixes)

    if frame.holiday:
        return status(Status.HOLIDAY, overtime=on_site)
    if not windows:
        return status(Status.OFF, overtime=on_site)
    start = windows[0][0]
    end = windows[0][1] if len(windows) == 1 else max(e for _, e in windows)
    if not visits:
        if now is not None and now <= start + sched.grace_late:
            return status(Status.UPCOMING)
        return status(Status.ABSENT)
    late_by = first_in - start if first_in > start + sched.grace_late else ZERO
    early_by = end - last_out if last_out < end - sched.grace_early else ZERO
    if now is not None and now < end:
        early_by = ZERO  # still within the shift: not gone early (yet)
    kind = Status.LATE if late_by else Status.LEFT_EARLY if early_by else Status.PRESENT
    return status(kind, late_by, early_by, on_site - scheduled if on_site > scheduled else ZERO)


def day_status(day: date, visits: Sequence[Visit], sched: Schedule,
               corrections: Sequence[Correction] = (), now: datetime | None = None,
               ) -> DayStatus:
    """One person's status on one site-local day (``visits`` may span any days)."""
    return frame_status(day_frame(day, sched), visits, sched, corrections, now)


def period_statuses(first: date, last: date, visits: Sequence[Visit], sched: Schedule,
                    corrections: Sequence[Correction] = (),
                    frames: Sequence[DayFrame] | None = None,
                    now: datetime | None = None) -> list[DayStatus]:
    """Statuses for every local day from ``first`` to ``last`` inclusive.

    Linear in days + visits: the visits are sorted once and each day takes the
    ones that reach into it.  ``frames``: :func:`day_frames` computed once for
    everyone on the same schedule."""
    frames = day_frames(first, last, sched) if frames is None else frames
    ordered = sorted(visits, key=lambda v: (v.start, v.end))
    by_day: dict[date, list[Correction]] = {}
    for c in corrections:
        by_day.setdefault(c.day, []).append(c)
    out, i = [], 0
    for f in frames:
        # Days ascend: a visit that ended before this day reaches no later one.
        while i < len(ordered) and ordered[i].end < f.lo:
            i += 1
        j = i
        todays = []
        while j < len(ordered) and ordered[j].start < f.hi:
            if ordered[j].end >= f.lo:
                todays.append(ordered[j])
            j += 1
        out.append(frame_status(f, todays, sched, by_day.get(f.day, ()), now))
    return out
