"""`facegrid up` as a person runs it: the real command, stopped by SIGINT (Ctrl-C)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fixtures.servers import free_port

from facegrid.contract import API_PREFIX

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_up_starts_the_stack_and_ctrl_c_stops_everything(tmp_path):
    state, port = tmp_path / "state", free_port()
    exe = Path(sys.executable).with_name("facegrid")
    proc = subprocess.Popen([str(exe), "up", "--state-dir", str(state), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "FACEGRID_LOG_LEVEL": "WARNING"})
    out = []
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:  # until it says it is up
            out.append(line)
            if "facegrid is up" in line or time.monotonic() > deadline:
                break
        text = "".join(out)
        assert f"dashboard http://127.0.0.1:{port}/" in text, text
        token = (state / "admin-token").read_text().strip()
        assert (state / "admin-token").stat().st_mode & 0o777 == 0o600
        assert (state / "keys" / "signing.key").stat().st_mode & 0o777 == 0o600
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200
        r = httpx.get(f"{base}{API_PREFIX}/nodes", timeout=5,
                      headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["items"] == []
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                  text=True).stdout.split()
        assert len(children) >= 3, children  # redis, server, worker
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(out) + rest
    assert "stopped." in rest
    for pid in children:  # no child left behind
        assert not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/status").read_text().find("zombie") >= 0
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base}/readyz", timeout=2)
