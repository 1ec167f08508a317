"""The torch backend: facenet-pytorch's MTCNN and InceptionResnetV1, the reference.

Needs the ``torch`` extra (torch, torchvision, facenet-pytorch).  The node runs
ONNX by default (:mod:`facegrid_vision.onnx_backend`); this backend is what the
ONNX files are exported from and compared against, and ``--backend torch``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facegrid_vision.faces import IMAGE_SIZE, default_threads
from facegrid_vision.models import WeightsError, resolve_weights
from facegrid_vision.mtcnn import Detections

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def import_torch():
    """``torch``, or a :class:`WeightsError` saying which extra to install."""
    try:
        import facenet_pytorch  # noqa: F401
        import torch
    except ModuleNotFoundError as e:
        raise WeightsError(f"the torch backend needs the 'torch' extra "
                           f"(pip install 'facegrid[torch]'): {e}") from None
    return torch


def load_resnet(path: Path | None) -> torch.nn.Module:
    """InceptionResnetV1 from a state_dict file (None: facenet-pytorch's vggface2 download)."""
    torch = import_torch()
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
    """torch intra-op threads (0: one per available core but one)."""
    torch = import_torch()
    torch.set_num_threads(default_threads(threads))
    return torch.get_num_threads()


class TorchMTCNN:
    """facenet-pytorch's MTCNN (its own pyramid/NMS code): the detection reference."""

    def __init__(self, min_face_size: int = 20) -> None:
        from facenet_pytorch import MTCNN

        self.mtcnn = MTCNN(image_size=IMAGE_SIZE, min_face_size=min_face_size, keep_all=True,
                           device="cpu")

    def detect_many(self, imgs: np.ndarray) -> list[Detections]:
        import torch

        with torch.inference_mode():
            boxes, probs, points = self.mtcnn.detect(imgs, landmarks=True)
        out = []
        for b, p, pt in zip(boxes, probs, points, strict=True):
            if b is None or len(b) == 0:
                out.append(Detections.empty())
            else:
                out.append(Detections(np.asarray(b, np.float32), np.asarray(p, np.float32),
                                      np.asarray(pt, np.float32)))
        return out


class TorchEmbedNet:
    def __init__(self, resnet: torch.nn.Module) -> None:
        self.resnet = resnet.eval()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.resnet(torch.from_numpy(x)).numpy()


def load(weights: str | Path, *, model_id: str | None = None, min_face_size: int = 40,
         threads: int | None = None) -> tuple[TorchMTCNN, TorchEmbedNet, str]:
    """(detector, embedding net, model id) on torch."""
    import_torch()
    if threads is not None:
        set_threads(threads)
    mid, path = resolve_weights(weights, model_id)
    if path is not None and path.is_dir():
        raise WeightsError(f"{path} is a folder of ONNX files: use --backend onnx, or give "
                           "the torch backend a state_dict")
    return TorchMTCNN(min_face_size), TorchEmbedNet(load_resnet(path)), mid
