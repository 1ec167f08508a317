"""Idle mode: cheap motion detection and the active ⇄ idle state machine.

Motion is frame differencing on a small blurred grey copy of the frame: the
share of pixels whose grey level changed by more than ``pixel_delta`` since the
previous small frame.  :class:`IdleController` goes idle after ``idle_after_s``
without motion and without a face, and wakes on the first motion.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from facegrid.contract import NodeState

log = logging.getLogger(__name__)

SMALL_SIZE = (80, 60)


class MotionDetector:
    def __init__(self, threshold: float, pixel_delta: int = 18,
                 size: tuple[int, int] = SMALL_SIZE) -> None:
        self.threshold = threshold
        self.pixel_delta = pixel_delta
        self.size = size
        self._prev: np.ndarray | None = None
        self.last_score = 0.0

    def reset(self) -> None:
        self._prev = None

    def update(self, grey_img: np.ndarray) -> bool:
        """True when this frame differs enough from the previous one."""
        import cv2

        small = cv2.resize(grey_img, self.size, interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (5, 5), 0)
        prev, self._prev = self._prev, small
        if prev is None:
            self.last_score = 0.0
            return False
        changed = cv2.absdiff(small, prev) > self.pixel_delta
        self.last_score = float(np.count_nonzero(changed)) / changed.size
        return self.last_score > self.threshold


@dataclass(frozen=True, slots=True)
class Transition:
    old: NodeState
    new: NodeState
    seconds_in_old: float


class IdleController:
    """``active`` until ``idle_after_s`` pass with no motion and no face; motion wakes it."""

    def __init__(self, idle_after_s: float, now: float) -> None:
        self.idle_after_s = idle_after_s
        self.state = NodeState.ACTIVE
        self.since = now
        self.last_activity = now

    def seconds_in_state(self, now: float) -> float:
        return max(0.0, now - self.since)

    def update(self, now: float, motion: bool, faces: int = 0) -> Transition | None:
        if motion or faces:
            self.last_activity = now
        if self.state is NodeState.IDLE and motion:
            return self._go(NodeState.ACTIVE, now)
        if (self.state is NodeState.ACTIVE and self.idle_after_s >= 0
                and now - self.last_activity >= self.idle_after_s):
            return self._go(NodeState.IDLE, now)
        return None

    def _go(self, new: NodeState, now: float) -> Transition:
        t = Transition(self.state, new, now - self.since)
        log.info("node %s after %.1fs %s", "idle" if new is NodeState.IDLE else "awake",
                 t.seconds_in_old, t.old.value)
        self.state, self.since = new, now
        return t
