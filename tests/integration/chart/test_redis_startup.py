"""The Redis start-up of the chart and of compose.yaml, run for real with
redis-server: the password is required, it never appears on the command line,
AOF is on and eviction is off."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis
import yaml
from fixtures.chart import REPO, by_kind
from fixtures.ci import unavailable
from fixtures.servers import free_port

pytestmark = pytest.mark.integration

PASSWORD = "Zq8sPLr2x7Kd0aWm"


def start(cmd: str, env: dict, port: int) -> subprocess.Popen:
    if not shutil.which("redis-server"):
        unavailable("redis-server is not installed: run scripts/setup")
    return subprocess.Popen(["sh", "-c", cmd], env={"PATH": "/usr/bin:/bin", **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def check_running(proc: subprocess.Popen, port: int, data_dir) -> None:
    deadline = time.monotonic() + 20
    client = redis.Redis(port=port, password=PASSWORD)
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(proc.stdout.read().decode()) from None
            time.sleep(0.1)
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, password="wrong").ping()
    assert client.config_get("appendonly")["appendonly"] == "yes"
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    client.xadd("facegrid:events", {"v": "1"})
    # The password is not in the server's command line (what `ps` shows).
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()
    assert PASSWORD not in cmdline and "redis-server" in cmdline
    deadline = time.monotonic() + 10
    while not list(data_dir.rglob("*.aof")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(data_dir.rglob("*.aof")), "no append-only file written"


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(10)


@pytest.mark.parametrize("keda", [False, True], ids=["plain", "keda"])
def test_chart_redis_starts_with_password_and_aof(helm, tmp_path, keda):
    docs = helm.template(*(["--set", "worker.keda.enabled=true"] if keda else []))
    conf = by_kind(docs, "ConfigMap")["fg-facegrid-redis"]["data"]["redis.conf"]
    sts = by_kind(docs, "StatefulSet")["fg-facegrid-redis"]
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["sh", "-c"]
    (script,) = container["args"]
    etc, run, data = tmp_path / "etc", tmp_path / "run", tmp_path / "data"
    for d in (etc, run, data):
        d.mkdir()
    port = free_port()
    conf = conf.replace("/run/redis", str(run)).replace("dir /data", f"dir {data}")
    conf = conf.replace("port 6379", f"port {port}\nbind 127.0.0.1")
    (etc / "redis.conf").write_text(conf)
    script = script.replace("/run/redis", str(run)).replace("/etc/redis", str(etc))
    roles = {"SERVER_PASSWORD": "srv1Pw1234", "WORKER_PASSWORD": "wrk1Pw1234",
             "OPERATOR_PASSWORD": "opr1Pw1234"}
    if keda:
        roles["KEDA_PASSWORD"] = "ked1Pw1234"
    proc = start(script, {"REDIS_PASSWORD": PASSWORD, **roles}, port)
    try:
        check_running(proc, port, data)
        # no node user: the operator makes one per CameraNode, through its own user
        check_role_users(port, roles, None, ("server", "worker", "operator")
                         + (("keda",) if keda else ()))
        if keda:  # what KEDA's lagCount sends works; reading or writing entries does not
            k = redis.Redis(port=port, username="facegrid-keda", password="ked1Pw1234",
                            protocol=3)
            assert "redis_version" in k.info()
            assert k.xinfo_groups("facegrid:events") == [] and k.xlen("facegrid:events") >= 1
            for call in (lambda: k.xrange("facegrid:events"), lambda: k.xadd("facegrid:events",
                         {"v": "2"}), lambda: k.get("facegrid:lamport:max"),
                         lambda: k.xinfo_stream("facegrid:events", full=True)):
                with pytest.raises(redis.exceptions.NoPermissionError):
                    call()
        else:
            assert not redis.Redis(port=port, password=PASSWORD).acl_getuser("facegrid-keda")
        from facegrid_operator.redis_users import RedisUsers

        from facegrid import acl

        op_url = f"redis://facegrid-operator:opr1Pw1234@127.0.0.1:{port}/0"
        users = RedisUsers(op_url, f"redis://127.0.0.1:{port}/0")
        assert users.ensure("door-1", "d00rPw1234")
        door = redis.Redis.from_url(users.url_for("door-1", "d00rPw1234"))
        door.xadd("facegrid:events", {"v": "2"})
        with pytest.raises(redis.exceptions.NoPermissionError):
            door.xrange("facegrid:events")
        with pytest.raises(redis.exceptions.NoPermissionError):
            redis.Redis.from_url(op_url).xrange("facegrid:events")
        assert redis.Redis(port=port, password=PASSWORD).acl_getuser(acl.node_user("door-1"))
        users.close()
    finally:
        stop(proc)


def test_compose_redis_starts_with_password_and_aof(tmp_path):
    svc = yaml.safe_load((REPO / "compose.yaml").read_text())["services"]["redis"]
    assert svc["command"][:2] == ["sh", "-c"]
    data, tmp = tmp_path / "data", tmp_path / "tmp"
    data.mkdir()
    tmp.mkdir()
    port = free_port()
    script = svc["command"][2].replace("$$", "$").replace("/tmp/", f"{tmp}/")
    script = script.replace("--dir /data", f"--dir {data} --port {port} --bind 127.0.0.1")
    roles = {"SERVER_PASSWORD": "srv0Pw1234", "WORKER_PASSWORD": "wrk0Pw1234",
             "NODE_PASSWORD": "nod0Pw1234"}
    proc = start(script, {"REDIS_PASSWORD": PASSWORD, "NODE_ID": "cam-7", **roles}, port)
    try:
        check_running(proc, port, data)
        check_role_users(port, roles, "cam-7", ("server", "worker", "node"))
    finally:
        stop(proc)


def check_role_users(port: int, passwords: dict[str, str], node_id: str | None,
                     roles: tuple[str, ...]) -> None:
    """Each role's user exists with exactly facegrid.acl's rules and its own password."""
    from facegrid import acl

    admin = redis.Redis(port=port, password=PASSWORD)
    for role in roles:
        user = f"facegrid-{role}"
        pw = passwords[f"{role.upper()}_PASSWORD"]
        expected = redis.Redis(port=port, password=PASSWORD)
        expected.execute_command("ACL", "SETUSER", "expected-" + role,
                                 *acl.setuser_args(user, pw, role, node_id)[1:])
        got = admin.acl_getuser(user)
        want = admin.acl_getuser("expected-" + role)
        for field in ("commands", "keys", "channels"):
            assert got[field] == want[field], (role, field, got[field], want[field])
        assert redis.Redis(port=port, username=user, password=pw).ping()
    if "node" not in roles:
        return
    node = redis.Redis(port=port, username="facegrid-node", password=passwords["NODE_PASSWORD"])
    node.xadd("facegrid:events", {"v": "1"})
    with pytest.raises(redis.exceptions.NoPermissionError):
        node.xrange("facegrid:events")
    with pytest.raises(redis.exceptions.NoPermissionError):
        node.flushall()
