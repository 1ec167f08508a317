"""A light IoU tracker and the per-track should-send rule.

A face that stays in view keeps its track, so it is embedded every
``reembed_every`` detections (or when its box moved a lot), not on every
frame, and an event is sent only when the track is new, when its embedding
moved more than ``send_distance`` (cosine distance) from the last one sent, or
when ``resend_interval_s`` passed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np


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
    recognised: bool | None = None


@dataclass(frozen=True, slots=True)
class SendRule:
    send_distance: float
    resend_interval_s: float

    def should_send(self, track: Track, embedding: np.ndarray, now: float) -> bool:
        if track.sent_embedding is None or track.sent_at is None:
            return True
        if now - track.sent_at >= self.resend_interval_s:
            return True
        return 1.0 - float(embedding @ track.sent_embedding) > self.send_distance


class IoUTracker:
    def __init__(self, iou_threshold: float = 0.3, max_age_s: float = 1.5,
                 reembed_every: int = 10, reembed_iou: float = 0.6,
                 first_id: int = 1, max_missed: int = 3) -> None:
        self.iou_threshold = iou_threshold
        self.max_age_s = max_age_s
        self.max_missed = max_missed
        self.reembed_every = reembed_every
        self.reembed_iou = reembed_iou
        self.tracks: dict[int, Track] = {}
        self._ids = itertools.count(first_id)

    def update(self, boxes: np.ndarray, confidences: np.ndarray, now: float) -> list[Track]:
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
                t = Track(next(self._ids), b, float(confidences[i]), now)
                self.tracks[t.track_id] = t
            t.box, t.confidence, t.last_seen = b, float(confidences[i]), now
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
        if track.embedded_box is None:
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
