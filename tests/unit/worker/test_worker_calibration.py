"""The threshold in force: calibrated from impostor scores, with its uncertainty, or refused."""

from __future__ import annotations

import numpy as np
import pytest
from facegrid_services.worker.calibration import calibrate, quantile_interval
from facegrid_services.worker.gallery import Gallery
from facegrid_services.worker.synthetic import near, unit_vectors

pytestmark = pytest.mark.unit


def test_quantile_and_its_interval():
    scores = np.linspace(0.0, 1.0, 1001)  # 0.000, 0.001, ... 1.000
    est, low, high = quantile_interval(scores, 0.01)
    assert est == pytest.approx(0.99, abs=0.002)
    assert low < est < high and high - low < 0.02
    est, low, high = quantile_interval(scores[:150], 0.01)  # 150 samples: 1.5 above
    assert high is None  # the interval reaches past the highest score: not bounded


def test_refuses_to_pretend_with_two_people():
    c = calibrate(np.array([0.3, 0.4, 0.5, 0.2, 0.1, 0.35]), 2, target_far=0.01,
                  default=0.58)
    assert (c.threshold, c.source) == (0.58, "default")
    assert "2 people enrolled (need 10)" in c.note
    c = calibrate(np.full(50, 0.4), 25, target_far=0.01, default=0.58)
    assert c.source == "default" and "50 impostor scores (need 100" in c.note


def test_calibrated_pinned_and_floor():
    rng = np.random.default_rng(0)
    imp = rng.normal(0.3, 0.08, 2000)
    c = calibrate(imp, 400, target_far=0.01, default=0.58)
    assert c.source == "gallery" and c.threshold == pytest.approx(np.quantile(imp, 0.99), abs=0.01)
    assert c.low < c.estimate < c.high
    assert calibrate(imp, 400, target_far=0.01, default=0.58, floor=0.7).threshold == 0.7
    pinned = calibrate(imp, 400, target_far=0.01, default=0.58, pinned=0.61)
    assert (pinned.threshold, pinned.source) == (0.61, "setting")
    assert set(c.as_json()) >= {"threshold", "source", "low", "high", "people", "samples"}


def test_threshold_follows_the_gallery_size():
    """More people enrolled: a stranger is likelier to resemble one: the threshold rises."""
    rng = np.random.default_rng(1)
    centres = unit_vectors(400, rng)

    def cal(n):
        rows = [(p, near(c, rng, 0.9).tobytes()) for p, c in enumerate(centres[:n])
                for _ in range(5)]
        g = Gallery.from_rows("m", rows)
        return calibrate(g.impostor_scores(), g.people, target_far=0.01, default=0.58)

    small, large = cal(20), cal(400)
    assert small.source == large.source == "gallery"
    assert large.threshold > small.threshold


def test_centring_from_ten_people_and_projection():
    rng = np.random.default_rng(2)
    shared = unit_vectors(1, rng)[0]
    people = [near(shared, rng, 0.03) for _ in range(12)]  # faces with much in common
    rows = [(p, near(c, rng, 0.01).tobytes()) for p, c in enumerate(people) for _ in range(3)]
    g = Gallery.from_rows("m", rows)
    assert g.centred and not Gallery.from_rows("m", rows[:9 * 3]).centred
    probe = near(people[4], rng, 0.01)
    m = g.match(probe[None], 0.5)
    assert m.person_ids[0] == 4 and m.recognised[0]
    np.testing.assert_allclose(np.linalg.norm(g.project(probe[None]), axis=1), 1.0, atol=1e-6)
    assert not Gallery.from_rows("m", rows, centre_from=0).centred
