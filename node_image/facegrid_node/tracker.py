"""A light IoU tracker and the per-track should-send rule.

A face that stays in view keeps its track, so it is embedded every
``reembed_every`` detections (or when its box moved a lot), not on every
frame.  Each embedding is folded into the track's quality-weighted aggregate
(:class:`facegrid_node.aggregate.TrackAggregate`) and the aggregate is what is
sent: when the track is new, when the aggregate first becomes decisive (a face
passed the quality gate), when the quality weight behind it has grown by
``growth`` (×2: about log2(frames) events per track, not one per frame), when
it moved more than ``send_distance`` (cosine distance) from the last one sent,
or when ``resend_interval_s`` passed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from facegrid_node.aggregate import DEFAULT_GATE, TrackAggregate


def iou(a, b) -> float:
    ax1, ay1, ax2, ay2 = a
    bx1, by1, bx2, by2 = b
    iw = min(ax2, bx2) - max(ax1, bx1)
    ih = min(ay2, by2) - max(ay1, by1)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class Track:
    track_id: int
    box: tuple[float, float, float, float]
    confidence: float
    last_seen: float
    detections: int = 0
    missed: int = 0
    embedded_box: tuple[float, float, float, float] | None = None
    since_embed: int = 0
    sent_embedding: np.ndarray | None = field(default=None, repr=False)
    sent_at: float | None = None
    #: Quality weight behind the aggregate last sent.
    sent_weight: float = 0.0
    recognised: bool | None = None
    #: MTCNN's five points of the latest detection, when the detector gives them.
    landmarks: np.ndarray | None = field(default=None, repr=False)
    aggregate: TrackAggregate = field(default_factory=TrackAggregate, repr=False)


@dataclass(frozen=True, slots=True)
class SendRule:
    send_distance: float
    resend_interval_s: float
    growth: float = 2.0

    def should_send(self, track: Track, embedding: np.ndarray, now: float) -> bool:
        """``embedding``: what would be sent now (the track's aggregate)."""
        if track.sent_embedding is None or track.sent_at is None:
            return True
        agg = track.aggregate
        if agg.decisive and track.sent_weight <= 0.0:
            return True  # the first face good enough to decide
        if agg.decisive and agg.weight >= self.growth * track.sent_weight - 1e-9:
            return True  # refinement, log-spaced
        if now - track.sent_at >= self.resend_interval_s:
            return True
        return 1.0 - float(embedding @ track.sent_embedding) > self.send_distance


class IoUTracker:
    def __init__(self, iou_threshold: float = 0.3, max_age_s: float = 1.5,
                 reembed_every: int = 10, reembed_iou: float = 0.6,
                 first_id: int = 1, max_missed: int = 3,
                 quality_gate: float = DEFAULT_GATE, warmup: int = 3) -> None:
        self.iou_threshold = iou_threshold
        self.max_age_s = max_age_s
        self.max_missed = max_missed
        self.reembed_every = reembed_every
        self.reembed_iou = reembed_iou
        self.quality_gate = quality_gate
        #: A new track is embedded on each of its first ``warmup`` detections, so its
        #: aggregate stands on several frames within a second or two (then every K).
        self.warmup = warmup
        self.tracks: dict[int, Track] = {}
        self._ids = itertools.count(first_id)

    def update(self, boxes: np.ndarray, confidences: np.ndarray, now: float,
               landmarks: np.ndarray | None = None) -> list[Track]:
        """Match detections to tracks greedily by IoU; returns the track of each detection."""
        pairs = sorted(((iou(t.box, b), tid, i) for tid, t in self.tracks.items()
                        for i, b in enumerate(boxes)), reverse=True)
        assigned: dict[int, Track] = {}
        used: set[int] = set()
        for score, tid, i in pairs:
            if score < self.iou_threshold:
                break
            if tid in used or i in assigned:
                continue
            used.add(tid)
            assigned[i] = self.tracks[tid]
        out: list[Track] = []
        for i, box in enumerate(boxes):
            b = tuple(float(v) for v in box)
            t = assigned.get(i)
            if t is None:
                t = Track(next(self._ids), b, float(confidences[i]), now,
                          aggregate=TrackAggregate(gate=self.quality_gate))
                self.tracks[t.track_id] = t
            t.box, t.confidence, t.last_seen = b, float(confidences[i]), now
            t.landmarks = None if landmarks is None else np.asarray(landmarks[i], np.float32)
            t.detections += 1
            t.since_embed += 1
            t.missed = 0
            out.append(t)
        for t in self.tracks.values():
            if t not in out:
                t.missed += 1
        self.expire(now)
        return out

    def expire(self, now: float) -> list[Track]:
        """Forget tracks unseen for ``max_age_s`` AND ``max_missed`` detector runs.

        Both, so a slow (busy) machine does not split one person's stay into many
        tracks, and a fast one does not keep a face that has left.
        """
        gone = [t for t in self.tracks.values()
                if now - t.last_seen > self.max_age_s and t.missed >= self.max_missed]
        for t in gone:
            del self.tracks[t.track_id]
        return gone

    def needs_embedding(self, track: Track) -> bool:
        if track.embedded_box is None or track.aggregate.frames < self.warmup:
            return True
        if track.since_embed >= self.reembed_every:
            return True
        return iou(track.box, track.embedded_box) < self.reembed_iou

    def embedded(self, track: Track) -> None:
        track.embedded_box = track.box
        track.since_embed = 0

    @staticmethod
    def sent(track: Track, embedding: np.ndarray, now: float) -> None:
        track.sent_embedding = embedding
        track.sent_at = now
        track.sent_weight = track.aggregate.weight
