"""The stand-ins (tests only) for the chart's Redis, PostgreSQL and curl images
(scripts/container-images standins, docs/containers.md), run the way the chart runs
them: the command, args, env, probes and uid/gid ``helm template`` renders with the
default values, a read-only root filesystem with nothing writable but the chart's
volumes (no podman tmpfs either), every capability dropped, no privilege escalation.

Host network (nothing on the machine's bridges or iptables changes), so two things
differ from a pod: Redis listens on a free port (the chart's ``port 6379`` line of
redis.conf is replaced and the probe's redis-cli is given it), PostgreSQL gets
``PGPORT`` (the server, pg_isready and the entrypoint all read it).
"""

from __future__ import annotations

import http.server
import importlib.machinery
import importlib.util
import json
import os
import secrets
import sys
import tarfile
import threading
import time
from pathlib import Path

import psycopg
import pytest
import redis
import yaml
from fixtures.chart import CHART, by_kind, pod_specs
from fixtures.ci import unavailable
from fixtures.images import SCRIPT, standin_archives
from fixtures.k8s import ROOT, wait_until
from fixtures.servers import free_port

sys.path.insert(0, str(ROOT / "scripts"))
import k8s_real_node

VALUES = CHART / "values.yaml"
#: values.yaml section -> the stand-in's name in scripts/container-images.
SECTIONS = {"redis": "redis", "postgresql": "postgres", "tests": "curl"}


def container_images_module():
    loader = importlib.machinery.SourceFileLoader("container_images", str(SCRIPT))
    spec = importlib.util.spec_from_loader("container_images", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def chart_ref(section: str) -> str:
    image = yaml.safe_load(VALUES.read_text())[section]["image"]
    return f"{image['repository']}:{image['tag']}"


def workload(render, suffix: str) -> tuple[dict, dict]:
    """(pod spec, first container) of the chart's workload whose name ends in suffix."""
    (spec,) = [s for k, s in pod_specs(render()).items() if k.endswith(f"-{suffix}")]
    return spec, spec["containers"][0]


def chart_dirs(tmp_path: Path, spec: dict, container: dict) -> dict[str, Path]:
    """A host folder per volume mount, owned by the pod's user (an emptyDir with fsGroup)."""
    ctx = spec["securityContext"]
    out = {}
    for m in container["volumeMounts"]:
        d = tmp_path / m["name"]
        d.mkdir()
        os.chown(d, ctx["runAsUser"], ctx["runAsGroup"])
        out[m["mountPath"]] = d
    return out


def run_as_chart(pm, image: str, spec: dict, container: dict, *, env: dict[str, str],
                 mounts: dict[str, Path], name: str | None = None, detach: bool = False,
                 args: list[str] | None = None, timeout: float = 120):
    """``podman run`` with the chart's security context, command and args."""
    ctx, cctx = spec["securityContext"], container["securityContext"]
    assert cctx["readOnlyRootFilesystem"] and not cctx["allowPrivilegeEscalation"]
    assert cctx["capabilities"]["drop"] == ["ALL"] and ctx["runAsNonRoot"]
    argv = ["run", "--read-only", "--read-only-tmpfs=false", "--network=host",
            "--cap-drop=ALL", "--security-opt=no-new-privileges",
            f"--user={ctx['runAsUser']}:{ctx['runAsGroup']}", f"--group-add={ctx['fsGroup']}"]
    argv += ["-d"] if detach else ["--rm"]
    if name:
        argv += ["--name", name]
    for k, v in env.items():
        argv += ["-e", f"{k}={v}"]
    read_only = {m["mountPath"] for m in container.get("volumeMounts", []) if m.get("readOnly")}
    for inside, host in mounts.items():
        argv += ["-v", f"{host}:{inside}:{'ro' if inside in read_only else 'rw'}"]
    if container.get("command"):
        argv += ["--entrypoint", json.dumps(container["command"])]
    p = pm(*argv, image, *(container.get("args", []) if args is None else args),
           check=False, timeout=timeout)
    if detach:
        assert p.returncode == 0, p.stderr
        pm.started.append(p.stdout.strip())
    return p


def wait_probe(pm, container: str, command: list[str], timeout: float = 90) -> None:
    """Until the chart's exec probe succeeds in the container; fails at once if the
    container exits (wait_until would keep polling through the error)."""
    pm.wait_while_running(
        container, lambda: pm("exec", container, *command, check=False,
                              timeout=30).returncode == 0,
        f"probe {command} still failing", timeout)


def host_address() -> str:
    """This machine's first global IPv4 address (not loopback: PostgreSQL's initdb
    trusts 127.0.0.1, as in the official image, so a password is checked only on
    other addresses)."""
    try:
        return k8s_real_node.host_ip()  # the one the real Node uses too
    except RuntimeError:
        unavailable("no global IPv4 address to reach PostgreSQL on a non-loopback address")


# --- names ------------------------------------------------------------------------------

def test_standins_carry_the_charts_image_names(standin_images, standin_podman):
    module = container_images_module()
    values = yaml.safe_load(VALUES.read_text())
    mine = module.values_scalars(VALUES.read_text())
    for section, val in values.items():  # the script's small YAML reader agrees with PyYAML
        if isinstance(val, dict) and isinstance(val.get("image"), dict):
            for key, v in val["image"].items():
                assert mine[(section, "image", key)] == ("" if v is None else str(v)), \
                    (section, key)
    assert {v: k for k, v in SECTIONS.items()} == module.STANDINS
    expected = {chart_ref(s): module.qualify(chart_ref(s)) for s in SECTIONS}
    assert standin_images == expected
    assert expected == {"redis:7.4.2-bookworm": "docker.io/library/redis:7.4.2-bookworm",
                        "postgres:16.6-bookworm": "docker.io/library/postgres:16.6-bookworm",
                        "curlimages/curl:8.11.1": "docker.io/curlimages/curl:8.11.1"}
    for section, name in SECTIONS.items():
        labels = standin_podman.inspect(expected[chart_ref(section)])["Config"]["Labels"]
        assert labels["io.facegrid.standin"].startswith(f"{name}-"), labels


def test_standin_users_are_the_official_images_uids(standin_images, standin_podman):
    def ident(image: str, *user: str) -> str:
        return standin_podman("run", "--rm", "--read-only", "--network=host", *user,
                              "--entrypoint", "id", image).stdout.strip()

    assert ident(standin_images["redis:7.4.2-bookworm"], "--user=999:999") \
        == "uid=999(redis) gid=999(redis) groups=999(redis)"
    assert ident(standin_images["postgres:16.6-bookworm"], "--user=999:999") \
        == "uid=999(postgres) gid=999(postgres) groups=999(postgres)"
    # curl's image user is its own (the chart sets 100:101 too)
    assert ident(standin_images["curlimages/curl:8.11.1"]) \
        == "uid=100(curl_user) gid=101(curl_group) groups=101(curl_group)"


# --- Redis ---------------------------------------------------------------------------------

def test_redis_standin_runs_the_charts_command_with_auth_and_acl_users(
        standin_images, standin_podman, render, tmp_path):
    pm = standin_podman
    spec, c = workload(render, "redis")
    assert spec["securityContext"]["runAsUser"] == 999
    image = standin_images[c["image"]]
    (conf,) = [d["data"]["redis.conf"] for n, d in by_kind(render(), "ConfigMap").items()
               if n.endswith("-redis")]
    port = free_port()
    assert "\nport 6379\n" in conf
    mounts = chart_dirs(tmp_path, spec, c)
    (mounts["/etc/redis"] / "redis.conf").write_text(conf.replace("\nport 6379\n",
                                                                  f"\nport {port}\n"))
    (mounts["/etc/redis"] / "redis.conf").chmod(0o644)
    # the Secrets' values: REDIS_PASSWORD and one per ACL user (SERVER_PASSWORD, ...)
    env = {e["name"]: secrets.token_urlsafe(16) for e in c["env"]}
    assert "REDIS_PASSWORD" in env and "WORKER_PASSWORD" in env, env
    name = f"fg-standin-redis-{port}"
    run_as_chart(pm, image, spec, c, env=env, mounts=mounts, name=name, detach=True)

    def probe(kind: str) -> list[str]:
        sh, flag, text = c[kind]["exec"]["command"]
        assert "redis-cli ping" in text
        return [sh, flag, text.replace("redis-cli", f"redis-cli -p {port}")]

    wait_probe(pm, name, probe("readinessProbe"))
    wait_probe(pm, name, probe("livenessProbe"), timeout=10)
    assert "requirepass" in (mounts["/run/redis"] / "auth.conf").read_text()

    r = redis.Redis(port=port, password=env["REDIS_PASSWORD"], socket_timeout=5)
    assert r.ping() is True
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, socket_timeout=5).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, password="wrong", socket_timeout=5).ping()
    no_auth = pm("exec", name, "sh", "-c", f"redis-cli -p {port} ping", check=False)
    assert "NOAUTH" in no_auth.stdout + no_auth.stderr

    # the chart's ACL rules are understood by this redis-server (7.0)
    worker = redis.Redis(port=port, username="facegrid-worker",
                         password=env["WORKER_PASSWORD"], socket_timeout=5)
    assert worker.xadd("facegrid:events", {"k": "v"})
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker.set("not-facegrid", 1)
    operator = redis.Redis(port=port, username="facegrid-operator",
                           password=env["OPERATOR_PASSWORD"], socket_timeout=5)
    assert operator.acl_setuser("facegrid-node-x", enabled=True, passwords=["+pw"])
    # appendonly: the data is written to the /data volume as uid 999
    wait_until(lambda: (mounts["/data"] / "appendonlydir").is_dir(), 10, what="appendonlydir")
    assert (mounts["/data"] / "appendonlydir").stat().st_uid == 999


# --- PostgreSQL ------------------------------------------------------------------------------

def test_postgres_standin_initialises_then_restarts_on_its_data(
        standin_images, standin_podman, render, tmp_path):
    pm = standin_podman
    spec, c = workload(render, "postgresql")
    assert spec["securityContext"]["runAsUser"] == 999 and "command" not in c
    image = standin_images[c["image"]]
    host, port = host_address(), free_port()
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env.pop("POSTGRES_PASSWORD") is None  # from the Secret
    user, db, pgdata = env["POSTGRES_USER"], env["POSTGRES_DB"], env["PGDATA"]
    password = secrets.token_urlsafe(16)
    env = {**env, "POSTGRES_PASSWORD": password, "PGPORT": str(port)}
    mounts = chart_dirs(tmp_path, spec, c)
    data = mounts["/var/lib/postgresql/data"] / Path(pgdata).name
    probe = c["readinessProbe"]["exec"]["command"]
    assert c["livenessProbe"]["exec"]["command"] == probe

    def start(n: int) -> str:
        name = f"fg-standin-pg-{port}-{n}"
        run_as_chart(pm, image, spec, c, env=env, mounts=mounts, name=name, detach=True)
        wait_probe(pm, name, probe, timeout=120)
        return name

    def connect(pw: str = password):
        return psycopg.connect(host=host, port=port, user=user, password=pw, dbname=db,
                               connect_timeout=5, autocommit=True)

    first = start(1)
    logs = pm.logs(first)
    assert "PostgreSQL init process complete" in logs, logs
    with connect() as conn:
        row = conn.execute("SELECT current_user, current_database(), "
                           "current_setting('server_version_num')::int / 10000").fetchone()
        assert row == (user, db, 15)
        conn.execute("CREATE TABLE standin (v text)")
        conn.execute("INSERT INTO standin VALUES ('kept')")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect("wrong").close()
    assert data.stat().st_uid == 999 and data.stat().st_mode & 0o777 == 0o700
    assert (data / "PG_VERSION").read_text().strip() == "15"

    pm("stop", "-t", "30", first)
    assert pm.state(first)["ExitCode"] == 0, pm.logs(first)
    second = start(2)
    logs = pm.logs(second)
    assert "appears to contain a database; Skipping initialization" in logs, logs
    assert "init process complete" not in logs
    with connect() as conn:
        assert conn.execute("SELECT v FROM standin").fetchall() == [("kept",)]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect("wrong").close()


def test_postgres_standin_refuses_to_initialise_without_a_password(
        standin_images, standin_podman, render, tmp_path):
    spec, c = workload(render, "postgresql")
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    mounts = chart_dirs(tmp_path, spec, c)
    p = run_as_chart(standin_podman, standin_images[c["image"]], spec, c, env=env,
                     mounts=mounts, timeout=60)
    assert p.returncode != 0
    assert "superuser password is not specified" in p.stderr, p.stderr
    assert not (mounts["/var/lib/postgresql/data"] / "pgdata" / "PG_VERSION").exists()


# --- curl (the helm test pod) ------------------------------------------------------------------

class Flaky(http.server.BaseHTTPRequestHandler):
    """/readyz: 503 twice, then 200 (the helm test's --retry-all-errors must retry)."""
    hits = 0

    def do_GET(self):
        if self.path == "/readyz":
            type(self).hits += 1
            code, body = (503, b"not yet\n") if type(self).hits <= 2 else (200, b"ready\n")
        else:
            code, body = 404, b"no such page\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_curl_standin_runs_the_helm_test_args(standin_images, standin_podman, render,
                                              tmp_path):
    (spec,) = [s for k, s in pod_specs(render()).items() if k.endswith("-test-readyz")]
    c = spec["containers"][0]
    assert spec["securityContext"]["runAsUser"] == 100 and "command" not in c
    image = standin_images[c["image"]]
    assert standin_podman.inspect(image)["Config"]["Entrypoint"] == ["/entrypoint.sh"]
    args = c["args"]
    assert args[-1].endswith("/readyz") and "--retry-all-errors" in args
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        t0 = time.monotonic()
        p = run_as_chart(standin_podman, image, spec, c, env={}, mounts={},
                         args=[*args[:-1], f"{base}/readyz"], timeout=90)
        assert p.returncode == 0, p.stderr
        # --fail-with-body prints each failed attempt's body too (as curl 8 does)
        assert p.stdout == "not yet\nnot yet\nready\n" and Flaky.hits == 3, p.stdout
        assert time.monotonic() - t0 >= 6  # two retries, 3 s apart
        p = run_as_chart(standin_podman, image, spec, c, env={}, mounts={},
                         args=["--fail-with-body", "-sS", f"{base}/missing"], timeout=60)
        assert p.returncode == 22 and p.stdout == "no such page\n", (p.returncode, p.stdout)
    finally:
        server.shutdown()
        server.server_close()


# --- archives for containerd ------------------------------------------------------------------

def test_standin_archives_hold_the_charts_fully_qualified_names(standin_images):
    archives = standin_archives()
    assert set(archives) == set(standin_images)
    for ref, tar in archives.items():
        with tarfile.open(tar) as t:
            manifest = json.load(t.extractfile("manifest.json"))
        assert [m["RepoTags"] for m in manifest] == [[standin_images[ref]]], manifest
