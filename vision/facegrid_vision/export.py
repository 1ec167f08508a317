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

from facegrid.errors import FacegridError
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


class ExportError(FacegridError, RuntimeError):
    """The export failed or the ONNX files do not reproduce torch."""


@dataclass(frozen=True, slots=True)
class ExportReport:
    out: Path
    model_id: str
    max_abs_diff: dict[str, float]
    files: dict[str, int]  # file name → bytes


def _modules(weights_path: Path | None) -> dict:
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    from facegrid_vision.torch_backend import load_resnet

    return {"pnet": PNet().eval(), "rnet": RNet().eval(), "onet": ONet().eval(),
            "embedder": load_resnet(weights_path).eval()}


def fold_batch_norms(model):
    """A copy of InceptionResnetV1 with every batch norm folded into the layer before it.

    ONNX Runtime would fold them itself at every start, into a second, anonymous
    copy of the weights; folded here, the weights stay the (memory-mapped)
    external data file.
    """
    import copy

    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    model = copy.deepcopy(model).eval()
    for m in model.modules():
        if isinstance(getattr(m, "conv", None), nn.Conv2d) and isinstance(
                getattr(m, "bn", None), nn.BatchNorm2d):
            m.conv = fuse_conv_bn_eval(m.conv, m.bn)
            m.bn = nn.Identity()
    if isinstance(getattr(model, "last_bn", None), nn.BatchNorm1d):
        model.last_linear = fuse_linear_bn_eval(model.last_linear, model.last_bn)
        model.last_bn = nn.Identity()
    return model


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
    """``path`` (and for the embedder its external data file beside it, ``<file>.data``)."""
    spec = NETS[name]
    x = torch.zeros(1, 3, spec["size"] or 48, spec["size"] or 64)
    axes = {0: "n"} if spec["size"] else {0: "n", 2: "h", 3: "w"}
    dynamic = {"input": axes} | {o: {0: "n"} for o in spec["outputs"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(module, (x,), str(path), input_names=["input"],
                          output_names=list(spec["outputs"]), dynamic_axes=dynamic,
                          opset_version=OPSET, dynamo=False)
    if spec.get("data"):
        import onnx

        model = onnx.load(str(path))
        onnx.save_model(model, str(path), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=spec["data"],
                        size_threshold=1024)


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
    """Export, check against torch, then move the files and last the manifest into ``out``."""
    import shutil

    from facegrid_vision.torch_backend import import_torch

    torch = import_torch()
    mid, path = resolve_weights(weights, model_id)
    if path is not None and path.is_dir():
        raise ExportError(f"{path} already holds ONNX files; give the torch weights to export")
    if not MODEL_ID_RE.match(mid):
        raise WeightsError(f"model id {mid!r} must match {MODEL_ID_RE.pattern}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / f".export-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    modules = _modules(path)
    diffs: dict[str, float] = {}
    files: dict[str, dict] = {}
    try:
        for name, module in modules.items():
            spec = NETS[name]
            exported = fold_batch_norms(module) if name == "embedder" else module
            _export_one(torch, exported, name, work / spec["file"])
            # Checked against the original (unfolded) torch module.
            diff = _check(torch, module, work / spec["file"], name)
            log.info("%s: max |torch - onnxruntime| = %.3g", name, diff)
            if not diff <= tolerance:  # also NaN
                raise ExportError(f"{spec['file']} differs from torch by {diff:.3g} "
                                  f"(tolerance {tolerance:g}): nothing written")
            diffs[name] = diff
        if int8:
            quantize_int8(work / NETS["embedder"]["file"], work / EMBEDDER_INT8)
        # All checked: move into place (a running node keeps its mapped old files),
        # the manifest last: it names the checksums.
        entries = {k: dict(NETS[k]) for k in modules}
        if int8:
            entries["embedder_int8"] = {"file": EMBEDDER_INT8, "size": 160,
                                        "outputs": NETS["embedder"]["outputs"]}
        for name, spec in entries.items():
            entry = {"file": spec["file"], "input": [None, 3, spec["size"], spec["size"]],
                     "outputs": list(spec["outputs"])}
            for key in ("file", "data"):
                if spec.get(key):
                    final = out / spec[key]
                    os.replace(work / spec[key], final)
                    # onnx writes external data 0600: a non-root node (its image) must
                    # read every file; models are no secret.
                    final.chmod(0o644)
                    entry["sha256" if key == "file" else "data_sha256"] = sha256_file(final)
            if spec.get("data"):
                entry["data"] = spec["data"]
            files[name] = entry
        if not int8:
            (out / EMBEDDER_INT8).unlink(missing_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
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
    sizes = {}
    for f in files.values():
        for key in ("file", "data"):
            if f.get(key):
                sizes[f[key]] = (out / f[key]).stat().st_size
    return ExportReport(out=out, model_id=mid, max_abs_diff=diffs, files=sizes)
