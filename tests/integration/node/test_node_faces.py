"""The face models on real photos: conversion, embedding API, LFW verification."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pytestmark = pytest.mark.models


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a same-person pair scores above a different-person pair."""
    scores = np.concatenate([pos, neg])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2)
                 / (len(pos) * len(neg)))


def test_converted_weights_match_opencv(test_weights):
    import cv2
    import torch
    from facegrid_vision.convert import find_graph, verify

    net = cv2.dnn.readNetFromTensorflow(str(find_graph()))
    state = torch.load(test_weights, map_location="cpu", weights_only=True)
    diff = verify(net, state, samples=2, seed=7)
    print(f"max |torch - opencv| = {diff:.2e}")
    assert diff <= 1e-4


def test_conversion_refuses_a_wrong_model(tmp_path, monkeypatch):
    """A mapping error must fail loudly and write nothing."""
    from facegrid_vision import convert as conv

    real = conv._plain_convs

    def swapped():  # two residual projections exchanged: same shapes, wrong model
        m = real()
        m["repeat_1.0.conv2d"], m["repeat_1.1.conv2d"] = (m["repeat_1.1.conv2d"],
                                                          m["repeat_1.0.conv2d"])
        return m

    monkeypatch.setattr(conv, "_plain_convs", swapped)
    out = tmp_path / "w.pt"
    with pytest.raises(conv.ConversionError, match="differs from OpenCV"):
        conv.convert(out, samples=1)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_embeddings_are_unit_batched_and_tagged(face_analyzer, shared_data):
    import cv2

    img = cv2.imread(str(shared_data / "media/multi_face/friends_cast_6_faces.jpg"))
    rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    faces = face_analyzer.analyze(rgb)
    assert len(faces) >= 5
    assert face_analyzer.model_id == "facenet-casia-webface"
    boxes = np.array([f.box for f in faces], np.float32)
    batch = face_analyzer.embed(rgb, boxes)
    assert batch.shape == (len(faces), 512) and batch.dtype == np.float32
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    single = np.stack([face_analyzer.embed(rgb, boxes[i:i + 1])[0] for i in range(len(boxes))])
    assert np.abs(single - batch).max() < 1e-4  # batching does not change the result
    # Different people in one photo are far apart.
    sims = batch @ batch.T
    assert sims[~np.eye(len(faces), dtype=bool)].max() < 0.7


def test_bad_images_get_a_clear_error(face_analyzer):
    with pytest.raises(ValueError, match="RGB"):
        face_analyzer.analyze(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        face_analyzer.analyze(np.zeros((50, 50, 3), np.float32))
    assert face_analyzer.analyze(np.zeros((120, 160, 3), np.uint8)) == []


def test_lfw_verification(lfw_embeddings):
    known = {p: [e for _, e in v if e is not None]
             for p, v in lfw_embeddings.items() if len(v) > 1}
    unknown = [v[0][1] for p, v in lfw_embeddings.items() if len(v) == 1 and v[0][1] is not None]
    total = sum(len(v) for v in lfw_embeddings.values())
    found = sum(len(v) for v in known.values()) + len(unknown)
    assert len(known) >= 30 and found >= 0.97 * total
    pos = [float(a @ b) for v in known.values() for a, b in itertools.combinations(v, 2)]
    people = list(known)
    neg = [float(a @ b) for p, q in itertools.combinations(people, 2)
           for a, b in itertools.product(known[p][:5], known[q][:5])]
    neg += [float(u @ e) for u in unknown for v in known.values() for e in v[:3]]
    pos_a, neg_a = np.array(pos), np.array(neg)
    auc = _auc(pos_a, neg_a)
    ths = np.linspace(-0.2, 1.0, 241)
    accs = [((pos_a > t).mean() * len(pos_a) + (neg_a <= t).mean() * len(neg_a))
            / (len(pos_a) + len(neg_a)) for t in ths]
    best = int(np.argmax(accs))
    print(f"\nLFW dev verification: {len(pos)} same / {len(neg)} different pairs, "
          f"faces found {found}/{total}, AUC {auc:.4f}, best accuracy {accs[best]:.4f} at "
          f"cosine {ths[best]:.3f}; mean same {pos_a.mean():.3f}, mean different "
          f"{neg_a.mean():.3f}")
    assert pos_a.mean() > neg_a.mean() + 0.3
    assert auc > 0.95
    assert accs[best] > 0.9
