"""The presence rule: decide on the aggregate, lock with a clear margin, flip on clear evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from facegrid_services.worker.presence import (
    PENDING,
    RECOGNISED,
    UNKNOWN,
    Observation,
    Presence,
    PresenceRule,
    confirmed_unknown,
    decide,
    fold_embedding,
    history_from_json,
    history_json,
)

pytestmark = pytest.mark.unit
RULE = PresenceRule(threshold=0.60, lock_margin=0.05, lead_margin=0.05, flip_margin=0.10,
                    drop_margin=0.15)
PEOPLE = np.array([11, 22, 33], np.int64)
T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def obs(i: int, a: float, b: float = 0.2, c: float = 0.1, *, decisive: bool = True,
        people=PEOPLE) -> Observation:
    scores = np.array([a, b, c], np.float32)[: len(people)]
    return Observation(T0 + timedelta(seconds=i), scores, people, decisive, frames=i + 1)


def run(scores: list[tuple[float, float]], state: Presence | None = None) -> Presence:
    p = state or Presence()
    for i, (a, b) in enumerate(scores):
        p = decide(p, obs(i, a, b), RULE)
    return p


def test_a_stranger_is_one_unknown_presence_however_many_events():
    p = run([(0.41, 0.30), (0.52, 0.35), (0.58, 0.31), (0.55, 0.33), (0.49, 0.2)] * 4)
    assert p.status == UNKNOWN and p.person_id is None and p.events == 20
    assert len(p.history) == 1  # one decision, never changed
    assert p.best_score == pytest.approx(0.58)


def test_recognised_with_a_clear_margin_locks_and_poor_frames_do_not_flip_it():
    p = run([(0.70, 0.30)])
    assert p.status == RECOGNISED and p.person_id == 11 and p.locked
    # The concert case: later frames score 0.51-0.57, just under the threshold.
    p = run([(0.55, 0.3), (0.51, 0.3), (0.57, 0.3), (0.53, 0.3)], p)
    assert p.status == RECOGNISED and p.person_id == 11 and p.locked
    assert p.score == pytest.approx(0.53)  # the score is refined
    assert len(p.history) == 1


def test_locked_presence_becomes_unknown_only_when_evidence_clearly_drops():
    p = run([(0.70, 0.30), (0.46, 0.3)])  # 0.46 > 0.60 - 0.15: keep
    assert p.status == RECOGNISED
    p = run([(0.44, 0.3)], p)  # below threshold - drop_margin
    assert p.status == UNKNOWN and p.person_id is None and not p.locked
    assert [c.status for c in p.history] == [RECOGNISED, UNKNOWN]


def test_flip_to_another_person_needs_a_clear_lead():
    p = run([(0.70, 0.30)])
    p = run([(0.64, 0.70)], p)  # 22 beats 11 by 0.06 < flip_margin: keep 11
    assert p.person_id == 11
    p = run([(0.60, 0.75)], p)  # by 0.15, and 22 passes the threshold: flip
    assert p.person_id == 22 and p.status == RECOGNISED and p.locked


def test_unlocked_decision_follows_the_aggregate():
    p = run([(0.62, 0.60)])  # above the threshold but no lead over the runner-up
    assert p.status == RECOGNISED and p.person_id == 11 and not p.locked
    p = run([(0.59, 0.40)], p)  # not locked: follows the aggregate to unknown
    assert p.status == UNKNOWN
    p = run([(0.68, 0.40)], p)  # and back, now with a clear margin
    assert p.status == RECOGNISED and p.locked
    assert [c.status for c in p.history] == [RECOGNISED, UNKNOWN, RECOGNISED]


def test_enrolled_person_starting_below_threshold_ends_recognised():
    p = run([(0.55, 0.3), (0.58, 0.3), (0.63, 0.3), (0.66, 0.3)])
    assert p.status == RECOGNISED and p.locked and p.person_id == 11


def test_no_decisive_evidence_stays_pending():
    p = Presence()
    for i in range(5):
        p = decide(p, obs(i, 0.9, decisive=False), RULE)
    assert p.status == PENDING and p.events == 5 and p.frames == 5 and not p.history
    p = decide(p, obs(5, 0.4), RULE)
    assert p.status == UNKNOWN


def test_erased_person_voids_the_lock():
    p = run([(0.75, 0.30)])
    gone = Observation(T0, np.array([0.3, 0.2], np.float32), np.array([22, 33]), True, 3)
    p = decide(p, gone, RULE)
    assert p.status == UNKNOWN and p.person_id is None
    assert decide(Presence(), Observation(T0, np.zeros(0, np.float32), np.zeros(0, np.int64)),
                  RULE).status == UNKNOWN  # empty gallery: everyone unknown


def test_single_person_gallery():
    one = np.array([11], np.int64)
    p = decide(Presence(), obs(0, 0.7, people=one), RULE)
    assert p.status == RECOGNISED and p.locked


def test_fold_embedding_v1_mean_and_v2_replace():
    rng = np.random.default_rng(0)
    a, b = (v / np.linalg.norm(v) for v in rng.normal(size=(2, 512)))
    agg, w = fold_embedding(None, 0.0, a, None)
    agg, w = fold_embedding(agg, w, b, None)
    np.testing.assert_allclose(agg, (a + b) / np.linalg.norm(a + b), atol=1e-6)
    assert w == 2.0
    agg2, w2 = fold_embedding(agg, w, b, 7.5)  # v2: the node's aggregate wins
    np.testing.assert_allclose(agg2, b, atol=1e-7)
    assert w2 == 7.5


def test_confirmed_unknown_and_history_round_trip():
    p = run([(0.4, 0.3)])
    assert not confirmed_unknown(p, 3)
    p = run([(0.4, 0.3)] * 3)
    assert confirmed_unknown(p, 3)
    assert history_from_json(history_json(p.history)) == p.history
    assert history_from_json([{"at": "garbage"}, None]) == ()
