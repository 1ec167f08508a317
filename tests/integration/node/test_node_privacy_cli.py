"""`facegrid node` as a real process: metrics/health, SIGTERM, and no image data anywhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fixtures.node import appearance_frames, background, make_token, still_frames, write_clip

from facegrid import keys, wire

pytestmark = [pytest.mark.integration, pytest.mark.models]

IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF", b"II*\x00", b"MM\x00*")
PIXELS = 160 * 160  # a face crop or more


def _looks_like_image(data: bytes) -> bool:
    return any(m in data for m in IMAGE_MAGIC[:3]) or any(
        data.startswith(m) for m in IMAGE_MAGIC[3:])


def _walk(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None


def test_node_process_writes_no_image_data(tmp_path, redis_url, redis_server, test_weights,
                                           lfw_embeddings):
    from fixtures.servers import free_port

    media, cwd, tmpdir = tmp_path / "media", tmp_path / "cwd", tmp_path / "tmp"
    for d in (media, cwd, tmpdir):
        d.mkdir()
    bg = background(5)
    photo = lfw_embeddings["Gerhard_Schroeder"][0][0]
    clip = write_clip(media / "door.avi", [*appearance_frames(photo, 1.2, 100, 100, bg),
                                           *still_frames(0.4, bg)])
    token = media / "token"
    token.write_text(make_token("door-1"))
    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmpdir), "FACEGRID_LOG_LEVEL": "INFO",
           "FACEGRID_RESEND_INTERVAL_S": "0.5", "FACEGRID_IDLE_AFTER_S": "120"}
    cmd = [str(Path(sys.executable).with_name("facegrid")), "node", "--node-id", "door-1",
           "--redis-url", redis_url, "--server-url", f"http://127.0.0.1:{free_port()}",
           "--camera", str(clip), "--loop", "--token-file", str(token),
           "--weights", str(test_weights), "--model-id", "facenet-casia-webface",
           "--timezone", "Asia/Tokyo", "--metrics-port", str(port), "--threads", "1"]
    log = (tmp_path / "node.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    r = redis_server.client()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "node.log").read_text()[-3000:]
            ready = _get(f"http://127.0.0.1:{port}/readyz")
            if ready is not None and ready.status_code == 200 and r.xlen(keys.EVENTS_STREAM) >= 2:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("node not ready with events: "
                                 + (tmp_path / "node.log").read_text()[-3000:])
        assert _get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        metrics = _get(f"http://127.0.0.1:{port}/metrics").text
        assert 'facegrid_node_events_sent_total{node="door-1"}' in metrics
        assert 'facegrid_node_camera_up{node="door-1"} 1.0' in metrics
        assert 'facegrid_node_heartbeats_total{node="door-1",reason="unreachable"}' in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    out = (tmp_path / "node.log").read_text()
    assert "stopped after" in out

    # Nothing the node wrote holds an image: no files at all in its cwd or TMPDIR.
    written = _walk(cwd) + _walk(tmpdir)
    for p in written:
        data = p.read_bytes()
        assert not _looks_like_image(data) and len(data) < PIXELS, p
    assert written == []
    # The stream: four fields, a small JSON payload, exactly 2 KiB of embedding.
    entries = r.xrange(keys.EVENTS_STREAM)
    r.close()
    assert len(entries) >= 2
    for _, fields in entries:
        assert set(fields) == {b"v", b"token", b"payload", b"embedding"}
        assert len(fields[b"embedding"]) == wire.EMBEDDING_BYTES
        assert len(fields[b"payload"]) < 1024
        for value in fields.values():
            assert not _looks_like_image(value)
        payload = json.loads(fields[b"payload"])
        lists = [v for v in payload.values() if isinstance(v, list)]
        assert all(len(v) <= 4 for v in lists)
        ev = wire.decode(fields)
        assert ev.payload.timezone == "Asia/Tokyo" and ev.payload.timezone_offset == "+09:00"
