"""Gallery matching, threshold grid and threshold suggestion (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest
from facegrid_services.worker.gallery import THRESHOLD_GRID, Gallery, threshold_counts
from facegrid_services.worker.synthetic import near, unit_vectors

pytestmark = pytest.mark.unit


def _gallery(rng, people=20, per=5, noise=0.03):
    centres = unit_vectors(people, rng)
    rows = [(pid + 100, near(centres[pid], rng, noise).tobytes())
            for pid in range(people) for _ in range(per)]
    return centres, Gallery.from_rows("m", rows)


def test_identifies_people_and_rejects_strangers():
    rng = np.random.default_rng(1)
    centres, g = _gallery(rng)
    assert (g.size, g.people) == (100, 20)
    probes = np.stack([near(c, rng) for c in centres])
    strangers = unit_vectors(50, rng)
    m = g.match(np.vstack([probes, strangers]), threshold=0.5, k=3)
    assert m.person_ids[:20].tolist() == list(range(100, 120))
    assert m.recognised[:20].all()
    assert not m.recognised[20:].any()
    assert np.all(m.scores[:20] > 0.6) and np.all(m.scores[20:] < 0.3)


def test_vote_beats_a_single_close_outlier():
    # Person 1 has one row very close to the probe, person 2 has three close rows:
    # the weighted vote picks person 2, with its own best similarity as score.
    rng = np.random.default_rng(2)
    probe = unit_vectors(1, rng)[0]
    rows = [(1, near(probe, rng, 0.001).tobytes()), (1, unit_vectors(1, rng)[0].tobytes())]
    rows += [(2, near(probe, rng, 0.05).tobytes()) for _ in range(3)]
    g = Gallery.from_rows("m", rows)
    m = g.match(probe[None, :], threshold=0.5, k=4)
    assert m.person_ids[0] == 2
    assert 0.5 < m.scores[0] < 0.9999
    m1 = g.match(probe[None, :], threshold=0.5, k=1)
    assert m1.person_ids[0] == 1 and m1.scores[0] > 0.999


def test_empty_gallery_and_empty_batch():
    g = Gallery.empty("m")
    rng = np.random.default_rng(3)
    m = g.match(unit_vectors(4, rng), 0.5)
    assert m.person_ids.tolist() == [-1] * 4 and not m.recognised.any()
    _, g2 = _gallery(rng)
    assert g2.match(np.zeros((0, 512), np.float32), 0.5).scores.shape == (0,)
    assert g.suggest_threshold() is None


def test_unusable_stored_rows_are_skipped():
    rng = np.random.default_rng(4)
    good = unit_vectors(1, rng)[0]
    g = Gallery.from_rows("m", [(1, good.tobytes()), (2, b"short"),
                                (3, np.full(512, np.nan, np.float32).tobytes()),
                                (4, np.zeros(512, np.float32).tobytes())])
    assert g.size == 1 and g.labels.tolist() == [1]


def test_threshold_counts():
    scores = np.array([0.1, 0.3, 0.52, 0.9], np.float32)
    counts = threshold_counts(scores)
    assert len(counts) == len(THRESHOLD_GRID)
    assert dict(zip(THRESHOLD_GRID, counts, strict=True))[0.5] == 2
    assert dict(zip(THRESHOLD_GRID, counts, strict=True))[0.3] == 3
    assert threshold_counts(np.zeros(0, np.float32)) == [0] * len(THRESHOLD_GRID)


def test_suggested_threshold_separates_impostors():
    rng = np.random.default_rng(5)
    _, g = _gallery(rng, people=40, per=3, noise=0.3)
    imp = g.impostor_scores()
    assert imp.size == g.size
    t = g.suggest_threshold(target_far=0.01)
    assert (imp >= t).mean() <= 0.01
    # random 512-d directions: impostor similarity is near 0, so the threshold is low
    assert -0.1 < t < 0.4
