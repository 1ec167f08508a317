"""The numpy MTCNN's pieces against plain definitions (no torch, no models)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from facegrid_vision import mtcnn

pytestmark = pytest.mark.unit


def _naive_area(img: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """Adaptive average pooling by its definition (torch's interpolate mode="area")."""
    h, w, c = img.shape
    out = np.zeros((oh, ow, c), np.float64)
    for i in range(oh):
        y0, y1 = (i * h) // oh, -((-(i + 1) * h) // oh)
        for j in range(ow):
            x0, x1 = (j * w) // ow, -((-(j + 1) * w) // ow)
            out[i, j] = img[y0:y1, x0:x1].reshape(-1, c).mean(axis=0)
    return out


@pytest.mark.parametrize(("h", "w", "oh", "ow"), [(37, 53, 12, 17), (24, 24, 24, 24),
                                                  (15, 9, 24, 24), (100, 61, 48, 48)])
def test_area_resize_and_crops_are_adaptive_average_pooling(h, w, oh, ow):
    rng = np.random.default_rng(h * w)
    imgs = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    table = mtcnn.integral(imgs)
    got = mtcnn.area_resize(table, oh, ow)
    for k in range(2):
        assert np.allclose(got[k], _naive_area(imgs[k], oh, ow), atol=1e-4)
    # A crop of the second image, as R-Net/O-Net get them.
    y0, x0, hh, ww = 3, 2, h - 5, w - 4
    crop = mtcnn.area_crops(table, np.array([1]), np.array([y0]), np.array([x0]),
                            np.array([hh]), np.array([ww]), oh, ow)[0]
    assert np.allclose(crop, _naive_area(imgs[1, y0:y0 + hh, x0:x0 + ww], oh, ow), atol=1e-4)


def test_integral_is_exact_in_both_precisions(monkeypatch):
    imgs = np.full((1, 40, 30, 3), 255, np.uint8)
    want = np.zeros((1, 41, 31, 3), np.int64)
    want[:, 1:, 1:] = imgs.astype(np.int64).cumsum(1).cumsum(2)
    assert np.array_equal(mtcnn.integral(imgs), want)
    assert mtcnn.integral(imgs).dtype == np.int32
    # Frames too large for int32 sums take the int64 path.
    big = np.full((1, 3000, 3000, 1), 255, np.uint8)
    t = mtcnn.integral(big)
    assert t.dtype == np.int64 and int(t[0, -1, -1, 0]) == 255 * 9_000_000


def test_pyramid_is_facenet_pytorchs():
    s = mtcnn.pyramid_scales(480, 640, 40)
    assert s[0] == pytest.approx(0.3) and len(s) == 8
    assert all(b == pytest.approx(a * 0.709) for a, b in itertools.pairwise(s))
    assert mtcnn.pyramid_scales(10, 10, 40) == []


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]],
                     np.float32)
    scores = np.array([0.5, 0.9, 0.8, 0.7], np.float32)
    assert mtcnn.nms(boxes, scores, 0.5).tolist() == [1, 2]
    # Per image: the same box in another image is not suppressed.
    groups = np.array([0, 0, 0, 1])
    assert sorted(mtcnn.batched_nms(boxes, scores, groups, 0.5).tolist()) == [1, 2, 3]
    # "Min" overlap: a small box inside a big one goes, whatever the IoU.
    inner = np.array([[0, 0, 100, 100], [10, 10, 30, 30]], np.float32)
    keep = mtcnn.nms_min(inner, np.array([0.9, 0.8], np.float32), np.zeros(2, int), 0.7)
    assert keep.tolist() == [0]
    assert mtcnn.nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).size == 0


def test_detector_runs_any_nets_and_rejects_bad_input():
    """With nets that find nothing the pipeline returns empty results, not errors."""
    def pnet(x):
        n, _, h, w = x.shape
        oh, ow = (h - 2 + 1) // 2 - 4, (w - 2 + 1) // 2 - 4
        return np.zeros((n, 4, oh, ow), np.float32), np.zeros((n, 2, oh, ow), np.float32)

    det = mtcnn.MTCNN(pnet, None, None, min_face_size=40)
    d = det.detect(np.zeros((120, 160, 3), np.uint8))
    assert d.boxes.shape == (0, 4) and d.landmarks.shape == (0, 5, 2)
    with pytest.raises(ValueError, match="uint8"):
        det.detect_many(np.zeros((1, 20, 20, 3), np.float32))


def test_onnxruntime_telemetry_is_off(monkeypatch):
    """The node writes and sends nothing but embeddings: ORT's telemetry is disabled."""
    pytest.importorskip("onnxruntime")
    from facegrid_vision import onnx_backend

    monkeypatch.delenv("ORT_DISABLE_TELEMETRY", raising=False)
    onnx_backend.import_ort()
    import os

    assert os.environ["ORT_DISABLE_TELEMETRY"] == "1"


@pytest.mark.parametrize("seed", range(5))
def test_nms_matrix_and_loop_agree(seed, monkeypatch):
    """Small inputs use one IoU matrix, large ones the pairwise loop: same answers,
    ties and empty boxes included."""
    rng = np.random.default_rng(seed)
    for n in (1, 2, 17, 90, 300):
        xy = rng.uniform(0, 300, (n, 2)).astype(np.float32)
        side = rng.uniform(0, 80, (n, 2)).astype(np.float32)
        side[::7] = 0  # empty boxes: 0/0 never suppresses
        boxes = np.concatenate([xy, xy + side], axis=1)
        scores = rng.uniform(0, 1, n).astype(np.float32)
        scores[: n // 3] = 0.5  # ties keep their input order
        for threshold in (0.5, 0.7):
            matrix = mtcnn.nms(boxes, scores, threshold)
            monkeypatch.setattr(mtcnn, "NMS_MATRIX_MAX", 0)
            loop = mtcnn.nms(boxes, scores, threshold)
            monkeypatch.undo()
            assert matrix.tolist() == loop.tolist()
