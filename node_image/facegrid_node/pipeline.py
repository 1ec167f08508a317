"""Per-frame logic: quality gate → motion/idle → detect → track → embed → should-send.

:class:`FramePipeline` holds no I/O: it takes an RGB frame and the time and
returns what to send, so every stage can be swapped (``Detector``,
``Embedder`` protocols) and tested on real frames.

Embedding in the background (``background_embed``, the node's default): a batch
of faces takes several detection-times to embed (two faces with their mirror
images ≈ 120 ms vs ≈ 37 ms for a detection on one core), so the batch runs on a
second thread while the next frames are detected, and its faces are judged and
sent on the first frame after it finished.  One batch is in flight at a time;
tracks that need an embedding meanwhile wait for the next one.  Only the network
runs on that thread (ONNX Runtime and numpy release the GIL); every tracker
and send decision stays on the capture thread, so no state is shared.
:meth:`FramePipeline.flush` waits for the batch in flight (end of stream, stop):
nothing decided is lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
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


@dataclass(slots=True)
class _Batch:
    """Faces handed to the embedder, with what the send decision needs of their frame."""

    tracks: list[Track]
    boxes: np.ndarray  # (k, 4) as embedded (tracks move on meanwhile)
    confidences: list[float]
    quality: list[FrameQuality]
    landmarks: list
    width: int
    height: int
    now: float
    result: Future


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
                 background_embed: bool = False,
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
        self.background_embed = background_embed
        self._pool = (ThreadPoolExecutor(1, thread_name_prefix="embed")
                      if background_embed else None)
        self._batch: _Batch | None = None

    def process(self, rgb: np.ndarray, now: float) -> FrameResult:
        res = self._process(rgb, now)
        self._collect(res, wait=False)
        return res

    def flush(self) -> FrameResult:
        """Wait for the batch in flight (if any): its faces, judged and to send."""
        res = FrameResult(self.idle.state)
        self._collect(res, wait=True)
        return res

    def close(self) -> FrameResult:
        """:meth:`flush`, then stop the embedding thread (idempotent)."""
        res = self.flush()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        return res

    def _embed(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        t = time.perf_counter()
        emb = self.embedder.embed(rgb, boxes)
        self._observe("embed", time.perf_counter() - t)
        return emb

    def _submit(self, rgb: np.ndarray, g: np.ndarray, todo: list[Track], now: float) -> None:
        h, w = g.shape
        boxes = np.array([tr.box for tr in todo], np.float32)
        batch = _Batch(todo, boxes, [tr.confidence for tr in todo],
                       [region_quality(g, tr.box) for tr in todo],
                       [tr.landmarks for tr in todo], w, h, now, Future())
        for tr in todo:
            self.tracker.embedded(tr)  # not asked again while this batch is in flight
        if self._pool is None:
            try:
                batch.result.set_result(self._embed(rgb, boxes))
            except Exception as e:  # surfaces in _collect, on this thread
                batch.result.set_exception(e)
        else:
            # The capture source may reuse its frame buffer: the thread gets its own copy.
            batch.result = self._pool.submit(self._embed, rgb.copy(), boxes)
        self._batch = batch

    def _collect(self, res: FrameResult, *, wait: bool) -> None:
        """Judge a finished batch's faces; their events go out with ``res``."""
        b = self._batch
        if b is None or not (wait or b.result.done()):
            return
        self._batch = None
        emb = b.result.result()  # an embedder failure is raised here, as before
        res.embedded += len(b.tracks)
        for tr, box, conf, fq, marks, e in zip(b.tracks, b.boxes, b.confidences, b.quality,
                                               b.landmarks, emb, strict=True):
            tr.aggregate.add(e, face_quality(box, conf, fq.blur, marks))
            agg = tr.aggregate.embedding()
            if self.rule.should_send(tr, agg, b.now):
                self.tracker.sent(tr, agg, b.now)
                res.outgoing.append(Outgoing(
                    tr.track_id, int_box(box, b.width, b.height),
                    min(1.0, max(0.0, conf)), fq, agg, tr.aggregate.summary()))

    def _process(self, rgb: np.ndarray, now: float) -> FrameResult:
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
            if self._batch is None:
                todo = [tr for tr in res.tracks if self.tracker.needs_embedding(tr)]
                if todo:
                    self._submit(rgb, g, todo, now)
        else:
            self.tracker.expire(now)
            res.tracks = list(self.tracker.tracks.values())
        faces = len(res.tracks)
        res.transition = self.idle.update(now, motion=moving, faces=faces)
        res.state = self.idle.state
        return res
