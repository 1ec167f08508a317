"""Embedding model ids, the weights cache, and weights resolution (no torch import).

A gallery built with one model id is never matched against events of another,
so every producer of embeddings (the node, ``facegrid enroll``, the tools)
resolves ``--weights`` through :func:`resolve_weights` here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

MODEL_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

#: Embedding model ids (a gallery built with one must never be matched with another).
CASIA_MODEL_ID = "facenet-casia-webface"
VGGFACE2_MODEL_ID = "facenet-vggface2"


class WeightsError(RuntimeError):
    """The requested embedding weights cannot be loaded (message says what to do)."""


def cache_dir() -> Path:
    """``${FACEGRID_CACHE:-~/.cache/facegrid}``."""
    return Path(os.environ.get("FACEGRID_CACHE") or Path.home() / ".cache" / "facegrid")


def test_weights_path() -> Path:
    """Where ``facegrid models ensure-test-weights`` writes the converted CASIA weights."""
    return cache_dir() / "weights" / f"{CASIA_MODEL_ID}.pt"


def onnx_model_id(folder: Path) -> str:
    """The model id in an exported ONNX folder's ``manifest.json``."""
    import json

    try:
        mid = json.loads((folder / "manifest.json").read_text()).get("model_id")
    except (OSError, ValueError, AttributeError) as e:
        raise WeightsError(f"{folder} is not an exported ONNX folder (manifest.json: {e})"
                           ) from None
    if not isinstance(mid, str) or not MODEL_ID_RE.match(mid):
        raise WeightsError(f"{folder}/manifest.json has no valid model id")
    return mid


def resolve_weights(weights: str | Path, model_id: str | None = None) -> tuple[str, Path | None]:
    """``(model_id, path)``: path is a state_dict file, a folder of exported ONNX files
    (``manifest.json``), or None for facenet-pytorch's pretrained vggface2 download."""
    w = str(weights)
    if w in ("vggface2", VGGFACE2_MODEL_ID):
        return model_id or VGGFACE2_MODEL_ID, None
    if w in ("casia-webface", CASIA_MODEL_ID):
        path = test_weights_path()
        if not path.is_file():
            raise WeightsError(f"{path} does not exist: run `facegrid models ensure-test-weights`")
        return model_id or CASIA_MODEL_ID, path
    path = Path(w).expanduser()
    if path.is_dir():
        mid = onnx_model_id(path)
        if model_id and model_id != mid:
            raise WeightsError(f"{path} holds model {mid!r}, not --model-id {model_id!r}")
        return mid, path
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist (use 'vggface2', "
                           "'casia-webface', a state_dict file or an exported ONNX folder)")
    mid = model_id or path.stem
    if not MODEL_ID_RE.match(mid):
        raise WeightsError(f"cannot use {path.stem!r} as model id: pass --model-id")
    return mid, path
