"""UUIDv7, Lamport clock, drift estimation and event time fields."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from facegrid import clock, wire

pytestmark = pytest.mark.unit


def test_uuid7_is_version_7_time_ordered_and_unique():
    ids = [clock.uuid7() for _ in range(20000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    u = uuid.UUID(ids[0])
    assert u.version == 7 and u.variant == uuid.RFC_4122
    assert abs((clock.uuid7_time(ids[0]) - datetime.now(UTC)).total_seconds()) < 5


def test_lamport():
    c = clock.LamportClock()
    assert [c.tick(), c.tick()] == [1, 2]
    assert c.observe(10) == 11
    assert c.observe(3) == 12
    assert c.tick() == 13


def simulate(skew_s: float, jitter_s: float, n: int, seed: int, estimator=None):
    """A node clock `skew_s` behind the server; each leg delayed 0..jitter/2 at random."""
    rng = random.Random(seed)
    est = estimator or clock.DriftEstimator()
    server_now = 1_800_000_000.0
    for _ in range(n):
        server_now += 2.0
        up, down = rng.uniform(0.002, jitter_s / 2), rng.uniform(0.002, jitter_s / 2)
        t_send = server_now - skew_s
        t_server = server_now + up
        t_recv = server_now + up + down - skew_s
        server_now += up + down
        est.add(t_send, t_server, t_recv)
    return est


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("skew_s", [-300.0, -90.0, 0.0, 42.5, 600.0])
def test_drift_within_20ms_with_200ms_jitter(seed, skew_s):
    est = simulate(skew_s, jitter_s=0.200, n=30, seed=seed)
    assert est.offset_ms == pytest.approx(skew_s * 1000, abs=20.0)


def test_drift_follows_a_clock_step():
    est = simulate(90.0, 0.2, 30, seed=1)
    est = simulate(-30.0, 0.2, 30, seed=2, estimator=est)
    assert est.offset_ms == pytest.approx(-30_000, abs=20.0)


def test_drift_starts_at_zero_and_refuses_impossible_samples():
    est = clock.DriftEstimator()
    assert est.offset_ms == 0.0 and not est.has_estimate
    with pytest.raises(ValueError):
        est.add(10.0, 5.0, 9.0)


@pytest.mark.parametrize(("tz", "offset"), [("Europe/Paris", "+01:00"), ("UTC", "+00:00"),
                                            ("America/St_Johns", "-03:30"),
                                            ("Asia/Kolkata", "+05:30")])
def test_event_times(tz, offset):
    t = datetime(2026, 11, 24, 8, 30, 0, 250000, tzinfo=UTC)
    f = clock.event_times(t, -1500.25, tz)
    assert f["timezone"] == tz and f["timezone_offset"] == offset
    assert f["utc_timestamp"] == "2026-11-24T08:30:00.250000Z"
    assert wire.parse_time(f["corrected_utc"]) == t - timedelta(milliseconds=1500.25)
    assert datetime.fromisoformat(f["local_time"]) == t
    assert f["local_time"].endswith(offset)


def test_event_times_refuses_naive():
    with pytest.raises(ValueError):
        clock.event_times(datetime(2026, 1, 1), 0, "UTC")


def test_a_slow_first_exchange_does_not_linger():
    """A cold connection's first round trip is slow (400 ms, all of it on the way back):
    its offset is 200 ms wrong.  The quick samples that follow bound the error by their
    own round trip at once, with no smoothing from the bad first one."""
    est = clock.DriftEstimator()
    ahead = 90.0  # the node clock is 90 s fast: the correction is -90 s
    assert est.warming
    est.add(1000.0 + ahead, 1000.0, 1000.4 + ahead)  # server answered at once; 400 ms back
    assert est.offset_ms == pytest.approx(-ahead * 1000 - 200, abs=1)
    t = 1001.0
    for _ in range(4):
        est.add(t + ahead, t + 0.005, t + 0.010 + ahead)
        t += 0.2
    assert not est.warming
    assert est.offset_ms == pytest.approx(-ahead * 1000, abs=5)


def test_warming_trusts_the_lowest_round_trip():
    est = clock.DriftEstimator(best=5)
    est.add(10.0, 10.010, 10.020)  # 20 ms round trip, offset 0
    est.add(11.0, 11.300, 11.400)  # 400 ms round trip, offset +100 ms
    assert est.warming and est.offset_ms == pytest.approx(0.0, abs=0.001)
