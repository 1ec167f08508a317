"""Helpers for the node's integration tests: clips made from real photos, a contract server."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

W, H, FPS = 640, 480, 25


def background(seed: int = 0) -> np.ndarray:
    """A static, face-free 640×480 BGR scene (gradient + soft shapes)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    img = np.stack([90 + 40 * np.sin(xx / 90 + c + seed) * np.cos(yy / 70 - c)
                    for c in range(3)], axis=-1)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_clip(path: Path, frames) -> Path:
    import cv2

    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (W, H))
    assert vw.isOpened(), "cv2.VideoWriter cannot write MJPG"
    n = 0
    for f in frames:
        vw.write(f)
        n += 1
    vw.release()
    assert path.stat().st_size > 0 and n > 0
    return path


def appearance_frames(photo: Path, seconds: float, x: int, y: int, bg: np.ndarray):
    """A person's photo standing in the scene, swaying by a few pixels."""
    import cv2

    face = cv2.imread(str(photo))
    h, w = face.shape[:2]
    for i in range(int(seconds * FPS)):
        f = bg.copy()
        dx = int(4 * np.sin(i / 5))
        f[y:y + h, x + dx:x + dx + w] = face
        yield f


def still_frames(seconds: float, bg: np.ndarray):
    for _ in range(int(seconds * FPS)):
        yield bg.copy()


class ContractServer:
    """The node ↔ server HTTP contract (register + heartbeat), recording what it gets."""

    def __init__(self, clock_offset_s: float = 0.0, lamport_max: int = 0, port: int = 0) -> None:
        from facegrid.contract import REGISTER_PATH, Heartbeat, Registration

        self.registrations: list[tuple[str, dict]] = []
        self.heartbeats: list[tuple[str, dict]] = []
        self.offset = clock_offset_s
        self.lamport_max = lamport_max
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                auth = self.headers.get("Authorization", "")
                token = auth.removeprefix("Bearer ")
                if self.path == REGISTER_PATH:
                    reg = Registration.model_validate_json(body)
                    outer.registrations.append((token, reg.model_dump()))
                    return self._reply(200, {"node_id": reg.node_id})
                if self.path.endswith("/heartbeat"):
                    hb = Heartbeat.model_validate_json(body)
                    outer.heartbeats.append((token, hb.model_dump(mode="json")))
                    now = time.time() + outer.offset
                    return self._reply(200, {
                        "server_time": now,
                        "server_time_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                         time.gmtime(now)),
                        "lamport_max": outer.lamport_max, "heartbeat_interval_s": 0.5})
                return self._reply(404, {"detail": "not found"})

            def _reply(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self._srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self._srv.server_address[1]}"
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()

    def close(self):
        self._srv.shutdown()
        self._srv.server_close()


def wait_for(cond, timeout: float, what: str, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def metric(agent, name: str, **labels) -> float:
    labels.setdefault("node", agent.s.node_id)
    v = agent.metrics.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def make_token(node_id: str, tag: str = "") -> str:
    """A real EdDSA node JWT (the node only carries it; the worker verifies it)."""
    from facegrid import tokens

    key = tokens.generate_private_key()
    return tokens.issue_token(key, node_id, jti=f"{node_id}-{tag or 'x'}")
