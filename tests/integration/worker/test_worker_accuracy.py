"""Recognition accuracy of the worker's matcher on real photos with the node's real embedder.

Enroll the first 5 photos of every faces/lfw_dev person (one template each),
identify their other photos, and check that photos of faces/lfw_dev_unknown
are not accepted, at the worker's default threshold (WorkerSettings).

The default threshold is not tuned on these probes or strangers: it comes
from :func:`calibrate_threshold`, which only looks at how photos of people who
are NOT enrolled score (random halves of lfw_dev), and this test checks that
the default still agrees with that calibration.
"""

from __future__ import annotations

import numpy as np
import pytest
from facegrid_services.worker.gallery import Gallery
from facegrid_services.worker.settings import WorkerSettings

pytestmark = [pytest.mark.integration, pytest.mark.models]
ENROLL = 5
TARGET_FAR = 0.01


def _people(lfw_embeddings, subset: str) -> dict[str, np.ndarray]:
    """person -> (n, 512) embeddings of the photos with a face, in file-name order."""
    out = {}
    for person, photos in sorted(lfw_embeddings.items()):
        if not photos or photos[0][0].parent.parent.name != subset:
            continue
        embs = [e for _, e in sorted(photos, key=lambda x: x[0].name) if e is not None]
        if embs:
            out[person] = np.stack(embs)
    return out


def _gallery(people: list[np.ndarray]) -> Gallery:
    rows = [(pid, e.tobytes()) for pid, embs in enumerate(people) for e in embs[:ENROLL]]
    return Gallery.from_rows("facenet-casia-webface", rows)


def calibrate_threshold(people: list[np.ndarray], far: float = TARGET_FAR, splits: int = 20,
                        seed: int = 0) -> float:
    """Median over random halvings of ``people`` of the threshold that accepts ``far``
    of the non-enrolled half's photos (their best template score against the other half).

    Uses impostor scores only: no genuine probe and no stranger photo decides it.
    """
    rng = np.random.default_rng(seed)
    found = []
    for _ in range(splits):
        order = rng.permutation(len(people))
        enrolled, others = order[: len(people) // 2], order[len(people) // 2:]
        g = _gallery([people[i] for i in enrolled])
        best = g.match(np.concatenate([people[i] for i in others]), 1.0).scores
        found.append(float(np.quantile(best, 1.0 - far, method="higher")))
    return float(np.median(found))


def test_lfw_identification_and_strangers(lfw_embeddings):
    s = WorkerSettings(public_key_file="unused.pub")
    known = _people(lfw_embeddings, "lfw_dev")
    strangers = np.concatenate(list(_people(lfw_embeddings, "lfw_dev_unknown").values()))
    assert len(known) >= 20 and len(strangers) >= 20
    people = list(known.values())
    gallery = _gallery(people)
    probes = np.concatenate([e[ENROLL:] for e in people])
    labels = np.concatenate([np.full(len(e[ENROLL:]), pid) for pid, e in enumerate(people)])

    m = gallery.match(probes, s.threshold)
    rank1 = float((m.person_ids == labels).mean())  # closed set: best template is right
    correct_accept = float(((m.person_ids == labels) & m.recognised).mean())
    far = float(gallery.match(strangers, s.threshold).recognised.mean())
    calibrated = calibrate_threshold(people)
    suggested = gallery.suggest_threshold(s.target_far)
    print(f"\nLFW dev: {len(people)} people enrolled ({gallery.size} photos, templates), "
          f"{len(probes)} probes, {len(strangers)} stranger photos; default threshold "
          f"{s.threshold}: rank-1 {rank1:.2%}, correct-accept {correct_accept:.2%}, "
          f"false-accept {far:.2%}; calibrated {calibrated:.3f}, gallery suggestion "
          f"{suggested:.3f} (target FAR {s.target_far:g})")
    for t in (0.45, 0.50, 0.55, 0.58, 0.60, 0.65):  # report only
        ca = float(((gallery.match(probes, t).person_ids == labels)
                    & gallery.match(probes, t).recognised).mean())
        print(f"  threshold {t:.2f}: correct-accept {ca:.2%}, strangers accepted "
              f"{int(gallery.match(strangers, t).recognised.sum())}/{len(strangers)}")
    assert rank1 >= 0.98
    assert correct_accept >= 0.98  # rank-1 at the threshold (open set)
    assert far <= 0.01
    # The default comes from the calibration, not from these probes and strangers.
    assert abs(s.threshold - calibrated) <= 0.02, (s.threshold, calibrated)
    assert suggested is not None and 0.3 < suggested < 0.9
