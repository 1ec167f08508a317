"""`facegrid enroll` end to end: the real CLI, the real embedder, a real server process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from facegrid_services.store import db
from facegrid_services.store.models import Embedding
from sqlalchemy import func, select

from facegrid.contract import API_PREFIX

pytestmark = [pytest.mark.models, pytest.mark.integration]


def run_enroll(directory: Path, server) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("facegrid")
    return subprocess.run(
        [str(exe), "enroll", str(directory), "--server", server.url,
         "--admin-token", server.admin_token],
        capture_output=True, text=True, timeout=2400)


def test_enroll_lfw_dev_twice(live_server, shared_data, test_weights):
    directory = shared_data / "faces" / "lfw_dev"
    folders = sorted(p for p in directory.iterdir() if p.is_dir())
    photos = sum(1 for f in folders for p in f.iterdir() if p.suffix.lower() == ".jpg")

    first = run_enroll(directory, live_server)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = first.stdout.splitlines()[0]
    assert summary.startswith(f"{len(folders)} people, {photos} photos: ")
    assert "embedding" in first.stderr  # the progress bar goes to stderr

    client = httpx.Client(base_url=live_server.url, headers=live_server.admin, timeout=10)
    people = client.get(f"{API_PREFIX}/people", params={"limit": 1000}).json()
    assert people["total"] == len(folders)
    assert {p["name"] for p in people["items"]} == {f.name.replace("_", " ") for f in folders}
    enrolled = sum(p["embeddings"].get("facenet-casia-webface", 0) for p in people["items"])
    no_face = int(summary.split(", ")[3].split()[0])
    assert enrolled == photos - no_face
    assert enrolled >= 0.95 * photos  # LFW photos are face photos

    engine = db.make_engine(live_server.database_url)
    with db.session_factory(engine)() as s:
        vectors = s.scalars(select(Embedding.vector).limit(50)).all()
        for v in vectors:
            assert abs(np.linalg.norm(np.frombuffer(v, "<f4")) - 1) < 1e-3

    # Re-running changes nothing: every photo is recognised by its hash.
    second = run_enroll(directory, live_server)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"0 enrolled, {enrolled} already enrolled" in second.stdout.splitlines()[0]
    with db.session_factory(engine)() as s:
        assert s.scalar(select(func.count()).select_from(Embedding)) == enrolled
    engine.dispose()
    client.close()


def test_enroll_reports_bad_input(live_server, tmp_path, test_weights):
    assert run_enroll(tmp_path / "missing", live_server).returncode == 2
    person = tmp_path / "Broken_Photo"
    person.mkdir()
    (person / "broken.jpg").write_bytes(b"not a jpeg at all")
    result = run_enroll(tmp_path, live_server)
    assert result.returncode == 0, result.stderr
    assert "1 unreadable" in result.stdout and "broken.jpg" in result.stdout
    wrong = subprocess.run(
        [str(Path(sys.executable).with_name("facegrid")), "enroll", str(tmp_path),
         "--server", live_server.url, "--admin-token", "wrong-token-0123456789"],
        capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 1 and "refused the admin token" in wrong.stderr
