"""Per-frame logic: quality gate → motion/idle → detect → track → embed → should-send.

:class:`FramePipeline` holds no I/O: it takes an RGB frame and the time and
returns what to send, so every stage can be swapped (``Detector``,
``Embedder`` protocols) and tested on real frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from facegrid_vision.faces import Detector, Embedder

from facegrid.contract import NodeState
from facegrid.wire import TrackSummary
from facegrid_node.aggregate import face_quality
from facegrid_node.motion import IdleController, MotionDetector, Transition
from facegrid_node.quality import DarknessGate, FrameQuality, brightness, grey, region_quality
from facegrid_node.tracker import IoUTracker, SendRule, Track


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One face the node decided to send (no pixels: box, scores, embedding)."""

    track_id: int
    box: tuple[int, int, int, int]
    confidence: float
    quality: FrameQuality
    #: The track's aggregate embedding (see facegrid_node.aggregate).
    embedding: np.ndarray = field(repr=False)
    track: TrackSummary | None = None


@dataclass(slots=True)
class FrameResult:
    state: NodeState
    dark: bool = False
    motion: bool = False
    detected: bool = False
    tracks: list[Track] = field(default_factory=list)
    embedded: int = 0
    outgoing: list[Outgoing] = field(default_factory=list)
    transition: Transition | None = None


def int_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (float(v) for v in box)
    x1 = int(min(max(x1, 0), width - 1))
    y1 = int(min(max(y1, 0), height - 1))
    x2 = int(min(max(round(x2), x1), width - 1))
    y2 = int(min(max(round(y2), y1), height - 1))
    return x1, y1, x2, y2


class FramePipeline:
    def __init__(self, detector: Detector, embedder: Embedder, *, tracker: IoUTracker,
                 rule: SendRule, gate: DarknessGate, motion: MotionDetector,
                 idle: IdleController, detect_every: int = 1,
                 observe: Callable[[str, float], None] | None = None) -> None:
        self.detector = detector
        self.embedder = embedder
        self.tracker = tracker
        self.rule = rule
        self.gate = gate
        self.motion = motion
        self.idle = idle
        self.detect_every = detect_every
        self._observe = observe or (lambda stage, s: None)
        self._since_detect = detect_every  # detect on the first active frame

    def process(self, rgb: np.ndarray, now: float) -> FrameResult:
        t = time.perf_counter()
        g = grey(rgb)
        dark = self.gate.check(brightness(g))
        t1 = time.perf_counter()
        self._observe("quality", t1 - t)
        if dark:
            # A dark frame is skipped but still counts as "nothing happening".
            tr = self.idle.update(now, motion=False, faces=0)
            self.motion.reset()
            return FrameResult(self.idle.state, dark=True, transition=tr)
        moving = self.motion.update(g)
        t2 = time.perf_counter()
        self._observe("motion", t2 - t1)

        res = FrameResult(self.idle.state, motion=moving)
        if self.idle.state is NodeState.IDLE and not moving:
            res.transition = self.idle.update(now, motion=False)
            res.state = self.idle.state
            return res
        if self.idle.state is NodeState.IDLE:
            self._since_detect = self.detect_every  # woken: look at once

        self._since_detect += 1
        # While faces are tracked the detector runs every N frames (the tracker
        # carries them between); with nobody tracked it runs on every active
        # frame, so a face entering the view is found at once (latency).
        if self._since_detect >= self.detect_every or not self.tracker.tracks:
            self._since_detect = 0
            landmarks = None
            if hasattr(self.detector, "detect_landmarks"):  # five points: pose for quality
                boxes, probs, landmarks = self.detector.detect_landmarks(rgb)
            else:
                boxes, probs = self.detector.detect(rgb)
            t3 = time.perf_counter()
            self._observe("detect", t3 - t2)
            res.detected = True
            res.tracks = self.tracker.update(boxes, probs, now, landmarks)
            t4 = time.perf_counter()
            self._observe("track", t4 - t3)
            todo = [tr for tr in res.tracks if self.tracker.needs_embedding(tr)]
            if todo:
                emb = self.embedder.embed(rgb, np.array([tr.box for tr in todo], np.float32))
                self._observe("embed", time.perf_counter() - t4)
                res.embedded = len(todo)
                h, w = g.shape
                for tr, e in zip(todo, emb, strict=True):
                    self.tracker.embedded(tr)
                    fq = region_quality(g, tr.box)
                    tr.aggregate.add(e, face_quality(tr.box, tr.confidence, fq.blur,
                                                     tr.landmarks))
                    agg = tr.aggregate.embedding()
                    if self.rule.should_send(tr, agg, now):
                        self.tracker.sent(tr, agg, now)
                        res.outgoing.append(Outgoing(
                            tr.track_id, int_box(tr.box, w, h),
                            min(1.0, max(0.0, tr.confidence)), fq, agg,
                            tr.aggregate.summary()))
        else:
            self.tracker.expire(now)
            res.tracks = list(self.tracker.tracks.values())
        faces = len(res.tracks)
        res.transition = self.idle.update(now, motion=moving, faces=faces)
        res.state = self.idle.state
        return res
