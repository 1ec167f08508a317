"""Face analysis: MTCNN detection and InceptionResnetV1 embeddings, on either backend.

Everyone that turns pictures into embeddings uses this module (the node,
``facegrid enroll`` on the admin's machine, the tools), so a gallery and the events it is
matched against are always computed the same way:

* MTCNN finds faces (``min_face_size`` configurable); frames larger than
  ``detect_max_side`` are downscaled for detection and the boxes scaled back;
* each face is cropped with ``margin`` (pixels of the final 160×160 crop, as
  facenet-pytorch does), resized with area interpolation and standardised
  ``(x − 127.5) / 128``;
* all faces of a frame go through InceptionResnetV1 in one batch and come out
  as L2-normalised 512-d float32 vectors.

Two backends run the networks behind the same :class:`FaceAnalyzer`: ``onnx``
(ONNX Runtime and numpy, :mod:`facegrid_vision.onnx_backend`, the default; no
torch) and ``torch`` (facenet-pytorch, :mod:`facegrid_vision.torch_backend`,
the reference).  Pyramid, NMS, regression, crops and normalisation are this
package's numpy code for both, so they differ only in the network arithmetic.

Images stay in memory: nothing here writes a pixel anywhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from facegrid_vision.models import WeightsError

log = logging.getLogger(__name__)

IMAGE_SIZE = 160
EMBEDDING_DIM = 512


@dataclass(frozen=True, slots=True)
class DetectedFace:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in frame pixels
    confidence: float
    embedding: np.ndarray = field(repr=False)  # (512,) float32, unit norm


class Detector(Protocol):
    """Finds faces: ``(boxes (n,4) float32 x1y1x2y2, confidences (n,))``."""

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class Embedder(Protocol):
    """Embeds given face boxes of a frame: ``(n, 512)`` float32, unit rows."""

    model_id: str

    def embed(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray: ...


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"need an H×W×3 RGB image, got {getattr(rgb, 'shape', type(rgb))}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"need uint8 pixels, got {rgb.dtype}")
    if rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise ValueError(f"image of {rgb.shape[1]}×{rgb.shape[0]} is too small")
    return rgb


def crop_box(box: np.ndarray | tuple, width: int, height: int, margin: int,
             image_size: int = IMAGE_SIZE) -> tuple[int, int, int, int]:
    """facenet-pytorch's crop: margin given in pixels of the final square crop."""
    x1, y1, x2, y2 = (float(v) for v in box)
    mx = margin * (x2 - x1) / (image_size - margin)
    my = margin * (y2 - y1) / (image_size - margin)
    cx1 = int(max(x1 - mx / 2, 0))
    cy1 = int(max(y1 - my / 2, 0))
    cx2 = int(min(x2 + mx / 2, width))
    cy2 = int(min(y2 + my / 2, height))
    return cx1, cy1, max(cx2, cx1 + 1), max(cy2, cy1 + 1)


def standardise(crops: np.ndarray) -> np.ndarray:
    """uint8 (n,160,160,3) → float32 NCHW, ``(x − 127.5) / 128``."""
    x = crops.astype(np.float32)
    x -= 127.5
    x /= 128.0
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


class FaceDetector(Protocol):
    """The MTCNN runner of a backend: faces of same-sized (n,h,w,3) uint8 images."""

    def detect_many(self, imgs: np.ndarray) -> list: ...  # list[mtcnn.Detections]


class EmbedNet(Protocol):
    """InceptionResnetV1 of a backend: float32 (n,3,160,160) standardised → (n,512)."""

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


#: Crop margin (pixels of the 160×160 crop) and horizontal-flip averaging that every
#: embedder uses by default (node and enrollment alike).  Measured on the shared LFW
#: sets (bench/accuracy.py, docs/worker.md "Accuracy"): margin 44 (≈ the 32-pixel
#: margin of the original FaceNet alignment, in facenet-pytorch's units) instead of
#: 20 and the mean of the face and its mirror image raised correct-accept at ≤ 1 %
#: strangers on lfw_dev_large from 92.7 % (margin 20, centred gallery) to 94.4 %.
DEFAULT_MARGIN = 44
DEFAULT_FLIP = True


class FaceAnalyzer:
    """MTCNN + InceptionResnetV1 behind the :class:`Detector`/:class:`Embedder` seams.

    ``flip``: each face is embedded twice, as is and mirrored, and the two
    embeddings averaged (then renormalised): pose and lighting asymmetries cancel.
    """

    def __init__(self, mtcnn: FaceDetector, net: EmbedNet, model_id: str, *,
                 margin: int = DEFAULT_MARGIN, detect_max_side: int = 0,
                 det_threshold: float = 0.0, backend: str = "onnx", max_batch: int = 16,
                 flip: bool = DEFAULT_FLIP) -> None:
        self._mtcnn = mtcnn
        self._net = net
        self.model_id = model_id
        self.backend = backend
        self.margin = margin
        self.detect_max_side = detect_max_side
        self.det_threshold = det_threshold
        self.max_batch = max(1, max_batch)
        self.flip = flip

    def _scaled(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        import cv2

        h, w = rgb.shape[:2]
        if self.detect_max_side and max(h, w) > self.detect_max_side:
            scale = self.detect_max_side / max(h, w)
            return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                              interpolation=cv2.INTER_AREA), scale
        return rgb, 1.0

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.detect_batch([rgb])[0]

    def detect_landmarks(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`detect` plus MTCNN's five points per face (eyes, nose, mouth corners),
        ``(n, 5, 2)`` in frame pixels: the node's pose/quality score uses them."""
        img, scale = self._scaled(_check_rgb(rgb))
        d = self._mtcnn.detect_many(img[None])[0]
        h, w = rgb.shape[:2]
        if d.boxes is None or len(d.boxes) == 0:
            return (np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                    np.zeros((0, 5, 2), np.float32))
        lms = np.asarray(d.landmarks, np.float32).reshape(-1, 5, 2) / scale
        boxes, probs, keep = self._filter(d.boxes, d.probs, scale, w, h, with_index=True)
        return boxes, probs, lms[keep]

    def detect_batch(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`detect` for many images; same-sized ones go through MTCNN together."""
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(images)
        groups: dict[tuple, list[int]] = {}
        scales: list[float] = []
        small: list[np.ndarray] = []
        for i, img in enumerate(images):
            img, scale = self._scaled(_check_rgb(img))
            small.append(img)
            scales.append(scale)
            groups.setdefault(img.shape, []).append(i)
        for idx in groups.values():
            dets = self._mtcnn.detect_many(np.stack([small[i] for i in idx]))
            for i, d in zip(idx, dets, strict=True):
                h, w = images[i].shape[:2]
                out[i] = self._filter(d.boxes, d.probs, scales[i], w, h)
        return out  # type: ignore[return-value]

    def _filter(self, boxes, probs, scale: float, w: int, h: int, with_index: bool = False):
        if boxes is None or len(boxes) == 0:
            empty = np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
            return (*empty, np.zeros(0, np.int64)) if with_index else empty
        boxes = np.asarray(boxes, np.float32) / scale
        probs = np.asarray(probs, np.float32)
        index = np.flatnonzero(probs >= self.det_threshold)
        boxes, probs = boxes[index], probs[index]
        # Clip to the frame: MTCNN boxes may stick out a little.
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        ok = (boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 2)
        if with_index:
            return boxes[ok], probs[ok], index[ok]
        return boxes[ok], probs[ok]

    def crops(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Aligned uint8 crops (n,160,160,3), in memory only."""
        import cv2

        h, w = rgb.shape[:2]
        out = np.empty((len(boxes), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        for i, box in enumerate(boxes):
            x1, y1, x2, y2 = crop_box(box, w, h, self.margin)
            out[i] = cv2.resize(rgb[y1:y2, x1:x2], (IMAGE_SIZE, IMAGE_SIZE),
                                interpolation=cv2.INTER_AREA)
        return out

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        x = standardise(crops)
        if self.flip:  # the mirror images in the same batches
            x = np.concatenate([x, np.ascontiguousarray(x[:, :, :, ::-1])])
        parts = [self._net(x[k:k + self.max_batch]) for k in range(0, len(x), self.max_batch)]
        emb = np.concatenate(parts).astype(np.float32, copy=False)
        if self.flip:
            emb = emb[:len(crops)] / np.linalg.norm(emb[:len(crops)], axis=1, keepdims=True) \
                + emb[len(crops):] / np.linalg.norm(emb[len(crops):], axis=1, keepdims=True)
        # The network ends with F.normalize; renormalise in float32 to be exact.
        emb /= np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-12)
        return emb

    def embed(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        rgb = _check_rgb(rgb)
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        return self.embed_crops(self.crops(rgb, boxes))

    def analyze(self, rgb: np.ndarray) -> list[DetectedFace]:
        boxes, probs = self.detect(rgb)
        if len(boxes) == 0:
            return []
        emb = self.embed(rgb, boxes)
        return [DetectedFace(tuple(float(v) for v in b), float(p), e)
                for b, p, e in zip(boxes, probs, emb, strict=True)]


Backend = Literal["onnx", "torch"]
BACKENDS: tuple[str, ...] = ("onnx", "torch")


def default_threads(threads: int) -> int:
    """``threads``, or with 0 one per available core but one (at least one).

    The core left over runs capture, decoding and the Redis/HTTP threads; on a
    busy 2-core box two inference threads fighting those cost 3–4× per inference.
    """
    import os

    if threads:
        return max(1, threads)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    return max(1, cores - 1)


def load_analyzer(weights: str | Path = "casia-webface", *, model_id: str | None = None,
                  backend: Backend = "onnx", onnx_dir: str | Path | None = None,
                  int8: bool = False, min_face_size: int = 40, margin: int = DEFAULT_MARGIN,
                  detect_max_side: int = 0, det_threshold: float = 0.0,
                  threads: int | None = None, max_batch: int = 16,
                  flip: bool = DEFAULT_FLIP) -> FaceAnalyzer:
    """Build a :class:`FaceAnalyzer` (CPU).  Raises :class:`WeightsError` with advice.

    ``backend="onnx"`` runs the exported ONNX files (``onnx_dir``, a ``--weights``
    folder holding ``manifest.json``, or the cache folder of the weights' model id,
    exported there first when torch is installed); ``backend="torch"`` runs
    facenet-pytorch.  ``threads``: inference threads (0: cores − 1; None: leave
    the library default).
    """
    if backend == "onnx":
        from facegrid_vision import onnx_backend

        mtcnn, net, mid = onnx_backend.load(weights, model_id=model_id, onnx_dir=onnx_dir,
                                            int8=int8, min_face_size=min_face_size,
                                            threads=threads)
    elif backend == "torch":
        if int8:
            raise WeightsError("int8 is an ONNX Runtime option: use --backend onnx")
        from facegrid_vision import torch_backend

        mtcnn, net, mid = torch_backend.load(weights, model_id=model_id,
                                             min_face_size=min_face_size, threads=threads)
    else:
        raise WeightsError(f"unknown backend {backend!r} (use one of {', '.join(BACKENDS)})")
    log.info("face analyzer ready: %s backend, model %s, min face %d px, margin %d, flip %s",
             backend, mid, min_face_size, margin, "on" if flip else "off")
    return FaceAnalyzer(mtcnn, net, mid, margin=margin, detect_max_side=detect_max_side,
                        det_threshold=det_threshold, backend=backend, max_batch=max_batch,
                        flip=flip)
