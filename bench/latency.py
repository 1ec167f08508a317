"""Face-in-frame → attendance-row latency through the real stack, and memory per component.

    .venv/bin/python bench/latency.py [--appearances 16] [--json]

Starts the whole system the way ``facegrid up`` does (redis-server, ``facegrid
server`` on SQLite, ``facegrid worker``, ``facegrid enroll examples/people``)
and one ``facegrid node`` watching a live MJPEG network camera that this script
serves at 10 frames/s.  The camera shows an empty door, then one of the
enrolled people for 1.5 s, then the door again for 2 s, and so on.  For each
appearance the script notes the instant the first frame with the face went
out on the socket, and polls the store every 10 ms for the sighting row; the
latency is the difference.  It also reports the node's share (its event's
``utc_timestamp``), the worker's commit (``received_at``), and the resident
memory (RSS) of every process of the stack.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
PEOPLE = REPO / "examples" / "people"
FPS = 10
ON_S, OFF_S = 1.5, 2.0
W, H = 640, 480


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p)) if values else float("nan")


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Camera:
    """A live MJPEG camera (multipart/x-mixed-replace) whose scene the bench controls."""

    def __init__(self, faces: list[np.ndarray]) -> None:
        rng = np.random.default_rng(0)
        y = np.linspace(70, 130, H, dtype=np.float32)[:, None, None]
        x = np.linspace(0, 25, W, dtype=np.float32)[None, :, None]
        self.bg = np.broadcast_to(y + x, (H, W, 3)).copy()
        self.rng = rng
        self.faces = faces
        self.face: np.ndarray | None = None
        self.onsets: list[float] = []  # wall time the first frame of each appearance went out
        self._pending_onset = False
        self._lock = threading.Lock()
        self.stop = threading.Event()
        cam = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                nxt = time.monotonic()
                while not cam.stop.is_set():
                    jpeg, onset = cam.frame()
                    try:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                         b"Content-Length: %d\r\n\r\n" % len(jpeg) + jpeg
                                         + b"\r\n")
                        self.wfile.flush()
                    except OSError:
                        return
                    if onset:
                        cam.onsets.append(time.time())
                    nxt += 1 / FPS
                    time.sleep(max(0.0, nxt - time.monotonic()))

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def show(self, face: np.ndarray | None) -> None:
        with self._lock:
            self.face = face
            self._pending_onset = face is not None

    def frame(self) -> tuple[bytes, bool]:
        with self._lock:
            f = self.bg.copy()
            if self.face is not None:
                f[90:390, 170:470] = self.face
            onset, self._pending_onset = self._pending_onset, False
        f += self.rng.normal(0, 1.5, f.shape).astype(np.float32)
        ok, jpeg = cv2.imencode(".jpg", np.clip(f, 0, 255).astype(np.uint8))
        assert ok
        return jpeg.tobytes(), onset

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()


def load_faces() -> list[np.ndarray]:
    faces = []
    for person in sorted(PEOPLE.iterdir()):
        for photo in sorted(person.glob("*.jpg")):
            img = cv2.imread(str(photo))
            faces.append(cv2.resize(img, (300, 300), interpolation=cv2.INTER_CUBIC))
    return faces


def poll_sightings(database_url: str, stop: threading.Event, seen: dict) -> None:
    """Every 10 ms: new sighting rows -> (first seen wall time, utc_timestamp, received_at)."""
    from facegrid_services.store import db
    from facegrid_services.store.models import Sighting
    from sqlalchemy import select

    engine = db.make_engine(database_url)
    sessions = db.session_factory(engine)
    last = 0
    while not stop.is_set():
        with sessions() as s:
            rows = s.execute(select(Sighting.id, Sighting.utc_timestamp, Sighting.received_at,
                                    Sighting.recognised).where(Sighting.id > last)
                             .order_by(Sighting.id)).all()
        now = time.time()
        for r in rows:
            seen[r.id] = (now, r.utc_timestamp.timestamp(), r.received_at.timestamp(),
                          r.recognised)
            last = r.id
        time.sleep(0.01)
    engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--appearances", type=int, default=16)
    ap.add_argument("--weights", default="casia-webface")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = ap.parse_args()
    logging_quiet()
    from facegrid.up import Stack, StackPlan, free_port

    faces = load_faces()
    cam = Camera(faces)
    state = Path(tempfile.mkdtemp(prefix="facegrid-latency-"))
    plan = StackPlan(state_dir=state, cameras=[], port=free_port(), weights=args.weights,
                     enroll_dir=PEOPLE, extra_env={"FACEGRID_LOG_LEVEL": "WARNING"})
    stack = Stack(plan, echo=lambda *a: None)
    seen: dict = {}
    stop = threading.Event()
    try:
        stack.start()
        node = stack.start_node("cam-bench", cam.url)
        database_url = stack.base_env()["FACEGRID_DATABASE_URL"]
        poller = threading.Thread(target=poll_sightings, args=(database_url, stop, seen),
                                  daemon=True)
        poller.start()
        wait_for_frames(node.metrics_port)
        time.sleep(OFF_S)
        for i in range(args.appearances):
            cam.show(faces[(i * 7) % len(faces)])
            time.sleep(ON_S)
            cam.show(None)
            time.sleep(OFF_S)
        time.sleep(2.0)
        memory = {c.name: rss_mb(c.proc.pid) for c in stack.children}
    finally:
        stop.set()
        cam.close()
        stack.stop()

    rows = sorted(seen.items())
    total, node_part, commit = [], [], []
    matched = 0
    for k, onset in enumerate(cam.onsets):
        end = cam.onsets[k + 1] if k + 1 < len(cam.onsets) else float("inf")
        first = next((v for _, v in rows if onset - 0.05 <= v[1] < end), None)
        if first is None:
            continue
        matched += 1
        total.append((first[0] - onset) * 1000)
        node_part.append((first[1] - onset) * 1000)
        commit.append((first[2] - onset) * 1000)
    load = os.getloadavg()
    result = {
        "appearances": len(cam.onsets), "with_a_sighting": matched,
        "sightings": len(rows), "recognised": sum(1 for _, v in rows if v[3]),
        "latency_ms": {"p50": pct(total, 50), "p99": pct(total, 99), "max": max(total or [0])},
        "node_ms": {"p50": pct(node_part, 50), "p99": pct(node_part, 99)},
        "commit_ms": {"p50": pct(commit, 50), "p99": pct(commit, 99)},
        "rss_mb": memory, "load_avg": [round(x, 2) for x in load],
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"face-in-frame -> sighting row, live MJPEG camera at {FPS} fps, "
          f"{len(cam.onsets)} appearances ({matched} with a sighting, "
          f"{result['recognised']}/{len(rows)} sightings recognised), SQLite")
    print(f"{'metric':<52} {'p50':>8} {'p99':>8}")
    print(f"{'face in frame -> row visible in the store (ms)':<52} "
          f"{result['latency_ms']['p50']:>8.0f} {result['latency_ms']['p99']:>8.0f}"
          "   target p99 < 400")
    print(f"{'  of which node: capture+detect+embed (ms)':<52} "
          f"{result['node_ms']['p50']:>8.0f} {result['node_ms']['p99']:>8.0f}")
    print(f"{'  face in frame -> worker commit (received_at) (ms)':<52} "
          f"{result['commit_ms']['p50']:>8.0f} {result['commit_ms']['p99']:>8.0f}")
    print("resident memory (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in memory.items()))
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0 if matched else 1


def wait_for_frames(port: int | None, timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            for line in text.splitlines():
                if line.startswith("facegrid_node_frames_total{") and float(line.split()[-1]):
                    return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise SystemExit("the node never read a frame from the bench camera")


def logging_quiet() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    sys.exit(main())
