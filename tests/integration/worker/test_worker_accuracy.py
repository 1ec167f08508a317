"""Recognition accuracy of the worker's matcher on real photos with the node's real embedder.

Enroll the first 5 photos of every faces/lfw_dev person, identify their other
photos, and check that no photo of faces/lfw_dev_unknown is accepted.  Uses
the worker's own defaults (threshold, k) from WorkerSettings.
"""

from __future__ import annotations

import numpy as np
import pytest
from facegrid_services.worker.gallery import Gallery
from facegrid_services.worker.settings import WorkerSettings

pytestmark = [pytest.mark.integration, pytest.mark.models]
ENROLL = 5


def test_lfw_identification_and_strangers(lfw_embeddings):
    s = WorkerSettings(public_key_file="unused.pub")
    known = {p: v for p, v in lfw_embeddings.items()
             if v and v[0][0].parent.parent.name == "lfw_dev"}
    unknown = {p: v for p, v in lfw_embeddings.items()
               if v and v[0][0].parent.parent.name == "lfw_dev_unknown"}
    assert known and unknown
    rows, probes, labels, names = [], [], [], sorted(known)
    for pid, name in enumerate(names):
        photos = [e for _, e in sorted(known[name], key=lambda x: x[0].name) if e is not None]
        rows += [(pid, e.tobytes()) for e in photos[:ENROLL]]
        probes += photos[ENROLL:]
        labels += [pid] * len(photos[ENROLL:])
    gallery = Gallery.from_rows(s.model, rows)
    strangers = [e for v in unknown.values() for _, e in v if e is not None]
    m = gallery.match(np.stack(probes), s.threshold, s.knn_k)
    labels = np.asarray(labels)
    rank1 = float((m.person_ids == labels).mean())
    accepted_right = float(((m.person_ids == labels) & m.recognised).mean())
    mu = gallery.match(np.stack(strangers), s.threshold, s.knn_k)
    far = float(mu.recognised.mean())
    suggested = gallery.suggest_threshold(s.target_far)
    print(f"\nLFW dev: {len(names)} people enrolled ({len(rows)} photos), {len(probes)} probes, "
          f"{len(strangers)} stranger photos; threshold {s.threshold}, k {s.knn_k}: "
          f"rank-1 {rank1:.2%}, correct-accept {accepted_right:.2%}, "
          f"false-accept {far:.2%}; suggested threshold {suggested:.3f}")
    assert rank1 >= 0.98
    assert far <= 0.01
