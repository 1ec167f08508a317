"""Template matching, threshold grid and threshold suggestion (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest
from facegrid_services.worker.gallery import THRESHOLD_GRID, Gallery, threshold_counts
from fixtures.synthetic import near, unit_vectors

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
    m = g.match(np.vstack([probes, strangers]), threshold=0.5)
    assert m.person_ids[:20].tolist() == list(range(100, 120))
    assert m.recognised[:20].all()
    assert not m.recognised[20:].any()
    assert np.all(m.scores[:20] > 0.6) and np.all(m.scores[20:] < 0.3)


def test_templates_are_normalised_means_of_each_person():
    rng = np.random.default_rng(2)
    a, b = unit_vectors(2, rng)
    rows = [(7, near(a, rng, 0.2).tobytes()) for _ in range(5)]
    rows += [(3, (2.0 * b).tobytes())]  # stored rows are normalised before averaging
    g = Gallery.from_rows("m", rows)
    assert g.person_ids.tolist() == [3, 7] and g.counts.tolist() == [1, 5]
    assert (g.size, g.people) == (6, 2)
    mean = np.mean([np.frombuffer(r, np.float32) / np.linalg.norm(np.frombuffer(r, np.float32))
                    for _, r in rows[:5]], axis=0)
    np.testing.assert_allclose(g.templates[1], mean / np.linalg.norm(mean), atol=1e-6)
    np.testing.assert_allclose(g.templates[0], b, atol=1e-6)
    assert np.allclose(np.linalg.norm(g.templates, axis=1), 1.0, atol=1e-6)


def test_score_is_the_similarity_to_the_template_not_to_one_photo():
    # Person 1 has one photo identical to the probe and two far from it; person 2 has
    # three photos near the probe: the template of person 2 is closer, and the score is
    # the cosine to that template (a single look-alike photo does not win).
    rng = np.random.default_rng(3)
    probe = unit_vectors(1, rng)[0]
    rows = [(1, probe.tobytes())] + [(1, v.tobytes()) for v in unit_vectors(2, rng)]
    rows += [(2, near(probe, rng, 0.05).tobytes()) for _ in range(3)]
    g = Gallery.from_rows("m", rows)
    m = g.match(probe[None, :], threshold=0.5)
    assert m.person_ids[0] == 2 and m.recognised[0]
    assert m.scores[0] == pytest.approx(float(g.templates[1] @ probe), abs=1e-6)
    assert m.scores[0] < 0.9999
    # templates_only keeps the matching result and drops the photos.
    t = g.templates_only()
    assert t.matrix.shape == (0, 512) and t.size == 6
    assert t.match(probe[None, :], 0.5).person_ids.tolist() == [2]
    assert t.suggest_threshold() is None


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
    assert g.size == 1 and g.person_ids.tolist() == [1]


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
    # Each photo's impostor score is its best cosine to ANOTHER person's template.
    own = g.matrix @ g.templates.T
    own[np.arange(g.size), g.columns] = -np.inf
    np.testing.assert_allclose(imp, own.max(axis=1), atol=1e-6)
    t = g.suggest_threshold(target_far=0.01)
    assert (imp >= t).mean() <= 0.01
    # random 512-d directions: impostor similarity is near 0, so the threshold is low
    assert -0.1 < t < 0.4
    # ... and the people themselves pass it: a photo against its own template.
    genuine = (g.matrix * g.templates[g.columns]).sum(axis=1)
    assert (genuine >= t).all()
    single = Gallery.from_rows("m", [(1, unit_vectors(1, rng)[0].tobytes())])
    assert single.suggest_threshold() is None
