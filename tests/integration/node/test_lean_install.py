"""The node installs and runs without torch: ``facegrid[node]`` in a fresh virtualenv.

``uv pip install '.[node]'`` into a temporary venv (no torch, torchvision or
facenet-pytorch may arrive), then ``facegrid node --help`` and one frame with
two real faces through the node's own FramePipeline on the ONNX files the
export wrote, whose embeddings must equal this process's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.models]
REPO = Path(__file__).resolve().parents[3]

ONE_FRAME = r"""
import json, sys, time
import cv2, numpy as np
from facegrid_node.motion import IdleController, MotionDetector
from facegrid_node.pipeline import FramePipeline
from facegrid_node.quality import DarknessGate
from facegrid_node.settings import NodeSettings
from facegrid_node.tracker import IoUTracker, SendRule
from facegrid_vision.faces import load_analyzer

models, frame_path = sys.argv[1], sys.argv[2]
s = NodeSettings(weights=models)
a = load_analyzer(s.weights, backend=s.backend, min_face_size=s.min_face_size,
                  margin=s.margin, detect_max_side=s.detect_max_side,
                  det_threshold=s.det_threshold, threads=1)
pipe = FramePipeline(a, a, tracker=IoUTracker(s.iou_threshold, s.track_max_age_s,
                                              s.reembed_every, s.reembed_iou),
                     rule=SendRule(s.send_distance, s.resend_interval_s),
                     gate=DarknessGate(s.dark_threshold, s.dark_window),
                     motion=MotionDetector(s.motion_threshold),
                     idle=IdleController(s.idle_after_s, time.monotonic()),
                     detect_every=s.detect_every)
rgb = np.load(frame_path)
res = pipe.process(rgb, time.monotonic())
print(json.dumps({"backend": a.backend, "model": a.model_id,
                  "torch": "torch" in sys.modules,
                  "boxes": [list(o.box) for o in res.outgoing],
                  "embeddings": [o.embedding.tolist() for o in res.outgoing]}))
"""


def test_node_extra_runs_without_torch(tmp_path, onnx_models, face_analyzer, shared_data):
    import cv2

    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed")
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["FACEGRID_CACHE"] = str(tmp_path / "cache")
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], env=env,
                   check=True, timeout=120)
    py = venv / "bin" / "python"
    p = subprocess.run([uv, "pip", "install", "--quiet", "--python", str(py), "--override",
                        str(REPO / "constraints" / "overrides.txt"), f"{REPO}[node]"],
                       env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    listed = subprocess.run([uv, "pip", "list", "--python", str(py), "--format", "json"],
                            env=env, capture_output=True, text=True, check=True).stdout
    names = {d["name"].lower() for d in json.loads(listed)}
    assert {"facegrid", "onnxruntime", "numpy", "opencv-python-headless"} <= names
    assert not names & {"torch", "torchvision", "facenet-pytorch"}, names

    helped = subprocess.run([str(venv / "bin" / "facegrid"), "node", "--help"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0, helped.stderr
    assert "--backend" in helped.stdout and "--weights" in helped.stdout

    # One 640×480 frame with two LFW faces.
    people = sorted(p for p in (shared_data / "faces" / "lfw_dev").iterdir() if p.is_dir())
    frame = np.full((480, 640, 3), 90, np.uint8)
    for k, person in enumerate(people[:2]):
        face = cv2.cvtColor(cv2.imread(str(sorted(person.glob("*.jpg"))[0])),
                            cv2.COLOR_BGR2RGB)
        frame[110:110 + face.shape[0], 40 + 320 * k:40 + 320 * k + face.shape[1]] = face
    np.save(tmp_path / "frame.npy", frame)
    run = subprocess.run([str(py), "-c", ONE_FRAME, str(onnx_models), str(tmp_path / "frame.npy")],
                         env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["backend"] == "onnx" and out["model"] == "facenet-casia-webface"
    assert out["torch"] is False
    assert len(out["embeddings"]) == 2
    got = np.array(out["embeddings"], np.float32)
    boxes, _ = face_analyzer.detect(frame)
    want = face_analyzer.embed(frame, boxes)
    cos = got @ want.T
    assert cos.max(axis=1).min() >= 0.9999, cos
