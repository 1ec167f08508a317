"""The ONNX Runtime backend: the exported MTCNN and InceptionResnetV1, no torch at all.

A model folder holds ``pnet.onnx``, ``rnet.onnx``, ``onet.onnx``,
``embedder.onnx`` (optionally ``embedder.int8.onnx``) and ``manifest.json``
(written last by ``facegrid models export-onnx``, :mod:`facegrid_vision.export`):
the model id, input sizes and the SHA-256 of every file, checked on load so a
truncated or swapped file is refused, never run.

Sessions are tuned for small, busy CPUs: ``threads`` intra-op threads (0: one
per core but one), one inter-op thread, sequential execution, no spinning of
idle pool threads (spinning threads burn a shared core while the node idles),
and no memory arena.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from facegrid_vision.faces import default_threads
from facegrid_vision.models import (
    CASIA_MODEL_ID,
    MODEL_ID_RE,
    VGGFACE2_MODEL_ID,
    WeightsError,
    cache_dir,
    resolve_weights,
)
from facegrid_vision.mtcnn import MTCNN

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
EMBEDDER_INT8 = "embedder.int8.onnx"
INT8_SUFFIX = ".int8"
#: name → file, fixed square input size (None: any H×W), output names.
NETS: dict[str, dict[str, Any]] = {
    "pnet": {"file": "pnet.onnx", "size": None, "outputs": ("reg", "prob")},
    "rnet": {"file": "rnet.onnx", "size": 24, "outputs": ("reg", "prob")},
    "onet": {"file": "onet.onnx", "size": 48, "outputs": ("reg", "landmarks", "prob")},
    # Weights in a separate file ONNX Runtime maps into memory (not a second copy).
    "embedder": {"file": "embedder.onnx", "data": "embedder.onnx.data", "size": 160,
                 "outputs": ("embedding",)},
}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def import_ort():
    """``onnxruntime`` with its usage telemetry off.

    Recent ONNX Runtime builds collect telemetry on Linux too: at import they write
    ``$TMPDIR/.ses`` and ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/``.  A node
    writes nothing and sends nothing but embeddings, so ``ORT_DISABLE_TELEMETRY=1``
    is set before the import (an explicit value in the environment wins).
    """
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    try:
        import onnxruntime
    except ModuleNotFoundError as e:
        raise WeightsError("the onnx backend needs onnxruntime (pip install "
                           f"'facegrid[node]'): {e}") from None
    return onnxruntime


def session_options(threads: int):
    ort = import_ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # No arena: P-Net sees a new input size at every pyramid level, and an arena
    # keeps the largest of each; measured ≈ 20 MB less resident, same speed.
    so.enable_cpu_mem_arena = False
    so.log_severity_level = 3
    return so


class OnnxNet:
    """One ONNX file on the CPU: ``net(x) → tuple of outputs``."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        ort = import_ort()
        try:
            self.session = ort.InferenceSession(str(path), session_options(threads),
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise WeightsError(f"ONNX Runtime cannot load {path}: {e}") from e
        self.input = self.session.get_inputs()[0].name
        self.path = path

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(self.session.run(None, {self.input: x}))


class OnnxEmbedNet:
    def __init__(self, net: OnnxNet) -> None:
        self.net = net

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.net(x)[0]


def default_dir(model_id: str) -> Path:
    """Where ``export-onnx`` puts a model's files unless told otherwise."""
    return cache_dir() / "onnx" / model_id


def read_manifest(folder: Path, *, verify: bool = True, int8: bool = False) -> dict:
    """The folder's manifest, every listed file present with its SHA-256 (``verify``)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise WeightsError(f"{path} does not exist: run `facegrid models export-onnx "
                           f"--out {folder}`")
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise WeightsError(f"{path} is not a manifest: {e}") from e
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        raise WeightsError(f"{path}: unknown manifest format {m.get('format')!r}"
                           if isinstance(m, dict) else f"{path} is not a manifest")
    mid = m.get("model_id")
    if not isinstance(mid, str) or not MODEL_ID_RE.match(mid):
        raise WeightsError(f"{path}: bad model id {mid!r}")
    files = m.get("files")
    need = [*NETS, *(["embedder_int8"] if int8 else [])]
    if not isinstance(files, dict) or any(n not in files for n in need):
        if int8 and isinstance(files, dict) and "embedder_int8" not in files:
            raise WeightsError(f"{folder} has no int8 embedder: export with "
                               "`facegrid models export-onnx --int8`")
        raise WeightsError(f"{path} does not list {', '.join(need)}")
    if verify:
        for name in need:
            f = Path(folder) / files[name]["file"]
            if not f.is_file():
                raise WeightsError(f"{f} (listed in {path}) is missing")
            if sha256_file(f) != files[name]["sha256"]:
                raise WeightsError(f"{f} does not match the SHA-256 in {path}: "
                                   "export the models again")
            data = files[name].get("data")
            if data:
                d = Path(folder) / data
                if not d.is_file() or sha256_file(d) != files[name].get("data_sha256"):
                    raise WeightsError(f"{d} (listed in {path}) is missing or does not "
                                       "match its SHA-256: export the models again")
    return m


def locate(weights: str | Path, model_id: str | None = None,
           onnx_dir: str | Path | None = None) -> Path:
    """The ONNX folder for ``weights``: ``onnx_dir``, a ``--weights`` folder, or the cache
    folder of the weights' model id (exported there first if missing or stale and torch
    is installed)."""
    if onnx_dir:
        return Path(onnx_dir).expanduser()
    mid, path = resolve_weights(weights, model_id)
    if path is not None and path.is_dir():
        return path
    folder = default_dir(mid)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Nodes started together (facegrid up) export once: the others wait, then reuse it.
    with open(folder.parent / f".{mid}.lock", "w") as lock:
        import fcntl

        fcntl.flock(lock, fcntl.LOCK_EX)
        return _usable_or_export(weights, model_id, folder, path)


def _usable_or_export(weights, model_id, folder: Path, path: Path | None) -> Path:
    stale = None
    if (folder / MANIFEST).is_file():
        try:
            m = read_manifest(folder, verify=False)
            want = None if path is None else sha256_file(path)
            if m["weights"].get("sha256") == want:
                return folder
            stale = "its weights changed"
        except (WeightsError, KeyError, AttributeError) as e:
            stale = str(e)
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError:
        raise WeightsError(
            f"no usable ONNX export of {weights} at {folder}"
            f"{f' ({stale})' if stale else ''}: run `facegrid models export-onnx --weights "
            f"{weights}` where torch is installed, or pass the exported folder "
            "(--weights DIR or --onnx-dir)") from None
    from facegrid_vision.export import export_onnx

    log.info("exporting %s to ONNX in %s%s", weights, folder, f" ({stale})" if stale else "")
    export_onnx(weights, folder, model_id=model_id)
    return folder


def load(weights: str | Path, *, model_id: str | None = None,
         onnx_dir: str | Path | None = None, int8: bool = False, min_face_size: int = 40,
         threads: int | None = None) -> tuple[MTCNN, OnnxEmbedNet, str]:
    """(numpy MTCNN on ONNX Runtime, embedding net, model id)."""
    folder = locate(weights, model_id, onnx_dir)
    m = read_manifest(folder, int8=int8)
    want = model_id or {"vggface2": VGGFACE2_MODEL_ID, "casia-webface": CASIA_MODEL_ID}.get(
        str(weights))
    if want and want != m["model_id"]:
        raise WeightsError(f"{folder} holds model {m['model_id']!r}, not {want!r}")
    n = default_threads(threads or 0)
    files = m["files"]
    nets = {k: OnnxNet(folder / files[k]["file"], threads=n) for k in ("pnet", "rnet", "onet")}
    emb = OnnxNet(folder / files["embedder_int8" if int8 else "embedder"]["file"], threads=n)
    mid = m["model_id"] + (INT8_SUFFIX if int8 else "")
    log.info("ONNX models from %s (%d threads%s)", folder, n, ", int8 embedder" if int8 else "")
    mtcnn = MTCNN(nets["pnet"], nets["rnet"], nets["onet"], min_face_size=min_face_size)
    return mtcnn, OnnxEmbedNet(emb), mid
