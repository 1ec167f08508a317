"""Face analysis: MTCNN detection and InceptionResnetV1 embeddings (facenet-pytorch).

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

Images stay in memory: nothing here writes a pixel anywhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from facegrid_vision.models import WeightsError, resolve_weights

if TYPE_CHECKING:
    import torch

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


class FaceAnalyzer:
    """MTCNN + InceptionResnetV1 behind the :class:`Detector`/:class:`Embedder` seams."""

    def __init__(self, mtcnn, resnet: torch.nn.Module, model_id: str, *, margin: int = 20,
                 detect_max_side: int = 0, det_threshold: float = 0.0) -> None:
        self._mtcnn = mtcnn
        self._resnet = resnet.eval()
        self.model_id = model_id
        self.margin = margin
        self.detect_max_side = detect_max_side
        self.det_threshold = det_threshold

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import cv2
        import torch

        rgb = _check_rgb(rgb)
        h, w = rgb.shape[:2]
        scale = 1.0
        img = rgb
        if self.detect_max_side and max(h, w) > self.detect_max_side:
            scale = self.detect_max_side / max(h, w)
            img = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                             interpolation=cv2.INTER_AREA)
        with torch.inference_mode():
            boxes, probs = self._mtcnn.detect(img)
        return self._filter(boxes, probs, scale, w, h)

    def detect_batch(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`detect` for many images; same-sized ones go through MTCNN together."""
        import torch

        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(images)
        groups: dict[tuple, list[int]] = {}
        for i, img in enumerate(images):
            _check_rgb(img)
            groups.setdefault(img.shape, []).append(i)
        for shape, idx in groups.items():
            if len(idx) == 1 or (self.detect_max_side and max(shape[:2]) > self.detect_max_side):
                for i in idx:
                    out[i] = self.detect(images[i])
                continue
            with torch.inference_mode():
                boxes, probs = self._mtcnn.detect(np.stack([images[i] for i in idx]))
            h, w = shape[:2]
            for i, b, p in zip(idx, boxes, probs, strict=True):
                out[i] = self._filter(b, p, 1.0, w, h)
        return out  # type: ignore[return-value]

    def _filter(self, boxes, probs, scale: float, w: int, h: int
                ) -> tuple[np.ndarray, np.ndarray]:
        if boxes is None or len(boxes) == 0:
            return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
        boxes = np.asarray(boxes, np.float32) / scale
        probs = np.asarray(probs, np.float32)
        keep = probs >= self.det_threshold
        boxes, probs = boxes[keep], probs[keep]
        # Clip to the frame: MTCNN boxes may stick out a little.
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        ok = (boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 2)
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
        import torch

        if len(crops) == 0:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        with torch.inference_mode():
            emb = self._resnet(torch.from_numpy(standardise(crops)))
        emb = emb.numpy().astype(np.float32, copy=False)
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


def load_resnet(path: Path | None) -> torch.nn.Module:
    import torch
    from facenet_pytorch import InceptionResnetV1

    if path is None:
        # The normal facenet-pytorch way: downloads once into the torch hub cache.
        try:
            return InceptionResnetV1(pretrained="vggface2").eval()
        except Exception as e:  # network errors come in many types
            raise WeightsError(f"cannot download the vggface2 weights ({e}); pass --weights "
                               "with a local state_dict file") from e
    model = InceptionResnetV1(pretrained=None, classify=False)
    try:
        # mmap + assign: the weights stay file-backed pages, not a second anonymous copy.
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise WeightsError(f"{path} is not a torch state_dict: {e}") from e
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state_dict")
    state = {k: v for k, v in state.items() if not k.startswith("logits.")}
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise WeightsError(f"{path} does not fit InceptionResnetV1: {e}") from e
    return model.eval()


def set_threads(threads: int) -> int:
    """torch intra-op threads: ``threads``, or with 0 one per available core but one.

    The core left over runs capture, decoding and the Redis/HTTP threads; on a
    busy 2-core box two OpenMP threads fighting those cost 3–4× per inference.
    """
    import os

    import torch

    n = threads
    if not n:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
        n = max(1, cores - 1)
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


def load_analyzer(weights: str | Path = "casia-webface", *, model_id: str | None = None,
                  min_face_size: int = 40, margin: int = 20, detect_max_side: int = 0,
                  det_threshold: float = 0.0, threads: int | None = None) -> FaceAnalyzer:
    """Build a :class:`FaceAnalyzer` (CPU).  Raises :class:`WeightsError` with advice."""
    from facenet_pytorch import MTCNN

    if threads is not None:
        set_threads(threads)
    mid, path = resolve_weights(weights, model_id)
    resnet = load_resnet(path)
    mtcnn = MTCNN(image_size=IMAGE_SIZE, margin=margin, min_face_size=min_face_size,
                  keep_all=True, post_process=True, device="cpu")
    log.info("face analyzer ready: model %s, min face %d px, margin %d", mid,
             min_face_size, margin)
    return FaceAnalyzer(mtcnn, resnet, mid, margin=margin, detect_max_side=detect_max_side,
                        det_threshold=det_threshold)
