"""Day statuses: schedules with DST changes, overnight shifts, corrections."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from facegrid_services.day_status import (
    Correction,
    CorrectionKind,
    Schedule,
    Shift,
    Status,
    Visit,
    day_start,
    day_status,
    local_instant,
    period_statuses,
    visits_from_presences,
)

pytestmark = pytest.mark.unit

BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = {d: (Shift(time(8), time(16)),) for d in range(5)}
H = timedelta(hours=1)
M = timedelta(minutes=1)


def at(day: date, hh: int, mm: int = 0, tz: ZoneInfo = BERLIN) -> datetime:
    return local_instant(day, time(hh, mm), tz)


def visit(day: date, a: tuple[int, int], b: tuple[int, int]) -> Visit:
    return Visit(at(day, *a), at(day, *b))


SCHED = Schedule(tz=BERLIN, week=WEEKDAYS)
MON = date(2026, 3, 2)


def test_present_on_time_counts_time_on_site_not_last_minus_first():
    # 07:58-12:00 and 13:00-16:02: one hour of lunch away is not time on site.
    v = [visit(MON, (7, 58), (12, 0)), visit(MON, (13, 0), (16, 2))]
    s = day_status(MON, v, SCHED)
    assert s.status is Status.PRESENT
    assert s.on_site == timedelta(hours=7, minutes=4)
    assert s.first_in == at(MON, 7, 58) and s.last_out == at(MON, 16, 2)
    assert s.late_by == timedelta(0) and s.overtime == timedelta(0)
    assert s.visits == 2 and not s.corrected


def test_late_beyond_grace_and_left_early_both_reported():
    s = day_status(MON, [visit(MON, (8, 4), (16, 0))], SCHED)
    assert s.status is Status.PRESENT  # 4 min is inside the 5 min grace
    s = day_status(MON, [visit(MON, (8, 20), (15, 0))], SCHED)
    assert s.status is Status.LATE
    assert s.late_by == 20 * M and s.left_early_by == H
    s = day_status(MON, [visit(MON, (8, 0), (15, 0))], SCHED)
    assert s.status is Status.LEFT_EARLY and s.left_early_by == H


def test_absent_off_and_holiday():
    assert day_status(MON, [], SCHED).status is Status.ABSENT
    sat = MON + timedelta(days=5)
    s = day_status(sat, [visit(sat, (10, 0), (12, 0))], SCHED)
    assert s.status is Status.OFF and s.overtime == 2 * H
    hol = Schedule(tz=BERLIN, week=WEEKDAYS, holidays=frozenset({MON}))
    assert day_status(MON, [], hol).status is Status.HOLIDAY


def test_spring_forward_day_keeps_local_shift_hours():
    # Europe/Berlin jumps 02:00 -> 03:00 on Sunday 2026-03-29; a Sunday shift.
    sun = date(2026, 3, 29)
    sched = Schedule(tz=BERLIN, week={6: (Shift(time(1), time(9)),)})
    # 01:00 CET = 00:00 UTC, 09:00 CEST = 07:00 UTC: 7 real hours.
    s = day_status(sun, [Visit(at(sun, 1), at(sun, 9))], sched)
    assert s.scheduled == 7 * H
    assert s.status is Status.PRESENT and s.on_site == 7 * H
    # The local day itself is 23 hours long.
    assert day_start(sun + timedelta(days=1), sched) - day_start(sun, sched) == 23 * H


def test_shift_starting_in_the_spring_gap_starts_after_the_jump():
    sun = date(2026, 3, 29)
    sched = Schedule(tz=BERLIN, week={6: (Shift(time(2, 30), time(10)),)})
    s = day_status(sun, [Visit(datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
                               datetime(2026, 3, 29, 8, 0, tzinfo=UTC))], sched)
    assert s.status is Status.PRESENT  # 01:30 UTC is 03:30 CEST, the first real minute
    assert s.scheduled == timedelta(hours=6, minutes=30)


def test_fall_back_overnight_shift_is_nine_real_hours():
    # 2026-10-25: 03:00 CEST -> 02:00 CET. Saturday 22:00 -> Sunday 06:00 is 9 h.
    sat = date(2026, 10, 24)
    sched = Schedule(tz=BERLIN, week={5: (Shift(time(22), time(6)),)})
    v = [Visit(at(sat, 21, 55), at(sat + timedelta(days=1), 6, 10))]
    s = day_status(sat, v, sched)
    assert s.scheduled == 9 * H
    assert s.status is Status.PRESENT
    assert s.on_site == 9 * H + 15 * M and s.overtime == 15 * M
    # The Sunday gets none of it.
    assert day_status(sat + timedelta(days=1), v, sched).on_site == timedelta(0)


def test_overnight_departure_belongs_to_the_shift_not_the_next_morning_shift():
    week = {0: (Shift(time(22), time(6)),), 1: (Shift(time(8), time(16)),)}
    sched = Schedule(tz=BERLIN, week=week)
    tue = MON + timedelta(days=1)
    night = Visit(at(MON, 22), at(tue, 6, 30))
    day = visit(tue, (7, 55), (16, 0))
    # The split between Monday's night and Tuesday's day shift is half-way (07:00).
    assert day_start(tue, sched) == at(tue, 7)
    mon_s = day_status(MON, [night, day], sched)
    tue_s = day_status(tue, [night, day], sched)
    assert mon_s.last_out == at(tue, 6, 30) and mon_s.status is Status.PRESENT
    assert tue_s.first_in == at(tue, 7, 55) and tue_s.status is Status.PRESENT
    assert mon_s.on_site + tue_s.on_site == (night.end - night.start) + (day.end - day.start)


def test_corrections_change_the_status_and_leave_the_evidence():
    evidence = [visit(MON, (8, 40), (16, 0))]
    before = day_status(MON, evidence, SCHED)
    assert before.status is Status.LATE
    fix = Correction(id=7, day=MON, kind=CorrectionKind.SET_CHECK_IN, at=at(MON, 8, 0))
    after = day_status(MON, evidence, SCHED, [fix])
    assert after.status is Status.PRESENT and after.corrected and after.corrections == (7,)
    assert after.first_in == at(MON, 8, 0)
    assert evidence == [visit(MON, (8, 40), (16, 0))]  # untouched
    # A correction for another day changes nothing here.
    other = Correction(id=8, day=MON + timedelta(days=1), kind=CorrectionKind.VOID,
                       at=at(MON, 0), until=at(MON, 23))
    assert day_status(MON, evidence, SCHED, [other]) == before


def test_add_void_and_set_check_out_apply_in_order():
    evidence = [visit(MON, (8, 0), (9, 0))]
    added = Correction(1, MON, CorrectionKind.ADD_VISIT, at(MON, 9, 0), at(MON, 16, 0))
    s = day_status(MON, evidence, SCHED, [added])
    assert s.status is Status.PRESENT and s.on_site == 8 * H
    void = Correction(2, MON, CorrectionKind.VOID, at(MON, 7), at(MON, 17))
    assert day_status(MON, evidence, SCHED, [added, void]).status is Status.ABSENT
    out = Correction(3, MON, CorrectionKind.SET_CHECK_OUT, at(MON, 16, 0))
    s = day_status(MON, evidence, SCHED, [out])
    assert s.status is Status.PRESENT and s.last_out == at(MON, 16) and s.on_site == 8 * H
    # Applied in the order they were made: a visit added after the void stays.
    later = Correction(4, MON, CorrectionKind.ADD_VISIT, at(MON, 9, 0), at(MON, 16, 0))
    s = day_status(MON, evidence, SCHED, [later, void])
    assert s.on_site == 7 * H and s.status is Status.LATE


def test_visits_from_presences_merge_within_gap():
    d = MON
    spans = [(at(d, 8), at(d, 8, 1)), (at(d, 8, 30), at(d, 8, 31)), (at(d, 12), at(d, 12, 2))]
    v = visits_from_presences(spans, max_gap=45 * M)
    assert [(x.start, x.end) for x in v] == [(at(d, 8), at(d, 8, 31)), (at(d, 12), at(d, 12, 2))]


def test_a_month_with_a_dst_change_and_an_overnight_shift():
    # March 2026 in Berlin: weekday day shifts, Friday night shifts, a holiday.
    week = {d: (Shift(time(8), time(16)),) for d in range(4)}
    week[4] = (Shift(time(22), time(6)),)
    holiday = date(2026, 3, 17)
    sched = Schedule(tz=BERLIN, week=week, holidays=frozenset({holiday}))
    first, last = date(2026, 3, 1), date(2026, 3, 31)
    visits, expected = [], {}
    d = first
    while d <= last:
        wd = d.weekday()
        if d == holiday:
            expected[d] = Status.HOLIDAY
        elif wd < 4:
            if d.day % 7 == 3:
                visits.append(visit(d, (8, 30), (16, 0)))
                expected[d] = Status.LATE
            elif d.day % 7 == 5:
                expected[d] = Status.ABSENT
            else:
                visits.append(visit(d, (7, 55), (16, 5)))
                expected[d] = Status.PRESENT
        elif wd == 4:
            visits.append(Visit(at(d, 21, 50), at(d + timedelta(days=1), 6, 5)))
            expected[d] = Status.PRESENT
        else:
            expected[d] = Status.OFF
        d += timedelta(days=1)
    got = period_statuses(first, last, visits, sched)
    assert {s.day: s.status for s in got} == expected
    total = sum((s.on_site for s in got), timedelta(0))
    assert total == sum(((v.end - v.start) for v in visits), timedelta(0))
    # The night of Friday 27 -> Saturday 28 is an ordinary 8 h; Sunday 29 is 23 h long.
    fri = next(s for s in got if s.day == date(2026, 3, 27))
    assert fri.scheduled == 8 * H and fri.on_site == 8 * H + 15 * M


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="ends before"):
        Visit(at(MON, 9), at(MON, 8))
    with pytest.raises(ValueError, match="aware"):
        Visit(datetime(2026, 3, 2, 8), datetime(2026, 3, 2, 9))
    with pytest.raises(ValueError, match="period"):
        period_statuses(MON, MON - timedelta(days=1), [], SCHED)


def test_a_day_is_judged_only_as_far_as_it_has_happened():
    # Before 08:05 nobody is absent yet; during the shift nobody has left early yet.
    assert day_status(MON, [], SCHED, now=at(MON, 7, 0)).status is Status.UPCOMING
    assert day_status(MON, [], SCHED, now=at(MON, 8, 6)).status is Status.ABSENT
    morning = [visit(MON, (7, 58), (11, 0))]
    assert day_status(MON, morning, SCHED, now=at(MON, 11, 0)).status is Status.PRESENT
    assert day_status(MON, morning, SCHED, now=at(MON, 17, 0)).status is Status.LEFT_EARLY
    assert day_status(MON, morning, SCHED).status is Status.LEFT_EARLY  # no now: all happened
