"""``facegrid models export-onnx``: MTCNN and InceptionResnetV1 from torch to ONNX files.

Writes ``pnet.onnx``, ``rnet.onnx``, ``onet.onnx`` (facenet-pytorch's MTCNN
weights, shipped in its wheel) and ``embedder.onnx`` (InceptionResnetV1 with
any weights :func:`~facegrid_vision.models.resolve_weights` accepts), then
``manifest.json`` (format, model id, input sizes, SHA-256 of every file, the
torch-vs-ONNX Runtime difference measured at export).  Each file is run by
ONNX Runtime on the same inputs as torch and refused (nothing written) when
they differ by more than the tolerance.  ``int8=True`` also writes
``embedder.int8.onnx``, the embedder with dynamically quantised int8 weights.

Needs the ``torch`` extra and ``onnx``/``onnxruntime`` (the ``convert`` extra);
the node that runs the files needs neither torch nor onnx.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegrid_vision.models import MODEL_ID_RE, WeightsError, resolve_weights
from facegrid_vision.onnx_backend import (
    EMBEDDER_INT8,
    MANIFEST,
    MANIFEST_FORMAT,
    NETS,
    sha256_file,
)

log = logging.getLogger(__name__)

OPSET = 17
DEFAULT_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The export failed or the ONNX files do not reproduce torch."""


@dataclass(frozen=True, slots=True)
class ExportReport:
    out: Path
    model_id: str
    max_abs_diff: dict[str, float]
    files: dict[str, int]  # file name → bytes


def _modules(weights_path: Path | None):
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    from facegrid_vision.torch_backend import load_resnet

    return {"pnet": PNet().eval(), "rnet": RNet().eval(), "onet": ONet().eval(),
            "embedder": load_resnet(weights_path).eval()}


def _sample(name: str, rng: np.random.Generator) -> np.ndarray:
    spec = NETS[name]
    if name == "embedder":
        # A smooth image-like input, standardised as the analyzer does.
        yy, xx = np.mgrid[0:160, 0:160].astype(np.float32)
        img = np.stack([127 + 100 * np.sin(xx / 17 + c) * np.cos(yy / 23 - c) for c in range(3)])
        smooth = ((img - 127.5) / 128.0)[None]
        return np.concatenate([smooth, rng.uniform(-1, 1, (1, 3, 160, 160))]).astype(np.float32)
    h = spec["size"] or 57
    w = spec["size"] or 75
    return rng.uniform(-1, 1, (3, 3, h, w)).astype(np.float32)


def _export_one(torch, module, name: str, path: Path) -> None:
    spec = NETS[name]
    x = torch.zeros(1, 3, spec["size"] or 48, spec["size"] or 64)
    axes = {0: "n"} if spec["size"] else {0: "n", 2: "h", 3: "w"}
    dynamic = {"input": axes} | {o: {0: "n"} for o in spec["outputs"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(module, (x,), str(path), input_names=["input"],
                          output_names=list(spec["outputs"]), dynamic_axes=dynamic,
                          opset_version=OPSET, dynamo=False)


def _check(torch, module, path: Path, name: str, threads: int = 1) -> float:
    from facegrid_vision.onnx_backend import OnnxNet

    x = _sample(name, np.random.default_rng(0))
    with torch.inference_mode():
        ref = module(torch.from_numpy(x))
    ref = (ref,) if isinstance(ref, torch.Tensor) else tuple(ref)
    got = OnnxNet(path, threads=threads)(x)
    if len(got) != len(ref):
        raise ExportError(f"{path.name}: {len(got)} outputs, torch gives {len(ref)}")
    return max(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, ref, strict=True))


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of the weights (activations stay float, scaled per run)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))  # it logs one INFO line per tensor on root
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QUInt8)
    finally:
        root.setLevel(level)


def export_onnx(weights: str | Path, out: Path, *, model_id: str | None = None,
                int8: bool = False, tolerance: float = DEFAULT_TOLERANCE) -> ExportReport:
    """Export, check against torch, write the files and then the manifest into ``out``."""
    from facegrid_vision.torch_backend import import_torch

    torch = import_torch()
    mid, path = resolve_weights(weights, model_id)
    if path is not None and path.is_dir():
        raise ExportError(f"{path} already holds ONNX files; give the torch weights to export")
    if not MODEL_ID_RE.match(mid):
        raise WeightsError(f"model id {mid!r} must match {MODEL_ID_RE.pattern}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    modules = _modules(path)
    diffs: dict[str, float] = {}
    files: dict[str, dict] = {}
    tmp_paths: list[Path] = []
    try:
        for name, module in modules.items():
            spec = NETS[name]
            tmp = out / f".{spec['file']}.{os.getpid()}.tmp"
            tmp_paths.append(tmp)
            _export_one(torch, module, name, tmp)
            diff = _check(torch, module, tmp, name)
            log.info("%s: max |torch - onnxruntime| = %.3g", name, diff)
            if not diff <= tolerance:  # also NaN
                raise ExportError(f"{spec['file']} differs from torch by {diff:.3g} "
                                  f"(tolerance {tolerance:g}): nothing written")
            diffs[name] = diff
        if int8:
            src = out / f".{NETS['embedder']['file']}.{os.getpid()}.tmp"
            tmp = out / f".{EMBEDDER_INT8}.{os.getpid()}.tmp"
            tmp_paths.append(tmp)
            quantize_int8(src, tmp)
        # All checked: move into place, manifest last (it names the checksums).
        for name in modules:
            spec = NETS[name]
            final = out / spec["file"]
            os.replace(out / f".{spec['file']}.{os.getpid()}.tmp", final)
            files[name] = {"file": spec["file"], "sha256": sha256_file(final),
                           "input": [None, 3, spec["size"], spec["size"]],
                           "outputs": list(spec["outputs"])}
        if int8:
            final = out / EMBEDDER_INT8
            os.replace(out / f".{EMBEDDER_INT8}.{os.getpid()}.tmp", final)
            files["embedder_int8"] = {"file": EMBEDDER_INT8, "sha256": sha256_file(final),
                                      "input": [None, 3, 160, 160],
                                      "outputs": list(NETS["embedder"]["outputs"])}
        else:
            (out / EMBEDDER_INT8).unlink(missing_ok=True)
    finally:
        for t in tmp_paths:
            t.unlink(missing_ok=True)
    manifest = {
        "format": MANIFEST_FORMAT,
        "model_id": mid,
        "weights": {"source": str(weights) if path is None else path.name,
                    "sha256": None if path is None else sha256_file(path)},
        "mtcnn": "facenet-pytorch 2.6.0 P/R/O-Net",
        "opset": OPSET,
        "exported_with": {"torch": torch.__version__.split("+")[0]},
        "max_abs_diff": diffs,
        "files": files,
    }
    tmp = out / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out / MANIFEST)
    return ExportReport(out=out, model_id=mid, max_abs_diff=diffs,
                        files={f["file"]: (out / f["file"]).stat().st_size
                               for f in files.values()})

