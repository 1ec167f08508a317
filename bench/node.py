"""Benchmark of the edge node on this machine: prints frames/s, stage latency, idle CPU, RSS.

    .venv/bin/python bench/node.py [--frames 200] [--idle-seconds 10] [--threads 0]

Input: 640×480 frames with two real LFW faces in view (swaying a little, as
people standing at a door do), processed by the node's own FramePipeline with
the default settings (tracker on, detector every --detect-every frames, MTCNN
on the full 640×480 frame, converted CASIA-WebFace weights).  Idle CPU is
measured on the real NodeAgent reading a still clip after it went idle.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scene(i: int, faces: list[np.ndarray]) -> np.ndarray:
    yy, xx = np.mgrid[0:480, 0:640].astype(np.float32)
    bg = np.stack([90 + 40 * np.sin(xx / 90 + c) * np.cos(yy / 70 - c) for c in range(3)], -1)
    f = np.clip(bg, 0, 255).astype(np.uint8)
    dx = int(4 * np.sin(i / 5))
    for k, face in enumerate(faces):
        h, w = face.shape[:2]
        x, y = 40 + 320 * k + dx, 110
        f[y:y + h, x:x + w] = face
    return f


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--detect-every", type=int, default=3)
    ap.add_argument("--reembed-every", type=int, default=10)
    args = ap.parse_args()

    import cv2
    from facegrid_node.motion import IdleController, MotionDetector
    from facegrid_node.pipeline import FramePipeline
    from facegrid_node.quality import DarknessGate
    from facegrid_node.settings import NodeSettings
    from facegrid_node.tracker import IoUTracker, SendRule
    from facegrid_vision.faces import load_analyzer, set_threads

    from facegrid.logs import configure

    configure("WARNING")
    threads = set_threads(args.threads)
    s = NodeSettings()
    t0 = time.perf_counter()
    analyzer = load_analyzer("casia-webface", min_face_size=s.min_face_size, margin=s.margin,
                             detect_max_side=s.detect_max_side, det_threshold=s.det_threshold)
    load_s = time.perf_counter() - t0
    people = sorted((SHARED / "faces" / "lfw_dev").iterdir())
    faces = [cv2.cvtColor(cv2.imread(str(next(p.glob("*.jpg")))), cv2.COLOR_BGR2RGB)
             for p in people if p.is_dir()][:2]
    cycle = [scene(i, faces) for i in range(32)]  # sway period ~31 frames; little memory
    frames = [cycle[i % len(cycle)] for i in range(args.frames)]

    stages: dict[str, list[float]] = {}

    def observe(stage: str, sec: float) -> None:
        stages.setdefault(stage, []).append(sec)

    pipe = FramePipeline(
        analyzer, analyzer,
        tracker=IoUTracker(s.iou_threshold, s.track_max_age_s, args.reembed_every,
                           s.reembed_iou),
        rule=SendRule(s.send_distance, s.resend_interval_s),
        gate=DarknessGate(s.dark_threshold, s.dark_window),
        motion=MotionDetector(s.motion_threshold), idle=IdleController(60, time.monotonic()),
        detect_every=args.detect_every, observe=observe)
    for f in frames[:5]:  # warm-up
        pipe.process(f, time.monotonic())
    stages.clear()
    sent = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    per_frame = []
    for f in frames:
        a = time.perf_counter()
        sent += len(pipe.process(f, time.monotonic()).outgoing)
        per_frame.append(time.perf_counter() - a)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    fps = len(frames) / wall

    print(f"machine: {os.cpu_count()} cores, torch threads {threads}; model load {load_s:.1f}s")
    print(f"active, 640x480, 2 faces in view, detect every {args.detect_every} frames, "
          f"re-embed every {args.reembed_every} detections:")
    print(f"  frames/s: {fps:.1f}  ({len(frames)} frames in {wall:.2f}s, CPU {cpu / wall:.2f} "
          f"cores, {sent} events after warm-up)")
    pf = np.array(per_frame) * 1000
    print(f"  per frame ms: p50 {np.percentile(pf, 50):.1f}  p90 {np.percentile(pf, 90):.1f}"
          f"  p99 {np.percentile(pf, 99):.1f}")
    for name in ("quality", "motion", "detect", "track", "embed"):
        v = np.array(stages.get(name, [0.0])) * 1000
        print(f"  stage {name:8s}: n={len(stages.get(name, [])):4d}  mean {v.mean():6.2f} ms"
              f"  p90 {np.percentile(v, 90):6.2f} ms")
    print(f"  resident memory: {rss_mb():.0f} MB")

    # --- idle: the real agent on a still clip ---------------------------------
    from facegrid_node.agent import NodeAgent

    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "still.avi"
        vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (640, 480))
        still = cv2.cvtColor(scene(0, []), cv2.COLOR_RGB2BGR)
        for _ in range(50):
            vw.write(still)
        vw.release()
        token = Path(tmp) / "token"
        token.write_text("bench.token.value")
        settings = NodeSettings(node_id="bench", camera=str(clip), loop=True,
                                token_file=token, idle_after_s=1.0, metrics_port=0)
        agent = NodeAgent(settings, analyzer=analyzer, heartbeats=False, results=False)
        th = threading.Thread(target=agent.run, daemon=True)
        th.start()
        deadline = time.monotonic() + 30
        while agent.idle.state.value != "idle" and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        cpu0, t0, f0 = time.process_time(), time.perf_counter(), agent.frames
        time.sleep(args.idle_seconds)
        idle_cpu = (time.process_time() - cpu0) / (time.perf_counter() - t0)
        idle_fps = (agent.frames - f0) / (time.perf_counter() - t0)
        state = agent.idle.state.value
        agent.stop()
        th.join(10)
    print(f"idle ({state}, {args.idle_seconds:.0f}s, capture {idle_fps:.1f} frames/s): "
          f"CPU {100 * idle_cpu:.2f}% of one core")
    print(f"resident memory at the end: {rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
