"""Schedules, groups, closures and corrections: the store side of day statuses.

The API routers call these functions; :mod:`facegrid_services.day_status` does
the arithmetic.  Which schedule applies to a person: the schedule of the
lowest-numbered group they belong to that has one (a person in no scheduled
group has no expected hours: every day is ``off``).  Visits come from the
person's recognised sightings (:func:`spans`), merged when closer than
``visit_gap`` (a visit is a stay, not a frame).  A door camera cannot tell an
arrival from a departure: with door cameras only, a stay runs from one
sighting to the next unless they are more than ``visit_gap`` apart (default
9 h, a workday); cameras inside rooms give the stays exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from facegrid.errors import FacegridError

from .day_status import Correction as DayCorrection
from .day_status import (
    CorrectionKind,
    DayStatus,
    Shift,
    day_frames,
    day_start,
    local_instant,
    period_statuses,
    visits_from_presences,
)
from .day_status import Schedule as DaySchedule
from .store.models import (
    Closure,
    Correction,
    Group,
    GroupMember,
    Person,
    Presence,
    Schedule,
    Sighting,
)

#: Sightings of one person closer than this are one stay (ServerSettings overrides it).
DEFAULT_VISIT_GAP = timedelta(hours=9)
#: How far beyond the period's local days visits are read (overnight shifts, slack).
_MARGIN = timedelta(days=1)


class RuleError(FacegridError, ValueError):
    """A request that the rules refuse (the API answers 409/422 with ``detail``)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def parse_hhmm(value: str) -> time:
    try:
        hh, mm = value.split(":")
        return time(int(hh), int(mm))
    except (ValueError, TypeError):
        raise RuleError("bad_time", f"{value!r} is not a HH:MM time") from None


def to_day_schedule(row: Schedule, closures: Iterable[date] = ()) -> DaySchedule:
    week: dict[int, list[Shift]] = defaultdict(list)
    for s in row.shifts:
        week[int(s["weekday"])].append(Shift(parse_hhmm(s["start"]), parse_hhmm(s["end"])))
    return DaySchedule(tz=ZoneInfo(row.timezone), week={k: tuple(v) for k, v in week.items()},
                       grace_late=timedelta(minutes=row.grace_late_min),
                       grace_early=timedelta(minutes=row.grace_early_min),
                       holidays=frozenset(closures))


def unscheduled(tz: ZoneInfo, closures: Iterable[date] = ()) -> DaySchedule:
    return DaySchedule(tz=tz, week={}, holidays=frozenset(closures))


def schedules_of(session: Session, person_ids: Sequence[int]) -> dict[int, Schedule | None]:
    """Each person's schedule: their own if they have one, else their lowest-numbered
    group's that has one, else None."""
    out: dict[int, Schedule | None] = dict.fromkeys(person_ids)
    if not person_ids:
        return out
    for person_id, sched in session.execute(
            select(Person.id, Schedule).join(Schedule, Schedule.id == Person.schedule_id)
            .where(Person.id.in_(person_ids))).all():
        out[person_id] = sched
    rows = session.execute(
        select(GroupMember.person_id, Schedule)
        .join(Group, Group.id == GroupMember.group_id)
        .join(Schedule, Schedule.id == Group.schedule_id)
        .where(GroupMember.person_id.in_(person_ids))
        .order_by(GroupMember.person_id, Group.id)).all()
    for person_id, sched in rows:
        if out[person_id] is None:
            out[person_id] = sched
    return out


def groups_of(session: Session, person_ids: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {p: [] for p in person_ids}
    if person_ids:
        rows = session.execute(
            select(GroupMember.person_id, Group.name)
            .join(Group, Group.id == GroupMember.group_id)
            .where(GroupMember.person_id.in_(person_ids)).order_by(Group.id)).all()
        for person_id, name in rows:
            out[person_id].append(name)
    return out


def closures_for(session: Session, schedule_id: int | None, first: date, last: date) -> set[date]:
    stmt = select(Closure.day).where(Closure.day >= first, Closure.day <= last)
    if schedule_id is None:
        stmt = stmt.where(Closure.schedule_id.is_(None))
    else:
        stmt = stmt.where((Closure.schedule_id.is_(None)) | (Closure.schedule_id == schedule_id))
    return set(session.scalars(stmt))


def spans(session: Session, person_ids: Sequence[int], lo: datetime,
          hi: datetime) -> dict[int, list[tuple[datetime, datetime]]]:
    """When each person was seen in [lo, hi): their recognised presences (first to
    last seen at one camera), and recognised sightings that belong to no presence
    (stored before presences existed)."""
    out: dict[int, list[tuple[datetime, datetime]]] = {p: [] for p in person_ids}
    if not person_ids:
        return out
    # Column reads on the session's connection (Core): the ORM's row machinery
    # costs more than the query for tens of thousands of rows.
    conn = session.connection()
    rows = conn.execute(
        select(Presence.person_id, Presence.first_seen, Presence.last_seen)
        .where(Presence.person_id.in_(person_ids), Presence.status == "recognised",
               Presence.last_seen >= lo, Presence.first_seen < hi)).all()
    for person_id, first, last in rows:
        out[person_id].append((first, last if last > first else first))
    rows = conn.execute(
        select(Sighting.person_id, Sighting.corrected_utc)
        .where(Sighting.person_id.in_(person_ids), Sighting.recognised.is_(True),
               Sighting.presence_id.is_(None),
               Sighting.corrected_utc >= lo, Sighting.corrected_utc < hi)).all()
    for person_id, t in rows:
        out[person_id].append((t, t))
    return out


def corrections_of(session: Session, person_ids: Sequence[int], first: date,
                   last: date) -> dict[int, list[Correction]]:
    out: dict[int, list[Correction]] = {p: [] for p in person_ids}
    if person_ids:
        for c in session.scalars(select(Correction).where(
                Correction.person_id.in_(person_ids), Correction.day >= first,
                Correction.day <= last).order_by(Correction.id)):
            out[c.person_id].append(c)
    return out


def _as_day_correction(c: Correction) -> DayCorrection:
    return DayCorrection(id=c.id, day=c.day, kind=CorrectionKind(c.kind), at=c.at,
                         until=c.until)


def statuses(session: Session, person_ids: Sequence[int], first: date, last: date,
             site_tz: ZoneInfo, visit_gap: timedelta = DEFAULT_VISIT_GAP,
             now: datetime | None = None) -> dict[int, list[DayStatus]]:
    """Every person's status for every local day of [first, last], judged at ``now``
    (default: the current time: a day still to come is ``upcoming``, not absent)."""
    now = datetime.now(UTC) if now is None else now
    if last < first:
        raise RuleError("bad_period", f"the period ends before it starts: {first} > {last}")
    scheds = schedules_of(session, person_ids)
    lo = local_instant(first, time(0), site_tz) - _MARGIN
    hi = local_instant(last + timedelta(days=1), time(0), site_tz) + 2 * _MARGIN
    seen = spans(session, person_ids, lo, hi)
    fixes = corrections_of(session, person_ids, first, last)
    # Everyone on one schedule shares its closures and day frames: computed once.
    by_schedule: dict[int | None, tuple[DaySchedule, list]] = {}
    out = {}
    for pid in person_ids:
        row = scheds[pid]
        key = row.id if row is not None else None
        if key not in by_schedule:
            closed = closures_for(session, key, first, last)
            sched = (to_day_schedule(row, closed) if row is not None
                     else unscheduled(site_tz, closed))
            by_schedule[key] = (sched, day_frames(first, last, sched))
        sched, frames = by_schedule[key]
        visits = visits_from_presences(seen[pid], visit_gap)
        out[pid] = period_statuses(first, last, visits, sched,
                                   [_as_day_correction(c) for c in fixes[pid]], frames, now)
    return out


def status_dict(s: DayStatus) -> dict:
    """A JSON-able snapshot of a day status (the correction trail keeps these)."""
    d = asdict(s)
    for k, v in d.items():
        if isinstance(v, timedelta):
            d[k] = v.total_seconds()
        elif isinstance(v, datetime | date):
            d[k] = v.isoformat()
        elif hasattr(v, "value"):
            d[k] = v.value
        elif isinstance(v, tuple):
            d[k] = list(v)
    return d


def add_correction(session: Session, person: Person, *, day: date, kind: CorrectionKind,
                   at: datetime, until: datetime | None, reason: str, made_by: str,
                   made_by_token_id: int | None, site_tz: ZoneInfo,
                   visit_gap: timedelta = DEFAULT_VISIT_GAP) -> Correction:
    """Record a correction with the day's status before and after it (immutable)."""
    if until is not None and until < at:
        raise RuleError("bad_interval", "until is before at")
    if kind in (CorrectionKind.ADD_VISIT,) and until is None:
        raise RuleError("bad_interval", f"{kind.value} needs both at and until")
    before = statuses(session, [person.id], day, day, site_tz, visit_gap)[person.id][0]
    row = Correction(person_id=person.id, day=day, kind=kind.value, at=at.astimezone(UTC),
                     until=until.astimezone(UTC) if until else None, reason=reason,
                     made_by=made_by, made_by_token_id=made_by_token_id,
                     before=status_dict(before), after={})
    session.add(row)
    session.flush()
    after = statuses(session, [person.id], day, day, site_tz, visit_gap)[person.id][0]
    row.after = status_dict(after)
    session.commit()
    return row


def evidence(session: Session, person_id: int, day: date, site_tz: ZoneInfo,
             visit_gap: timedelta = DEFAULT_VISIT_GAP,
             ) -> tuple[DayStatus, list[Presence], list[Sighting], list[Correction]]:
    """The day's status and what it rests on: presences, sightings, corrections."""
    status = statuses(session, [person_id], day, day, site_tz, visit_gap)[person_id][0]
    sched = schedules_of(session, [person_id])[person_id]
    tz = ZoneInfo(sched.timezone) if sched is not None else site_tz
    ds = to_day_schedule(sched) if sched is not None else unscheduled(tz)
    lo, hi = day_start(day, ds), day_start(day + timedelta(days=1), ds)
    rows = list(session.scalars(
        select(Sighting).where(Sighting.person_id == person_id, Sighting.recognised.is_(True),
                               Sighting.corrected_utc >= lo, Sighting.corrected_utc < hi)
        .order_by(Sighting.corrected_utc, Sighting.lamport)))
    fixes = list(session.scalars(select(Correction).where(
        Correction.person_id == person_id, Correction.day == day).order_by(Correction.id)))
    seen = list(session.scalars(
        select(Presence).where(Presence.person_id == person_id,
                               Presence.status == "recognised",
                               Presence.last_seen >= lo, Presence.first_seen < hi)
        .order_by(Presence.first_seen)))
    return status, seen, rows, fixes


def check_visit_in_day(day: date, at: datetime, tz: ZoneInfo) -> None:
    """A correction's time must be near its day (a typo of a year is refused)."""
    lo = local_instant(day, time(0), tz) - _MARGIN
    hi = local_instant(day + timedelta(days=1), time(0), tz) + _MARGIN
    if not lo <= at <= hi:
        raise RuleError("far_from_day", f"{at.isoformat()} is not within a day of {day}")

