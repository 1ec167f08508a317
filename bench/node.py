"""Benchmark of the edge node on this machine: frames/s, stage latency, idle CPU, RSS.

    .venv/bin/python bench/node.py [--backend both|onnx|torch] [--frames 150]
        [--idle-seconds 8] [--threads 0] [--detect-every 1] [--int8] [--detect-max-side 640]

Input: 640×480 frames with two real LFW faces in view (swaying a little, as
people standing at a door do), processed by the node's own FramePipeline with
the default settings (tracker on, detector on every active frame, MTCNN on the
full 640×480 frame, converted CASIA-WebFace weights).  Idle CPU is measured on
the real NodeAgent reading a still clip after it went idle.

``--backend both`` (the default) runs each backend in its own process (so the
resident memory of one is not the other's) and prints them side by side; the
ONNX files are exported first if the cache has none.  The onnx process checks
that torch was never imported.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
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


def run_one(args) -> dict:
    import cv2
    from facegrid_node.motion import IdleController, MotionDetector
    from facegrid_node.pipeline import FramePipeline
    from facegrid_node.quality import DarknessGate
    from facegrid_node.settings import NodeSettings
    from facegrid_node.tracker import IoUTracker, SendRule
    from facegrid_vision.faces import default_threads, load_analyzer

    from facegrid.logs import configure

    configure("WARNING")
    threads = default_threads(args.threads)
    s = NodeSettings()
    side = s.detect_max_side if args.detect_max_side is None else args.detect_max_side
    rss0 = rss_mb()
    t0 = time.perf_counter()
    analyzer = load_analyzer("casia-webface", backend=args.backend, int8=args.int8,
                             threads=threads, min_face_size=s.min_face_size, margin=s.margin,
                             detect_max_side=side, det_threshold=s.det_threshold,
                             max_batch=s.embed_batch)
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
        detect_every=args.detect_every,
        background_embed=(s.embed_in_background if args.embed is None
                          else args.embed == "background"), observe=observe)
    for f in frames[:5]:  # warm-up
        pipe.process(f, time.monotonic())
    pipe.flush()
    stages.clear()
    sent = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    per_frame = []
    for f in frames:
        a = time.perf_counter()
        sent += len(pipe.process(f, time.monotonic()).outgoing)
        per_frame.append(time.perf_counter() - a)
    sent += len(pipe.close().outgoing)  # the batch in flight belongs to this run
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    # One embedding batch of the two faces, timed on its own (the pipeline embeds rarely).
    boxes, _ = analyzer.detect(frames[0])
    emb_ms = []
    for _ in range(5):
        a = time.perf_counter()
        analyzer.embed(frames[0], boxes)
        emb_ms.append((time.perf_counter() - a) * 1000)
    active_rss = rss_mb()

    mode = "background" if pipe.background_embed else "inline"
    out = {"backend": args.backend + (" int8" if args.int8 else "") + f", {mode} embed",
           "threads": threads,
           "load_s": load_s, "fps": len(frames) / wall, "cpu_cores": cpu / wall,
           "frames": len(frames), "events": sent, "faces_per_batch": len(boxes),
           "embed_batch_ms": float(np.median(emb_ms)), "rss_start_mb": rss0,
           "rss_active_mb": active_rss, "detect_max_side": side,
           "torch_imported": "torch" in sys.modules}
    pf = np.array(per_frame) * 1000
    out["frame_ms"] = {"p50": float(np.percentile(pf, 50)), "p90": float(np.percentile(pf, 90))}
    for name in ("quality", "motion", "detect", "track", "embed"):
        v = np.array(stages.get(name, [0.0])) * 1000
        out[f"{name}_n"] = len(stages.get(name, []))
        out[f"{name}_ms"] = float(v.mean())
        out[f"{name}_p90_ms"] = float(np.percentile(v, 90))

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
        out["idle_cpu_pct"] = 100 * (time.process_time() - cpu0) / (time.perf_counter() - t0)
        out["idle_fps"] = (agent.frames - f0) / (time.perf_counter() - t0)
        out["idle_state"] = agent.idle.state.value
        agent.stop()
        th.join(10)
    out["rss_end_mb"] = rss_mb()
    return out


ROWS = [
    ("frames/s, detection on every active frame", "fps", "{:.1f}"),
    ("CPU ms per frame (→ frames/s one free core gives)", None, None),
    ("per frame ms p50 / p90", None, None),
    ("detect ms mean (p90)", None, None),
    ("embed ms, one batch of the two faces", "embed_batch_ms", "{:.1f}"),
    ("embed runs in the pipeline (n, mean ms)", None, None),
    ("CPU while active, cores", "cpu_cores", "{:.2f}"),
    ("resident memory MB, active", "rss_active_mb", "{:.0f}"),
    ("resident memory MB, end (after idle agent)", "rss_end_mb", "{:.0f}"),
    ("idle CPU, % of one core", "idle_cpu_pct", "{:.2f}"),
    ("model load s", "load_s", "{:.1f}"),
    ("torch imported", "torch_imported", "{}"),
]


def cell(r: dict, key: str | None, fmt: str | None, label: str) -> str:
    if key:
        return fmt.format(r[key])
    if label.startswith("CPU ms"):
        ms = 1000 * r["cpu_cores"] / r["fps"]
        return f"{ms:.1f} (→ {1000 / ms:.1f})"
    if label.startswith("per frame"):
        return f"{r['frame_ms']['p50']:.1f} / {r['frame_ms']['p90']:.1f}"
    if label.startswith("detect"):
        return f"{r['detect_ms']:.1f} ({r['detect_p90_ms']:.1f})"
    return f"{r['embed_n']}, {r['embed_ms']:.1f}"


def table(results: list[dict]) -> str:
    head = "| figure | " + " | ".join(r["backend"] for r in results) + " |"
    lines = [head, "|---" * (len(results) + 1) + "|"]
    for label, key, fmt in ROWS:
        lines.append(f"| {label} | " + " | ".join(cell(r, key, fmt, label) for r in results)
                     + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("both", "onnx", "torch"), default="both")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--idle-seconds", type=float, default=8.0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--detect-every", type=int, default=1)
    ap.add_argument("--reembed-every", type=int, default=10)
    ap.add_argument("--detect-max-side", type=int, default=None)
    ap.add_argument("--int8", action="store_true", help="int8 embedder (onnx)")
    ap.add_argument("--embed", choices=("background", "inline"), default=None,
                    help="embedding on a second thread or in the frame's step "
                         "(default: the node's setting)")
    ap.add_argument("--json", action="store_true", help="print one JSON line (one backend)")
    args = ap.parse_args()

    if args.backend != "both":
        r = run_one(args)
        print(json.dumps(r) if args.json else table([r]))
        return 0
    # Export once (torch), then each backend in a fresh process.
    subprocess.run([sys.executable, "-m", "facegrid", "--log-level", "WARNING", "models",
                    "export-onnx", "--weights", "casia-webface", "--int8"]
                   if args.int8 else
                   [sys.executable, "-c", "from facegrid_vision.onnx_backend import locate; "
                    "locate('casia-webface')"], check=True)
    results = []
    passthrough = [a for a in sys.argv[1:] if not a.startswith("--backend")]
    if "--backend" in sys.argv:
        i = sys.argv.index("--backend")
        passthrough = sys.argv[1:i] + sys.argv[i + 2:]
    for backend in ("onnx", "torch"):
        extra = [a for a in passthrough if not (backend == "torch" and a == "--int8")]
        p = subprocess.run([sys.executable, __file__, "--backend", backend, "--json", *extra],
                           capture_output=True, text=True, check=True)
        results.append(json.loads(p.stdout.strip().splitlines()[-1]))
    r0 = results[0]
    print(f"machine: {os.cpu_count()} cores, {r0['threads']} inference threads; 640x480, "
          f"2 faces in view, detect every {args.detect_every} frame(s), detect_max_side "
          f"{r0['detect_max_side']}, {r0['frames']} frames")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
