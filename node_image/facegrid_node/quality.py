"""Frame quality: brightness, blur, and the too-dark gate.

``brightness`` is the mean grey level (0–255); ``blur`` the variance of the
Laplacian of the grey frame (low = blurred).  :class:`DarknessGate` averages
brightness over the last N frames and skips frames while that mean is below a
threshold, warning once per dark episode.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FrameQuality:
    brightness: float
    blur: float


def grey(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def brightness(grey_img: np.ndarray) -> float:
    return float(grey_img.mean())


def blur(grey_img: np.ndarray) -> float:
    """Variance of the Laplacian (sharp edges → high values)."""
    import cv2

    return float(cv2.Laplacian(grey_img, cv2.CV_32F).var())


def region_quality(grey_img: np.ndarray, box) -> FrameQuality:
    """Brightness and blur of one face box (what the event's ``quality`` carries)."""
    h, w = grey_img.shape[:2]
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    x1, y1 = max(0, min(x1, w - 1)), max(0, min(y1, h - 1))
    x2, y2 = max(x1 + 1, min(x2, w)), max(y1 + 1, min(y2, h))
    patch = grey_img[y1:y2, x1:x2]
    return FrameQuality(round(brightness(patch), 2), round(blur(patch), 2))


class DarknessGate:
    """Too-dark frames: mean brightness of the last ``window`` frames below ``threshold``."""

    def __init__(self, threshold: float, window: int) -> None:
        self.threshold = threshold
        self._values: deque[float] = deque(maxlen=window)
        self.dark = False
        self.episodes = 0

    def check(self, value: float) -> bool:
        """Record one frame's brightness; True when the frame should be skipped."""
        self._values.append(value)
        mean = sum(self._values) / len(self._values)
        dark = mean < self.threshold
        if dark and not self.dark:
            self.episodes += 1
            log.warning("camera image too dark (mean brightness %.1f < %.1f): skipping frames "
                        "until it is brighter", mean, self.threshold)
        elif not dark and self.dark:
            log.info("camera image bright enough again (mean brightness %.1f)", mean)
        self.dark = dark
        return dark
