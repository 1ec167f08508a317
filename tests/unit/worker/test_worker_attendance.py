"""Attendance folding, clock-suspect handling and intruder windows (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from facegrid_services.attendance import (
    Seen,
    alert_key,
    attendance_time,
    is_intrusion,
    plan_attendance,
)

pytestmark = pytest.mark.unit
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_first_and_last_per_person_and_local_day():
    tz = ZoneInfo("America/New_York")  # UTC-5 in March before DST
    seen = [
        Seen(1, T0 + timedelta(hours=9), 7, "b"),  # 17:00 UTC = 12:00 local
        Seen(1, T0, 3, "a"),  # 08:00 UTC = 03:00 local, same local day
        Seen(1, T0 + timedelta(hours=17), 9, "c"),  # 01:00 UTC next day = 20:00 local, same day
        Seen(1, T0 - timedelta(hours=4), 1, "a"),  # 04:00 UTC = 23:00 previous local day
        Seen(2, T0, 5, "a"),
    ]
    ups = {(u.person_id, u.day): u for u in plan_attendance(seen, tz, timedelta(minutes=5))}
    assert set(ups) == {(1, T0.date()), (1, T0.date() - timedelta(days=1)), (2, T0.date())}
    u = ups[(1, T0.date())]
    assert (u.check_in, u.check_in_node, u.check_in_lamport) == (T0, "a", 3)
    assert (u.check_out, u.check_out_node) == (T0 + timedelta(hours=17), "c")
    assert u.visits == 3


def test_equal_times_ordered_by_lamport():
    seen = [Seen(1, T0, 9, "late"), Seen(1, T0, 2, "early"), Seen(1, T0, 5, "mid")]
    (u,) = plan_attendance(seen, ZoneInfo("UTC"), timedelta(minutes=5))
    assert (u.check_in_node, u.check_in_lamport) == ("early", 2)
    assert (u.check_out_node, u.check_out_lamport) == ("late", 9)
    assert u.visits == 1


def test_cooldown_merges_repeats():
    cd = timedelta(minutes=5)
    times = [0, 60, 120, 240, 1000, 1100, 5000]  # seconds: visits {0..240}, {1000,1100}, {5000}
    seen = [Seen(1, T0 + timedelta(seconds=s), i, "n") for i, s in enumerate(times)]
    (u,) = plan_attendance(seen, ZoneInfo("UTC"), cd)
    assert u.visits == 3
    assert u.merge_after == T0 - cd and u.merge_before == T0 + timedelta(seconds=5000) + cd


def test_suspect_clock_uses_receive_time():
    recv = T0
    tol = timedelta(minutes=5)
    assert attendance_time(T0 + timedelta(hours=2), recv, tol) == (recv, True)
    assert attendance_time(T0 + timedelta(minutes=4), recv, tol) == (T0 + timedelta(minutes=4),
                                                                    False)
    # A backlog replayed after an outage is old, not suspect.
    assert attendance_time(T0 - timedelta(days=1), recv, tol) == (T0 - timedelta(days=1), False)


def test_intruder_window_and_dedup_key():
    t = T0 + timedelta(seconds=100)
    recent = [t - timedelta(seconds=s) for s in (0, 10, 20, 30, 50)]
    assert is_intrusion(recent, t, 5, 60)
    assert not is_intrusion(recent, t, 5, 50)  # the 5th is exactly 50 s old: outside
    assert not is_intrusion(recent[:4], t, 5, 600)
    assert alert_key(t, 60) == alert_key(t + timedelta(seconds=10), 60)
    assert alert_key(t, 60) != alert_key(t + timedelta(seconds=60), 60)
