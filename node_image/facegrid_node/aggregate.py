"""Track-level identity on the node: face quality and the per-track aggregate embedding.

A person in view is one track; the worker should decide who it is from the
whole track, not from whichever frame happened to be sent.  So the node keeps,
per track, the quality-weighted sum of every embedding it computed and sends
the L2-normalised result (wire v2, with a :class:`facegrid.wire.TrackSummary`).

* :func:`face_quality` scores one face in [0, 1] from what the node already
  has: box size, sharpness of the face region (variance of the Laplacian),
  detector confidence and, when the detector gives landmarks, pose (how far
  the nose sits from the eyes' midline: yaw; the eye line's angle: roll).
* Faces scoring below ``gate`` are *tracked but do not decide*: they add
  nothing to the aggregate.  Until a track has one face over the gate, its
  events carry the latest frame's embedding with weight 0 (the worker keeps
  such a presence undecided instead of calling it unknown or someone).
* :class:`facegrid_node.tracker.SendRule` decides when a track's aggregate is
  sent again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from facegrid.wire import TrackSummary

#: Quality below this: tracked, never part of the identity decision.
DEFAULT_GATE = 0.35


@dataclass(frozen=True, slots=True)
class QualityModel:
    """Where each factor of :func:`face_quality` reaches 0 and 1."""

    size_min: float = 24.0  # shorter box side, pixels: 0 at or below
    size_good: float = 72.0  # 1 at or above
    blur_min: float = 8.0  # variance of the Laplacian of the face region: 0 at or below
    blur_good: float = 80.0  # 1 at or above (log scale between)
    conf_min: float = 0.80  # detector probability: 0 at or below
    conf_good: float = 0.98
    yaw_max: float = 0.9  # |nose offset| / half the eye distance: 0 at or above
    roll_max_deg: float = 45.0


def _ramp(x: float, lo: float, hi: float) -> float:
    if hi <= lo:
        return 1.0 if x >= hi else 0.0
    return min(1.0, max(0.0, (x - lo) / (hi - lo)))


def pose(landmarks: np.ndarray) -> tuple[float, float]:
    """``(yaw, roll in degrees)`` from MTCNN's five points (eyes, nose, mouth corners).

    yaw: horizontal offset of the nose from the eyes' midpoint, in units of half
    the eye distance (0 frontal, about ±1 in profile); roll: angle of the eye line.
    """
    lm = np.asarray(landmarks, np.float64).reshape(5, 2)
    le, re, nose = lm[0], lm[1], lm[2]
    d = re - le
    dist = float(np.hypot(*d))
    if dist < 1e-6:
        return 1.0, 90.0
    roll = math.degrees(math.atan2(d[1], d[0]))
    mid = (le + re) / 2
    # Nose offset along the eye line, in units of half the eye distance.
    yaw = float(np.dot(nose - mid, d / dist)) / (dist / 2)
    return yaw, roll


def face_quality(box, confidence: float, blur: float, landmarks: np.ndarray | None = None,
                 model: QualityModel = QualityModel()) -> float:
    """Quality score of one face in [0, 1]: the product of its factors."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = min(x2 - x1, y2 - y1)
    q = _ramp(side, model.size_min, model.size_good)
    q *= _ramp(math.log10(max(blur, 1e-6)), math.log10(model.blur_min),
               math.log10(model.blur_good))
    q *= _ramp(confidence, model.conf_min, model.conf_good)
    if landmarks is not None:
        yaw, roll = pose(landmarks)
        q *= _ramp(model.yaw_max - abs(yaw), 0.0, model.yaw_max * 0.6)
        q *= _ramp(model.roll_max_deg - abs(roll), 0.0, model.roll_max_deg * 0.5)
    return round(q, 4)


@dataclass(slots=True)
class TrackAggregate:
    """Quality-weighted sum of one track's embeddings."""

    gate: float = DEFAULT_GATE
    total: np.ndarray = field(default_factory=lambda: np.zeros(512, np.float64), repr=False)
    weight: float = 0.0
    frames: int = 0
    latest: np.ndarray | None = field(default=None, repr=False)
    latest_quality: float = 0.0

    def add(self, embedding: np.ndarray, quality: float) -> None:
        e = np.asarray(embedding, np.float64).reshape(-1)
        self.frames += 1
        self.latest = np.asarray(embedding, np.float32).reshape(-1)
        self.latest_quality = float(quality)
        if quality >= self.gate:
            self.total += quality * e
            self.weight += quality

    @property
    def decisive(self) -> bool:
        """At least one face passed the quality gate."""
        return self.weight > 0.0

    def embedding(self) -> np.ndarray:
        """The unit aggregate (the latest embedding while nothing passed the gate)."""
        if not self.decisive:
            if self.latest is None:
                raise ValueError("empty track aggregate")
            return self.latest
        n = float(np.linalg.norm(self.total))
        if n < 1e-9:  # opposite embeddings cancelled out: never seen with real faces
            return self.latest if self.latest is not None else np.zeros(512, np.float32)
        return (self.total / n).astype(np.float32)

    def summary(self) -> TrackSummary:
        return TrackSummary(frames=self.frames, weight=round(min(self.weight, self.frames), 4),
                            face_quality=round(min(1.0, max(0.0, self.latest_quality)), 4))
