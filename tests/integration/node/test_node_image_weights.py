"""The node image's build-time weights step (node_image/docker/fetch_weights.py, run by
node_image/Dockerfile's models-export stage), here against the real converted weights:
a WEIGHTS_FILE from the build context lands at <dir>/<MODEL_ID>.pt, the node's
own loader accepts it with that model id, and a wrong checksum or a file that
is not an InceptionResnetV1 state_dict fails the build."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

import pytest
from fixtures.chart import REPO

pytestmark = [pytest.mark.integration, pytest.mark.models]


WEIGHTS_SCRIPT = REPO / "node_image" / "docker" / "fetch_weights.py"


def run_step(tmp_path, **env):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    full = {**os.environ, "WEIGHTS_OUT": str(out), "BUILD_CONTEXT": str(tmp_path / "ctx"),
            "WEIGHTS_URL": "", "WEIGHTS_SHA256": "", "WEIGHTS_FILE": "", **env}
    p = subprocess.run([sys.executable, str(WEIGHTS_SCRIPT)], env=full,
                       capture_output=True, text=True, timeout=300)
    return p, out


def test_weights_file_is_baked_and_loads_with_its_model_id(tmp_path, test_weights):
    from facegrid_vision.models import resolve_weights
    from facegrid_vision.torch_backend import load_resnet

    ctx = tmp_path / "ctx" / "weights"
    ctx.mkdir(parents=True)
    shutil.copyfile(test_weights, ctx / "mine.pt")
    digest = hashlib.sha256(test_weights.read_bytes()).hexdigest()
    p, out = run_step(tmp_path, WEIGHTS_FILE="weights/mine.pt", MODEL_ID="facenet-site-a",
                      WEIGHTS_SHA256=digest.upper())
    assert p.returncode == 0, p.stdout + p.stderr
    baked = out / "facenet-site-a.pt"
    assert f"sha256 {digest}" in p.stdout
    # What the image's FACEGRID_WEIGHTS / FACEGRID_MODEL_ID give the node agent.
    model_id, path = resolve_weights(str(baked), "facenet-site-a")
    assert (model_id, path) == ("facenet-site-a", baked)
    assert resolve_weights(str(baked))[0] == "facenet-site-a"  # the file stem agrees
    assert load_resnet(path).last_linear.out_features == 512


def test_wrong_checksum_or_wrong_file_fails_the_build(tmp_path, test_weights):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    shutil.copyfile(test_weights, ctx / "w.pt")
    p, out = run_step(tmp_path, WEIGHTS_FILE="w.pt", MODEL_ID="m", WEIGHTS_SHA256="0" * 64)
    assert p.returncode != 0 and "!= WEIGHTS_SHA256" in p.stderr
    assert not (out / "m.pt").exists()

    import torch

    torch.save({"conv.weight": torch.zeros(1)}, ctx / "other.pt")
    p, out = run_step(tmp_path, WEIGHTS_FILE="other.pt", MODEL_ID="m")
    assert p.returncode != 0 and "not an InceptionResnetV1 state_dict" in p.stderr
    assert not (out / "m.pt").exists()
