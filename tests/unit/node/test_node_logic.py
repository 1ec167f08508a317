"""Pure logic of the node: tracker, should-send, idle state machine, gates, token file."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from facegrid_node.motion import IdleController, MotionDetector
from facegrid_node.quality import DarknessGate, blur, region_quality
from facegrid_node.settings import NodeSettings
from facegrid_node.token_file import TokenFile, TokenFileError
from facegrid_node.tracker import IoUTracker, SendRule, iou

from facegrid.contract import NodeState

pytestmark = pytest.mark.unit


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)


@pytest.mark.parametrize(("warmup", "expected"), [(1, [0, 3, 6]), (3, [0, 1, 2, 5, 8])])
def test_tracker_keeps_a_face_and_embeds_only_every_k(warmup, expected):
    tr = IoUTracker(iou_threshold=0.3, max_age_s=1.0, reembed_every=3, reembed_iou=0.6,
                    warmup=warmup)
    embeds, ids = [], set()
    for i in range(9):
        (t,) = tr.update(np.array([[100 + i, 100, 200 + i, 220]]), np.array([0.99]), i * 0.1)
        ids.add(t.track_id)
        if tr.needs_embedding(t):
            tr.embedded(t)
            t.aggregate.add(_unit(np.ones(512)), 0.9)
            embeds.append(i)
    assert len(ids) == 1
    assert embeds == expected  # the first `warmup` detections, then every k


def test_tracker_reembeds_when_the_box_jumps_and_splits_far_faces():
    tr = IoUTracker(iou_threshold=0.3, reembed_every=100, reembed_iou=0.6)
    (a,) = tr.update(np.array([[0, 0, 100, 100]]), np.array([0.9]), 0.0)
    tr.embedded(a)
    (a2,) = tr.update(np.array([[40, 0, 140, 100]]), np.array([0.9]), 0.1)
    assert a2 is a and tr.needs_embedding(a)  # IoU 0.43: same track, box moved a lot
    b, c = tr.update(np.array([[40, 0, 140, 100], [400, 0, 500, 100]]),
                     np.array([0.9, 0.8]), 0.2)
    assert b is a and c.track_id != a.track_id


def test_tracker_forgets_unseen_tracks():
    tr = IoUTracker(max_age_s=1.0)
    (a,) = tr.update(np.array([[0, 0, 100, 100]]), np.array([0.9]), 0.0)
    assert tr.update(np.zeros((0, 4)), np.zeros(0), 0.5) == []
    assert a.track_id in tr.tracks
    tr.expire(1.6)
    assert a.track_id in tr.tracks  # missed only one detector run: a slow machine, keep it
    tr.update(np.zeros((0, 4)), np.zeros(0), 1.7)
    tr.update(np.zeros((0, 4)), np.zeros(0), 1.8)
    assert tr.tracks == {}  # long enough AND missed 3 runs
    (b,) = tr.update(np.array([[0, 0, 100, 100]]), np.array([0.9]), 2.0)
    assert b.track_id != a.track_id
    for i in range(50):  # seen by every detector run, however slow: one track
        (c,) = tr.update(np.array([[0, 0, 100, 100]]), np.array([0.9]), 3.0 + 5 * i)
        assert c is b


def test_send_rule():
    rule = SendRule(send_distance=0.25, resend_interval_s=10.0)
    tr = IoUTracker()
    (t,) = tr.update(np.array([[0, 0, 10, 10]]), np.array([0.9]), 0.0)
    e = _unit(np.arange(512) % 7 + 1.0)
    assert rule.should_send(t, e, 0.0)  # new track
    tr.sent(t, e, 0.0)
    near = _unit(e + 0.01 * np.sin(np.arange(512)))
    assert not rule.should_send(t, near, 1.0)
    far = _unit(np.cos(np.arange(512)))
    assert 1 - far @ e > 0.25 and rule.should_send(t, far, 1.0)
    assert rule.should_send(t, near, 10.0)  # resend interval passed


def test_idle_controller_goes_idle_and_wakes():
    c = IdleController(idle_after_s=5.0, now=0.0)
    assert c.update(1.0, motion=True) is None
    assert c.update(4.0, motion=False, faces=1) is None  # a face keeps it awake
    assert c.update(8.9, motion=False) is None
    t = c.update(9.0, motion=False)
    assert t and t.new is NodeState.IDLE and t.seconds_in_old == pytest.approx(9.0)
    assert c.update(30.0, motion=False) is None and c.state is NodeState.IDLE
    t = c.update(30.1, motion=True)
    assert t and t.new is NodeState.ACTIVE and c.seconds_in_state(31.0) == pytest.approx(0.9)


def test_motion_detector_on_real_changes():
    rng = np.random.default_rng(1)
    still = (rng.random((480, 640)) * 60 + 80).astype(np.uint8)
    m = MotionDetector(threshold=0.004)
    assert not m.update(still)  # first frame: nothing to compare
    noisy = np.clip(still.astype(int) + rng.integers(-3, 4, still.shape), 0, 255).astype(np.uint8)
    assert not m.update(noisy)  # sensor noise is not motion
    moved = noisy.copy()
    moved[100:300, 200:330] = 250  # something bright walked in
    assert m.update(moved) and m.last_score > 0.05


def test_darkness_gate_warns_once_per_episode(caplog):
    g = DarknessGate(threshold=30, window=3)
    assert not g.check(100)
    vals = [g.check(v) for v in (5, 5, 5, 5, 5)]
    assert vals == [False, False, True, True, True]  # mean over 3 frames drops below 30
    assert [g.check(v) for v in (200, 200)] == [False, False]
    assert [g.check(0) for _ in range(3)] == [False, False, True]
    assert g.episodes == 2
    assert sum("too dark" in r.message for r in caplog.records) == 2


def test_blur_and_region_quality():
    sharp = np.zeros((100, 100), np.uint8)
    sharp[:, ::2] = 255
    flat = np.full((100, 100), 128, np.uint8)
    assert blur(sharp) > 1000 > blur(flat) == 0
    q = region_quality(sharp, (-10, -10, 50.4, 50.6))  # clipped, never empty
    assert q.brightness == pytest.approx(127.5, abs=3) and q.blur > 0
    assert region_quality(flat, (99, 99, 99, 99)).brightness == 128


def test_token_file_rotation(tmp_path):
    p = tmp_path / "token"
    p.write_text("aaa.bbb.ccc\n")
    tf = TokenFile(p, check_interval_s=0)
    assert tf.token == "aaa.bbb.ccc"
    new = tmp_path / "token.new"
    new.write_text("ddd.eee.fff")
    os.replace(new, p)  # atomic swap, as Kubernetes does
    assert tf.token == "ddd.eee.fff" and tf.reloads == 2
    p.write_text("not a token")
    time.sleep(0.01)
    assert tf.token == "ddd.eee.fff"  # a bad file keeps the last good token
    p.unlink()
    assert tf.token == "ddd.eee.fff"
    with pytest.raises(TokenFileError):
        (tmp_path / "empty").write_text("")
        TokenFile(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        TokenFile(tmp_path / "missing")


def test_settings_from_env_and_validation(monkeypatch):
    monkeypatch.setenv("FACEGRID_NODE_ID", "door-2")
    monkeypatch.setenv("FACEGRID_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("FACEGRID_METRICS_PORT", "9200")
    s = NodeSettings()
    assert (s.node_id, s.timezone, s.metrics_port) == ("door-2", "Europe/Berlin", 9200)
    with pytest.raises(ValueError, match="time zone"):
        NodeSettings(timezone="Mars/Olympus")
    with pytest.raises(ValueError):
        NodeSettings(node_id="Bad_Name")
    with pytest.raises(ValueError, match="redis_url"):
        NodeSettings(redis_url="http://x")


def test_camera_size_resizes_frames_and_needs_both_sides(tmp_path):
    """FACEGRID_CAMERA_WIDTH/HEIGHT (set by the operator from spec.camera) shape the frames."""
    import cv2
    import numpy as np
    from facegrid_node.settings import NodeSettings
    from facegrid_node.sources import open_source

    for i in range(2):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((480, 640, 3), 100 + i, np.uint8))
    s = NodeSettings(camera=str(tmp_path), camera_width=320, camera_height=240)
    src = open_source(s.camera, realtime=False, size=s.camera_size)
    src.open()
    assert src.read().shape == (240, 320, 3)
    src.close()
    assert NodeSettings().camera_size is None
    with pytest.raises(ValueError, match="together"):
        NodeSettings(camera_width=320)
