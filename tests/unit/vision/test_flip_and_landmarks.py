"""FaceAnalyzer's mirror-image averaging and landmark detection, with stand-in networks."""

from __future__ import annotations

import numpy as np
import pytest
from facegrid_vision.faces import FaceAnalyzer
from facegrid_vision.mtcnn import Detections

pytestmark = pytest.mark.unit


class LeftRightNet:
    """A stand-in embedder that sees which half of the crop is brighter."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        left = x[:, :, :, :80].mean(axis=(1, 2, 3))
        right = x[:, :, :, 80:].mean(axis=(1, 2, 3))
        out = np.zeros((len(x), 512), np.float32)
        out[:, 0] = 1.0
        out[:, 1] = left - right
        return out


class OneFace:
    def detect_many(self, imgs):
        boxes = np.array([[10, 20, 110, 140], [0, 0, 1, 1]], np.float32)
        lms = np.tile(np.array([[40, 60], [80, 60], [60, 80], [45, 110], [75, 110]],
                               np.float32), (2, 1, 1))
        return [Detections(boxes, np.array([0.99, 0.5], np.float32), lms) for _ in imgs]


def test_flip_averaging_cancels_left_right_asymmetry():
    crops = np.zeros((2, 160, 160, 3), np.uint8)
    crops[0, :, :80] = 200  # bright left half
    crops[1, :, 80:] = 200  # bright right half
    plain = FaceAnalyzer(OneFace(), LeftRightNet(), "m", flip=False).embed_crops(crops)
    flipped = FaceAnalyzer(OneFace(), LeftRightNet(), "m", flip=True).embed_crops(crops)
    assert plain[0, 1] > 0.5 and plain[1, 1] < -0.5  # the asymmetry dominates
    np.testing.assert_allclose(flipped[:, 1], 0.0, atol=1e-6)  # and cancels out
    np.testing.assert_allclose(np.linalg.norm(flipped, axis=1), 1.0, atol=1e-6)


def test_detect_landmarks_keeps_the_points_of_the_faces_kept():
    a = FaceAnalyzer(OneFace(), LeftRightNet(), "m", det_threshold=0.9)
    boxes, probs, lms = a.detect_landmarks(np.zeros((240, 320, 3), np.uint8))
    assert boxes.shape == (1, 4) and probs.tolist() == pytest.approx([0.99])
    assert lms.shape == (1, 5, 2) and lms[0, 2].tolist() == [60, 80]
