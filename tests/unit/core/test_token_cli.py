"""`facegrid token keygen|issue|verify` as a person runs them (real subprocesses)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
FACEGRID = shutil.which("facegrid", path=str(Path(sys.executable).parent)) or "facegrid"


def run(*args, input=None):
    return subprocess.run([FACEGRID, *args], capture_output=True, text=True, input=input,
                          timeout=60)


def test_help_on_every_level():
    for args in ([], ["token"], ["token", "keygen"], ["token", "issue"], ["token", "verify"]):
        r = run(*args, "--help")
        assert r.returncode == 0 and "Usage" in r.stdout, (args, r.stderr)


def test_version():
    from facegrid import __version__

    assert run("version").stdout.strip() == __version__


def test_keygen_issue_verify(tmp_path):
    keys = tmp_path / "keys"
    assert run("token", "keygen", "--dir", str(keys)).returncode == 0
    assert (keys / "signing.key").stat().st_mode & 0o777 == 0o600
    r = run("token", "issue", "--key", str(keys / "signing.key"), "--node-id", "cam-01",
            "--ttl", "1h")
    assert r.returncode == 0, r.stderr
    tok = r.stdout.strip()
    r = run("token", "verify", "--public-key", str(keys / "signing.pub"), "--node-id", "cam-01",
            tok)
    assert r.returncode == 0, r.stderr
    claims = json.loads(r.stdout)
    assert claims["node_id"] == claims["sub"] == "cam-01"
    assert claims["exp"] - claims["iat"] == 3600
    # stdin
    r = run("token", "verify", "--public-key", str(keys / "signing.pub"), "-", input=tok)
    assert r.returncode == 0


@pytest.mark.parametrize(("args", "why"), [
    (["--node-id", "cam-02"], "wrong_node"),
    (["--audience", "other"], "wrong_audience"),
])
def test_verify_says_why(tmp_path, args, why):
    keys = tmp_path / "k"
    run("token", "keygen", "--dir", str(keys))
    tok = run("token", "issue", "--key", str(keys / "signing.key"), "--node-id", "cam-01"
              ).stdout.strip()
    r = run("token", "verify", "--public-key", str(keys / "signing.pub"), *args, tok)
    assert r.returncode == 1 and why in r.stderr


def test_verify_other_key_and_garbage(tmp_path):
    run("token", "keygen", "--dir", str(tmp_path / "a"))
    run("token", "keygen", "--dir", str(tmp_path / "b"))
    tok = run("token", "issue", "--key", str(tmp_path / "a" / "signing.key"), "--node-id", "n1"
              ).stdout.strip()
    r = run("token", "verify", "--public-key", str(tmp_path / "b" / "signing.pub"), tok)
    assert r.returncode == 1 and "bad_signature" in r.stderr
    r = run("token", "verify", "--public-key", str(tmp_path / "b" / "signing.pub"), "garbage")
    assert r.returncode == 1 and "malformed" in r.stderr


def test_keygen_refuses_to_overwrite(tmp_path):
    assert run("token", "keygen", "--dir", str(tmp_path)).returncode == 0
    r = run("token", "keygen", "--dir", str(tmp_path))
    assert r.returncode == 1 and "already exists" in r.stderr
