"""MTCNN face detection in numpy around any runner of the three networks (no torch).

The same computation as facenet-pytorch's ``detect_face`` (torch stays the
reference; tests compare the two on real photos):

* image pyramid with ``factor`` 0.709 from ``12 / min_face_size`` while the
  shorter side is at least 12 pixels; each level resampled with torch's
  ``interpolate(mode="area")`` (adaptive average pooling), done here exactly
  with one integral image per frame;
* P-Net on every level → candidate windows (stride 2, cell 12) above
  ``thresholds[0]``, NMS 0.5 per level, then 0.7 across levels, box regression,
  squared;
* R-Net on 24×24 crops (same integral image) → ``thresholds[1]``, NMS 0.7,
  regression, squared; O-Net on 48×48 crops → ``thresholds[2]``, five
  landmarks, regression, NMS 0.7 on intersection over the smaller box.

The networks are callables taking float32 NCHW arrays standardised
``(x − 127.5) / 128``: ``pnet(x) → (reg (n,4,h,w), prob (n,2,h,w))``,
``rnet(x) → (reg (n,4), prob (n,2))``, ``onet(x) → (reg (n,4), landmarks (n,10),
prob (n,2))`` — ONNX Runtime sessions in the node (:mod:`facegrid_vision.onnx_backend`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Net = Callable[[np.ndarray], tuple[np.ndarray, ...]]

THRESHOLDS = (0.6, 0.7, 0.7)
FACTOR = 0.709


@dataclass(frozen=True, slots=True)
class Detections:
    """Faces of one image: boxes (n,4) x1y1x2y2, probs (n,), landmarks (n,5,2)."""

    boxes: np.ndarray
    probs: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                   np.zeros((0, 5, 2), np.float32))


def pyramid_scales(h: int, w: int, min_face_size: int, factor: float = FACTOR) -> list[float]:
    """facenet-pytorch's scale pyramid (Python floats, as there)."""
    m = 12.0 / min_face_size
    minl = min(h, w) * m
    scales = []
    scale = m
    while minl >= 12:
        scales.append(scale)
        scale *= factor
        minl *= factor
    return scales


def integral(imgs: np.ndarray) -> np.ndarray:
    """(n,h,w,c) uint8 → (n,h+1,w+1,c) summed-area table with a zero border (exact
    integers: OpenCV's int32 while they fit, else numpy int64)."""
    n, h, w, c = imgs.shape
    if h * w * 255 < 2**31:
        import cv2

        if n == 1:
            return cv2.integral(imgs[0], sdepth=cv2.CV_32S)[None]
        return np.stack([cv2.integral(im, sdepth=cv2.CV_32S) for im in imgs])
    out = np.zeros((n, h + 1, w + 1, c), np.int64)
    np.cumsum(imgs, axis=1, dtype=np.int64, out=out[:, 1:, 1:])
    np.cumsum(out[:, 1:, 1:], axis=2, out=out[:, 1:, 1:])
    return out


def _bins(start: np.ndarray, size: np.ndarray, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive-pool bin edges ``floor(i·size/out)``, ``ceil((i+1)·size/out)`` (+ start)."""
    i = np.arange(out, dtype=np.int64)
    size = np.asarray(size, np.int64)[..., None]
    lo = (i * size) // out
    hi = ((i + 1) * size + out - 1) // out
    start = np.asarray(start, np.int64)[..., None]
    return start + lo, start + hi


def area_resize(table: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """torch ``interpolate(mode="area")`` of whole images (their integral ``table``) to
    (oh, ow): float32 (n, oh, ow, c)."""
    h, w = table.shape[1] - 1, table.shape[2] - 1
    ys, ye = _bins(np.int64(0), np.int64(h), oh)
    xs, xe = _bins(np.int64(0), np.int64(w), ow)
    rows = table.take(ye, axis=1) - table.take(ys, axis=1)  # (n, oh, w+1, c)
    s = rows.take(xe, axis=2) - rows.take(xs, axis=2)
    count = ((ye - ys)[:, None] * (xe - xs)[None, :]).astype(np.float32)
    return s.astype(np.float32) / count[None, :, :, None]


def area_crops(table: np.ndarray, img_idx: np.ndarray, y0: np.ndarray, x0: np.ndarray,
               hh: np.ndarray, ww: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """torch ``interpolate(mode="area")`` of crops ``[y0:y0+hh, x0:x0+ww]`` of image
    ``img_idx`` to (oh, ow), for many crops at once: float32 (k, oh, ow, c)."""
    _, th, tw, c = table.shape
    ys, ye = _bins(y0, hh, oh)  # (k, oh)
    xs, xe = _bins(x0, ww, ow)  # (k, ow)
    base = np.asarray(img_idx, np.int64)[:, None] * (th * tw)
    rows = np.stack([base + ye * tw, base + ys * tw])  # (2, k, oh): bottom, top edges
    cols = np.stack([xe, xs])  # (2, k, ow): right, left edges
    # The four corners of every output cell in one gather: (2, 2, k, oh, ow, c).
    idx = rows[:, None, :, :, None] + cols[None, :, :, None, :]
    g = table.reshape(-1, c).take(idx.reshape(-1), axis=0).reshape(*idx.shape, c)
    s = (g[0, 0] - g[0, 1] - g[1, 0] + g[1, 1]).astype(np.float32)
    count = ((ye - ys)[:, :, None] * (xe - xs)[:, None, :]).astype(np.float32)
    s /= count[..., None]
    return s


def _standardise_nchw(x: np.ndarray) -> np.ndarray:
    x -= 127.5
    x *= 0.0078125
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """torchvision ``nms``: IoU without the +1, indices by decreasing score."""
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    if len(boxes) <= NMS_MATRIX_MAX:
        return _nms_matrix(boxes, scores, threshold)
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    area = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 never suppresses
            iou = inter / (area[i] + area[rest] - inter)
        order = rest[~(iou > threshold)]
    return np.asarray(keep, np.int64)


#: Up to this many boxes NMS computes all pairwise IoUs at once (n² floats: 1000 boxes
#: ≈ 4 MB per temporary); beyond, the pairwise loop keeps memory linear.
NMS_MATRIX_MAX = 1000


def _nms_matrix(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """:func:`nms` from one pairwise IoU matrix: the same arithmetic, so the same
    result, with one numpy operation per kept box instead of seven."""
    order = np.argsort(-scores, kind="stable")
    b = boxes[order]
    x1, y1, x2, y2 = (b[:, i] for i in range(4))
    area = (x2 - x1) * (y2 - y1)
    w = np.maximum(0.0, np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]))
    h = np.maximum(0.0, np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]))
    inter = w * h
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 (empty boxes) never suppresses
        over = inter / (area[:, None] + area[None] - inter) > threshold
    dead = np.zeros(len(order), bool)
    keep = []
    for i in range(len(order)):
        if not dead[i]:
            keep.append(i)
            dead |= over[i]
    return order[np.asarray(keep, np.int64)]


def batched_nms(boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray,
                threshold: float) -> np.ndarray:
    """NMS within each group (image), indices by decreasing score."""
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    offset = groups.astype(boxes.dtype)[:, None] * (boxes.max() + 1)
    return nms(boxes + offset, scores, threshold)


def nms_min(boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray,
            threshold: float) -> np.ndarray:
    """facenet-pytorch's last-stage NMS: overlap over the smaller box, +1 pixel areas."""
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    b = boxes + groups.astype(boxes.dtype)[:, None] * (boxes.max() + 1)
    x1, y1, x2, y2 = (b[:, i] for i in range(4))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores)  # ascending: the last is the best (as there)
    keep = []
    while order.size:
        i = order[-1]
        keep.append(i)
        idx = order[:-1]
        w = np.maximum(0.0, np.minimum(x2[i], x2[idx]) - np.maximum(x1[i], x1[idx]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[idx]) - np.maximum(y1[i], y1[idx]) + 1)
        o = (w * h) / np.minimum(area[i], area[idx])
        order = idx[o <= threshold]
    return np.asarray(keep, np.int64)


def _rerec(b: np.ndarray) -> np.ndarray:
    """Square boxes around their centre (longer side)."""
    h = b[:, 3] - b[:, 1]
    w = b[:, 2] - b[:, 0]
    side = np.maximum(w, h)
    b[:, 0] = b[:, 0] + w * 0.5 - side * 0.5
    b[:, 1] = b[:, 1] + h * 0.5 - side * 0.5
    b[:, 2] = b[:, 0] + side
    b[:, 3] = b[:, 1] + side
    return b


def _bbreg(b: np.ndarray, reg: np.ndarray) -> np.ndarray:
    w = b[:, 2] - b[:, 0] + 1
    h = b[:, 3] - b[:, 1] + 1
    b[:, 0] = b[:, 0] + reg[:, 0] * w
    b[:, 1] = b[:, 1] + reg[:, 1] * h
    b[:, 2] = b[:, 2] + reg[:, 2] * w
    b[:, 3] = b[:, 3] + reg[:, 3] * h
    return b


def _pad(b: np.ndarray, w: int, h: int) -> tuple[np.ndarray, ...]:
    """Integer crop window (1-based start, as there) clipped to the image."""
    t = np.trunc(b[:, :4]).astype(np.int64)
    x, y, ex, ey = t[:, 0], t[:, 1], t[:, 2], t[:, 3]
    x = np.maximum(x, 1)
    y = np.maximum(y, 1)
    ex = np.minimum(ex, w)
    ey = np.minimum(ey, h)
    return y, ey, x, ex


class MTCNN:
    """facenet-pytorch's MTCNN detection on numpy, around three network runners."""

    def __init__(self, pnet: Net, rnet: Net, onet: Net, *, min_face_size: int = 20,
                 thresholds: tuple[float, float, float] = THRESHOLDS,
                 factor: float = FACTOR) -> None:
        self.pnet, self.rnet, self.onet = pnet, rnet, onet
        self.min_face_size = min_face_size
        self.thresholds = thresholds
        self.factor = factor

    def detect_many(self, imgs: np.ndarray) -> list[Detections]:
        """Faces of each same-sized image of (n,h,w,3) uint8, largest box first."""
        if imgs.ndim != 4 or imgs.shape[3] != 3 or imgs.dtype != np.uint8:
            raise ValueError(f"need (n,h,w,3) uint8 images, got {imgs.shape} {imgs.dtype}")
        n, h, w, _ = imgs.shape
        table = integral(imgs)
        t0, t1, t2 = self.thresholds

        # Stage 1: P-Net over the pyramid.
        cand, cand_img = [], []
        for scale in pyramid_scales(h, w, self.min_face_size, self.factor):
            oh, ow = int(h * scale + 1), int(w * scale + 1)
            level = area_resize(table, oh, ow)
            reg, prob = self.pnet(_standardise_nchw(level))[:2]
            b, img = self._windows(reg, prob[:, 1], np.float32(scale), t0)
            keep = batched_nms(b[:, :4], b[:, 4], img, 0.5)
            cand.append(b[keep])
            cand_img.append(img[keep])
        if not cand:
            return [Detections.empty() for _ in range(n)]
        boxes = np.concatenate(cand)
        img = np.concatenate(cand_img)
        keep = batched_nms(boxes[:, :4], boxes[:, 4], img, 0.7)
        boxes, img = boxes[keep], img[keep]
        regw = boxes[:, 2] - boxes[:, 0]
        regh = boxes[:, 3] - boxes[:, 1]
        boxes = np.stack([boxes[:, 0] + boxes[:, 5] * regw, boxes[:, 1] + boxes[:, 6] * regh,
                          boxes[:, 2] + boxes[:, 7] * regw, boxes[:, 3] + boxes[:, 8] * regh,
                          boxes[:, 4]], axis=1)
        boxes = _rerec(boxes)

        # Stage 2: R-Net on 24×24 crops.
        if len(boxes):
            boxes, img, crops = self._crops(table, boxes, img, w, h, 24)
            reg, prob = self.rnet(_standardise_nchw(crops))[:2]
            score = prob[:, 1]
            ok = score > t1
            boxes = np.concatenate([boxes[ok, :4], score[ok, None]], axis=1)
            img, reg = img[ok], reg[ok]
            keep = batched_nms(boxes[:, :4], boxes[:, 4], img, 0.7)
            boxes, img, reg = boxes[keep], img[keep], reg[keep]
            boxes = _rerec(_bbreg(boxes, reg))

        # Stage 3: O-Net on 48×48 crops, landmarks.
        points = np.zeros((0, 5, 2), np.float32)
        if len(boxes):
            boxes, img, crops = self._crops(table, boxes, img, w, h, 48)
            reg, marks, prob = self.onet(_standardise_nchw(crops))[:3]
            score = prob[:, 1]
            ok = score > t2
            boxes = np.concatenate([boxes[ok, :4], score[ok, None]], axis=1)
            img, reg, marks = img[ok], reg[ok], marks[ok]
            bw = boxes[:, 2] - boxes[:, 0] + 1
            bh = boxes[:, 3] - boxes[:, 1] + 1
            px = bw[:, None] * marks[:, :5] + boxes[:, 0:1] - 1
            py = bh[:, None] * marks[:, 5:10] + boxes[:, 1:2] - 1
            points = np.stack([px, py], axis=2).astype(np.float32)
            boxes = _bbreg(boxes, reg)
            keep = nms_min(boxes[:, :4], boxes[:, 4], img, 0.7)
            boxes, img, points = boxes[keep], img[keep], points[keep]

        out = []
        for i in range(n):
            sel = img == i
            b, p = boxes[sel], points[sel]
            if not len(b):
                out.append(Detections.empty())
                continue
            order = np.argsort((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[::-1]
            b, p = b[order], p[order]
            out.append(Detections(np.ascontiguousarray(b[:, :4], np.float32),
                                  np.ascontiguousarray(b[:, 4], np.float32),
                                  np.ascontiguousarray(p, np.float32)))
        return out

    def detect(self, rgb: np.ndarray) -> Detections:
        """Faces of one (h,w,3) uint8 image."""
        return self.detect_many(rgb[None])[0]

    @staticmethod
    def _windows(reg: np.ndarray, prob: np.ndarray, scale: np.float32, thresh: float
                 ) -> tuple[np.ndarray, np.ndarray]:
        """P-Net map cells at or above ``thresh`` → (k, 9) [x1 y1 x2 y2 score reg×4]."""
        img, yy, xx = np.nonzero(prob >= thresh)
        score = prob[img, yy, xx]
        r = reg[img, :, yy, xx]  # (k, 4)
        bb = np.stack([xx, yy], axis=1).astype(np.float32)
        q1 = np.floor((2 * bb + 1) / scale)
        q2 = np.floor((2 * bb + 12) / scale)
        boxes = np.concatenate([q1, q2, score[:, None], r], axis=1).astype(np.float32)
        return boxes, img.astype(np.int64)

    @staticmethod
    def _crops(table, boxes, img, w, h, size):
        y, ey, x, ex = _pad(boxes, w, h)
        ok = (ey > y - 1) & (ex > x - 1)
        boxes, img = boxes[ok], img[ok]
        y, ey, x, ex = y[ok], ey[ok], x[ok], ex[ok]
        crops = area_crops(table, img, y - 1, x - 1, ey - (y - 1), ex - (x - 1), size, size)
        return boxes, img, crops
