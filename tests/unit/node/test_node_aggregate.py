"""Track-level identity on the node: face quality, the quality-weighted aggregate, when to send."""

from __future__ import annotations

import numpy as np
import pytest
from facegrid_node.aggregate import TrackAggregate, face_quality, pose
from facegrid_node.tracker import IoUTracker, SendRule

pytestmark = pytest.mark.unit
FRONTAL = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], np.float32)


def _unit(v):
    v = np.asarray(v, np.float64)
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_pose_of_frontal_turned_and_tilted_faces():
    yaw, roll = pose(FRONTAL)
    assert yaw == pytest.approx(0.0) and roll == pytest.approx(0.0)
    turned = FRONTAL.copy()
    turned[2, 0] = 68  # nose under the right eye: a strong turn
    assert pose(turned)[0] == pytest.approx(0.9)
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    tilted = FRONTAL @ np.array([[c, s], [-s, c]], np.float32)
    assert pose(tilted)[1] == pytest.approx(30.0, abs=1e-3)


def test_face_quality_factors():
    good = face_quality((0, 0, 100, 120), 0.999, blur=200.0, landmarks=FRONTAL)
    assert good == pytest.approx(1.0)
    assert face_quality((0, 0, 20, 20), 0.999, blur=200.0) == 0.0  # too small
    assert face_quality((0, 0, 100, 120), 0.999, blur=3.0) == 0.0  # smeared
    assert face_quality((0, 0, 100, 120), 0.5, blur=200.0) == 0.0  # doubtful detection
    profile = FRONTAL.copy()
    profile[2, 0] = 72
    assert face_quality((0, 0, 100, 120), 0.999, 200.0, profile) == 0.0
    mid = face_quality((0, 0, 48, 60), 0.999, blur=200.0)
    assert 0.3 < mid < 0.7  # half-way in size: half the weight


def test_aggregate_is_the_quality_weighted_mean_and_ignores_gated_faces():
    rng = np.random.default_rng(3)
    a, b = _unit(rng.normal(size=512)), _unit(rng.normal(size=512))
    agg = TrackAggregate(gate=0.35)
    agg.add(a, 0.1)  # below the gate: tracked, not deciding
    assert not agg.decisive and agg.frames == 1
    np.testing.assert_array_equal(agg.embedding(), a)  # only the latest frame to send
    assert agg.summary().weight == 0.0
    agg.add(a, 0.9)
    agg.add(b, 0.3)  # below the gate again
    agg.add(b, 0.45)
    expected = _unit(0.9 * a.astype(np.float64) + 0.45 * b)
    np.testing.assert_allclose(agg.embedding(), expected, atol=1e-6)
    s = agg.summary()
    assert (s.frames, s.weight, s.face_quality) == (4, pytest.approx(1.35), 0.45)


def test_send_rule_sends_the_aggregate_log_spaced():
    rule = SendRule(send_distance=0.25, resend_interval_s=60.0)
    tracker = IoUTracker(quality_gate=0.35)
    rng = np.random.default_rng(5)
    base = rng.normal(size=512)
    sent = []
    for i in range(40):  # one person, 40 embeddings of quality 0.8
        (t,) = tracker.update(np.array([[0, 0, 100, 100]]), np.array([0.99]), i * 0.5)
        t.aggregate.add(_unit(base + 0.3 * rng.normal(size=512)), 0.8)
        agg = t.aggregate.embedding()
        if rule.should_send(t, agg, i * 0.5):
            tracker.sent(t, agg, i * 0.5)
            sent.append(t.aggregate.frames)
    assert sent == [1, 2, 4, 8, 16, 32]  # log2(frames), not one event per frame


def test_send_rule_sends_when_a_track_first_becomes_decisive():
    rule = SendRule(send_distance=0.25, resend_interval_s=60.0)
    tracker = IoUTracker(quality_gate=0.35)
    e = _unit(np.arange(512) % 7 + 1.0)
    (t,) = tracker.update(np.array([[0, 0, 100, 100]]), np.array([0.99]), 0.0)
    t.aggregate.add(e, 0.1)
    assert rule.should_send(t, t.aggregate.embedding(), 0.0)
    tracker.sent(t, t.aggregate.embedding(), 0.0)
    t.aggregate.add(e, 0.1)
    assert not rule.should_send(t, t.aggregate.embedding(), 1.0)  # still nothing decisive
    t.aggregate.add(e, 0.5)
    assert rule.should_send(t, t.aggregate.embedding(), 2.0)  # first decisive face
    tracker.sent(t, t.aggregate.embedding(), 2.0)
    assert t.sent_weight == pytest.approx(0.5)
    assert not rule.should_send(t, t.aggregate.embedding(), 3.0)
    assert rule.should_send(t, t.aggregate.embedding(), 62.0)  # resend interval: still here
