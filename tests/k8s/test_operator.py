"""The CameraNode operator against the real control plane, under exactly the RBAC it ships.

The operator's own run function (``facegrid_operator.operator.run``) runs in a
thread of this process, logged in with a ServiceAccount token (TokenRequest API)
bound by operator/deploy/rbac.yaml; a real ``facegrid server`` subprocess answers
heartbeats and revocations.
Pods are real Pod objects scheduled by the real kube-scheduler onto kwok's
fake edge Nodes (kwok marks them Running; no container runs).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import kopf
import pytest
import yaml
from facegrid_operator import builders
from facegrid_operator.operator import run
from facegrid_operator.settings import OperatorSettings
from fixtures.k8s import wait_until
from fixtures.servers import free_port

from facegrid import contract, tokens

pytestmark = pytest.mark.k8s
ROOT = Path(__file__).resolve().parents[2]
ADMIN = "operator-test-admin-token-0123456789"


# --------------------------------------------------------------------------- set-up
@pytest.fixture(scope="module")
def ns(k8s_cluster) -> Iterator[str]:
    name = f"fgop-{uuid.uuid4().hex[:6]}"
    k8s_cluster.kubectl("create", "namespace", name)
    yield name
    k8s_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def crd(k8s_cluster) -> None:
    k8s_cluster.kubectl("apply", "-f", str(ROOT / "crds" / "cameranodes.facegrid.io.yaml"))
    k8s_cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                        "crd/cameranodes.facegrid.io")


def rbac_for(ns: str) -> list[dict]:
    """operator/deploy/rbac.yaml moved to namespace ``ns`` (cluster-wide names suffixed)."""
    docs = [d for d in yaml.safe_load_all((ROOT / "operator/deploy/rbac.yaml").read_text()) if d]
    for d in docs:
        md = d["metadata"]
        if "namespace" in md:
            md["namespace"] = ns
        if d["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            md["name"] = f"{md['name']}-{ns}"
        ref = d.get("roleRef")
        if ref and ref["kind"] == "ClusterRole":
            ref["name"] = f"{ref['name']}-{ns}"
        for s in d.get("subjects", []):
            s["namespace"] = ns
    return docs


@pytest.fixture(scope="module")
def operator_kubeconfig(k8s_cluster, ns, crd, tmp_path_factory) -> Path:
    """A kubeconfig holding only the operator ServiceAccount's token."""
    docs = rbac_for(ns)
    k8s_cluster.apply(docs)
    token = k8s_cluster.kubectl("create", "token", "facegrid-operator", "-n", ns,
                                "--duration=2h").stdout.strip()
    path = tmp_path_factory.mktemp("op") / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "op",
        "clusters": [{"name": "c", "cluster": {"server": k8s_cluster.server,
                                               "certificate-authority": str(k8s_cluster.ca_file)}}],
        "users": [{"name": "op", "user": {"token": token}}],
        "contexts": [{"name": "op", "context": {"cluster": "c", "user": "op", "namespace": ns}}],
    }))
    yield path
    for d in docs:
        if d["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            k8s_cluster.kubectl("delete", d["kind"].lower(), d["metadata"]["name"], check=False)


def op_settings(ns: str, kubeconfig: Path, server_url: str, **kw) -> OperatorSettings:
    base = dict(kubeconfig=kubeconfig, namespace=ns, watch_namespaces=[ns],
                server_url=server_url, admin_token=ADMIN, node_image="registry.invalid/node:t",
                node_redis_url="redis://redis.invalid:6379/0", status_interval_s=1,
                rotation_check_s=1, invalid_recheck_s=600, liveness_port=0, metrics_port=0,
                revoke_retries=2, revoke_backoff_s=0.5)
    return OperatorSettings(**{**base, **kw})


class _Failures(logging.Handler):
    """Collects log records that carry an unexpected exception (a traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and not isinstance(exc, kopf.TemporaryError | kopf.PermanentError):
            self.records.append(record)


@contextlib.contextmanager
def running_operator(settings: OperatorSettings) -> Iterator[None]:
    """The operator's own run() in a thread, until the block ends; no tracebacks allowed."""
    stop, ready = threading.Event(), threading.Event()
    crashed: list[BaseException] = []

    def target() -> None:
        try:
            run(settings, stop_flag=stop, ready_flag=ready)
        except BaseException as e:  # reported below
            crashed.append(e)

    failures = _Failures()
    logging.getLogger().addHandler(failures)
    thread = threading.Thread(target=target, name="operator", daemon=True)
    thread.start()
    try:
        wait_until(lambda: ready.is_set() or not thread.is_alive(), 60, what="operator ready")
        assert not crashed and thread.is_alive(), f"operator did not start: {crashed!r}"
        yield
    finally:
        stop.set()
        thread.join(30)
        logging.getLogger().removeHandler(failures)
    assert not thread.is_alive(), "operator did not stop within 30 s"
    assert not crashed, repr(crashed)
    assert not failures.records, "\n".join(
        logging.Formatter().format(r) for r in failures.records[:3])


@pytest.fixture(scope="module")
def signing_pub(k8s_cluster, ns, operator_kubeconfig) -> bytes:
    """The operator creates the signing key (under its RBAC) and publishes the public key."""
    settings = op_settings(ns, operator_kubeconfig, "http://127.0.0.1:9")
    with running_operator(settings):
        pass
    cm = k8s_cluster.kubectl_json("get", "configmap", settings.public_key_configmap, "-n", ns)
    secret = k8s_cluster.kubectl_json("get", "secret", settings.signing_key_secret, "-n", ns)
    key = tokens.load_private_key(base64.b64decode(secret["data"][tokens.PRIVATE_KEY_FILE]))
    pub = cm["data"][tokens.PUBLIC_KEY_FILE].encode()
    assert tokens.public_pem(key) == pub
    return pub


@pytest.fixture(scope="module")
def server(signing_pub, redis_server, tmp_path_factory) -> Iterator[str]:
    """A real ``facegrid server`` that trusts the operator's public key."""
    d = tmp_path_factory.mktemp("server")
    (d / "signing.pub").write_bytes(signing_pub)
    port = free_port()
    env = {**os.environ, "FACEGRID_PORT": str(port), "FACEGRID_HOST": "127.0.0.1",
           "FACEGRID_DATABASE_URL": f"sqlite:///{d / 'facegrid.db'}",
           "FACEGRID_REDIS_URL": redis_server.url.rsplit("/", 1)[0] + "/7",
           "FACEGRID_PUBLIC_KEY_FILE": str(d / "signing.pub"), "FACEGRID_ADMIN_TOKEN": ADMIN,
           "FACEGRID_OFFLINE_AFTER_S": "30"}
    # The server's own CLI command (registered alone, so other components' CLIs don't matter).
    code = ("import typer; from facegrid_services.api.cli import register; "
            "app = typer.Typer(); register(app); app()")
    log = (d / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: proc.poll() is None and httpx.get(f"{url}/healthz").status_code < 500,
                   timeout=60, what=f"facegrid server ({d / 'server.log'})")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def operator(ns, operator_kubeconfig, server) -> Iterator[None]:
    with running_operator(op_settings(ns, operator_kubeconfig, server)):
        yield


# --------------------------------------------------------------------------- helpers
def camera(name: str, ns: str, *, host: dict | None = None, source: str = "/dev/video0",
           **spec) -> dict:
    return {"apiVersion": "facegrid.io/v1alpha1", "kind": "CameraNode",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"host": host or {"nodeName": "edge-01"}, "camera": {"source": source},
                     **spec}}


def get(k, kind: str, name: str, ns: str) -> dict | None:
    p = k.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
    return json.loads(p.stdout) if p.returncode == 0 else None


def status_of(k, name: str, ns: str) -> dict:
    return (get(k, "cameranode", name, ns) or {}).get("status") or {}


def cond(st: dict, ctype: str) -> dict:
    return next((c for c in st.get("conditions") or [] if c["type"] == ctype), {})


def pods_of(k, name: str, ns: str) -> list[dict]:
    items = k.kubectl_json("get", "pods", "-n", ns, "-l", f"facegrid.io/camera={name}")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def running_pod(k, name: str, ns: str) -> dict | None:
    pods = pods_of(k, name, ns)
    if len(pods) == 1 and pods[0]["status"].get("phase") == "Running":
        return pods[0]
    return None


def secret_token(k, name: str, ns: str) -> str | None:
    s = get(k, "secret", builders.token_secret_name(name), ns)
    return builders.secret_token(s) if s else None


def register(server: str, token: str, node_id: str) -> int:
    body = contract.Registration(node_id=node_id, timezone="UTC", model="facenet-casia-webface",
                                 version="test").model_dump()
    return httpx.post(server + contract.REGISTER_PATH, json=body,
                      headers={"Authorization": f"Bearer {token}"}).status_code


def heartbeat(server: str, token: str, node_id: str, state: str = "active") -> int:
    hb = contract.Heartbeat(sent_at=time.time(), state=state, state_seconds=3, fps=10,
                            drift_offset_ms=0, lamport=1, camera_up=True, events_sent=0,
                            events_dropped=0, backlog=0)
    return httpx.post(server + contract.heartbeat_path(node_id), content=hb.model_dump_json(),
                      headers={"Authorization": f"Bearer {token}",
                               "Content-Type": "application/json"}).status_code


# --------------------------------------------------------------------------- tests
def test_rbac_is_least_privilege(k8s_cluster, ns, operator_kubeconfig):
    sa = f"system:serviceaccount:{ns}:facegrid-operator"

    def can(*args: str) -> bool:
        p = k8s_cluster.kubectl("auth", "can-i", *args, f"--as={sa}", check=False)
        return p.stdout.strip() == "yes"

    assert can("get", "secret/facegrid-signing-key", "-n", ns)
    assert can("create", "deployments.apps", "-n", ns)
    assert can("patch", "cameranodes.facegrid.io", "--subresource=status", "-n", ns)
    assert can("watch", "nodes")
    assert not can("list", "secrets", "-n", ns)
    # nothing outside the watched namespace but reading Nodes
    assert not can("list", "cameranodes.facegrid.io", "-n", "default")
    assert not can("watch", "pods", "-n", "default")
    assert not can("create", "events", "-n", "default")
    assert not can("delete", "deployments.apps", "-n", ns)
    assert not can("get", "secret/facegrid-signing-key", "-n", "default")
    assert not can("create", "deployments.apps", "-n", "default")
    assert not can("create", "pods", "-n", ns)
    assert not can("update", "nodes")


def test_example_camera_runs_on_its_host_reports_and_is_revoked(k8s_cluster, ns, operator,
                                                                server):
    k = k8s_cluster
    example = yaml.safe_load((ROOT / "docs" / "camera.yaml").read_text())
    example["metadata"]["namespace"] = ns
    k.apply(example)
    cam = k.kubectl_json("get", "cam", "lobby", "-n", ns)
    uid = cam["metadata"]["uid"]

    # children exist, owned by the CameraNode
    secret = wait_until(lambda: get(k, "secret", "lobby-token", ns), 30, what="token Secret")
    dep = wait_until(lambda: get(k, "deployment", "lobby-node", ns), 30, what="Deployment")
    for child in (secret, dep):
        (ref,) = child["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["uid"], ref["controller"]) == ("CameraNode", uid, True)
    token = builders.secret_token(secret)
    claims = tokens.TokenVerifier.from_pem(
        k.kubectl_json("get", "configmap", "facegrid-signing-pub", "-n", ns)["data"][
            "signing.pub"]).verify(token, "lobby")
    assert claims.expires_at - claims.issued_at == 86400

    # the pod lands on the named edge Node and runs; the status says so
    pod = wait_until(lambda: running_pod(k, "lobby", ns), 60, what="lobby pod Running")
    assert pod["spec"]["nodeName"] == "edge-01"
    # its camera device comes from the Node's device plugin: nothing privileged
    (c,) = pod["spec"]["containers"]
    assert c["resources"]["limits"]["smarter-devices/video0"] == "1"
    assert "privileged" not in c["securityContext"] and c["securityContext"]["runAsNonRoot"]
    assert not any("hostPath" in v for v in pod["spec"]["volumes"])
    st = wait_until(lambda: (s := status_of(k, "lobby", ns)).get("phase") == "Running" and s,
                    30, what="phase Running")
    assert st["host"] == "edge-01" and st["observedGeneration"] == cam["metadata"]["generation"]
    for c in ("Valid", "TokenReady", "Deployed", "Scheduled"):
        assert cond(st, c)["status"] == "True", st
    wait_until(lambda: cond(status_of(k, "lobby", ns), "Heartbeating").get("reason")
               == "NotRegistered", 30, what="Heartbeating Unknown: not registered yet")

    # the node (played by this test, with the operator-issued token) heartbeats
    assert register(server, token, "lobby") == 200
    assert heartbeat(server, token, "lobby", "idle") == 200
    st = wait_until(lambda: (s := status_of(k, "lobby", ns)).get("state") == "idle" and s,
                    30, what="state idle from the heartbeat")
    assert cond(st, "Heartbeating")["status"] == "True" and st["lastHeartbeat"]
    table = k.kubectl("get", "cam", "-n", ns).stdout
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "HOST", "PHASE", "STATE", "LAST", "HEARTBEAT", "AGE"]
    assert row.split()[:4] == ["lobby", "edge-01", "Running", "idle"]

    # a new source rolls the Deployment: a new pod template, a new pod
    old_pod = pod["metadata"]["name"]
    k.kubectl("patch", "cam", "lobby", "-n", ns, "--type=merge",
              "-p", json.dumps({"spec": {"camera": {"source": "rtsp://cam.lan:554/lobby"}}}))
    new_pod = wait_until(lambda: (p := running_pod(k, "lobby", ns))
                         and p["metadata"]["name"] != old_pod and p, 60, what="rolled pod")
    env = {e["name"]: e.get("value") for e in new_pod["spec"]["containers"][0]["env"]}
    assert env["FACEGRID_CAMERA"] == "rtsp://cam.lan:554/lobby"
    assert "camera" not in {v["name"] for v in new_pod["spec"]["volumes"]}  # no device now
    assert builders.secret_token(get(k, "secret", "lobby-token", ns)) == token  # no re-issue

    # delete: the token is refused at once, the children are garbage-collected
    k.kubectl("delete", "cam", "lobby", "-n", ns, "--wait=true", "--timeout=60s")
    assert register(server, token, "lobby") in (401, 403)
    wait_until(lambda: get(k, "deployment", "lobby-node", ns) is None
               and get(k, "secret", "lobby-token", ns) is None, 60, what="children collected")


def test_two_hosts_and_a_missing_host(k8s_cluster, ns, operator):
    k = k8s_cluster
    k.apply([camera("door-a", ns),
             camera("door-b", ns, host={"nodeSelector": {"kubernetes.io/hostname": "edge-02"}},
                    source="2"),
             camera("door-c", ns, host={"nodeName": "edge-99"})])
    a = wait_until(lambda: running_pod(k, "door-a", ns), 60, what="door-a pod")
    b = wait_until(lambda: running_pod(k, "door-b", ns), 60, what="door-b pod")
    assert (a["spec"]["nodeName"], b["spec"]["nodeName"]) == ("edge-01", "edge-02")
    st = wait_until(lambda: (s := status_of(k, "door-c", ns)).get("phase") == "Invalid" and s,
                    30, what="door-c Invalid")
    valid = cond(st, "Valid")
    assert valid["status"] == "False" and valid["reason"] == "HostNotFound"
    assert "no Node named 'edge-99'" in valid["message"]
    assert get(k, "deployment", "door-c-node", ns) is None
    since = valid["lastTransitionTime"]
    time.sleep(3)  # no retry storm: nothing changes while nothing changes
    assert cond(status_of(k, "door-c", ns), "Valid")["lastTransitionTime"] == since
    # the host appears: the Node event re-checks the camera at once
    k.apply({"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": "edge-99", "annotations": {"kwok.x-k8s.io/node": "fake"},
        "labels": {"kubernetes.io/hostname": "edge-99", "type": "kwok"}}})
    try:
        wait_until(lambda: cond(status_of(k, "door-c", ns), "Valid").get("status") == "True",
                   30, what="door-c valid once edge-99 exists")
        wait_until(lambda: get(k, "deployment", "door-c-node", ns), 30, what="door-c Deployment")
    finally:
        k.kubectl("delete", "node", "edge-99", "--wait=false", check=False)
        k.kubectl("delete", "cam", "door-a", "door-b", "door-c", "-n", ns, "--timeout=60s")


def test_refused_specs_say_why_and_get_nothing(k8s_cluster, ns, operator):
    k = k8s_cluster
    k.apply([camera("rogue", ns, image="docker.io/attacker/miner:latest"),
             camera("peek", ns, source="/etc/kubernetes")])
    refused = [("rogue", "ImageNotAllowed", "'docker.io/attacker/miner:latest' is not allowed"),
               ("peek", "SourceNotAllowed", "is not under /var/lib/facegrid/media/")]
    for name, reason, says in refused:
        st = wait_until(lambda n=name: (s := status_of(k, n, ns)).get("phase") == "Invalid" and s,
                        30, what=f"{name} Invalid")
        valid = cond(st, "Valid")
        assert valid["status"] == "False" and valid["reason"] == reason, st
        assert says in valid["message"]
        # no token is minted and nothing runs for a refused spec
        assert get(k, "secret", f"{name}-token", ns) is None
        assert get(k, "deployment", f"{name}-node", ns) is None
    # fixed spec: accepted at once
    k.kubectl("patch", "cam", "rogue", "-n", ns, "--type=json", "-p",
              json.dumps([{"op": "remove", "path": "/spec/image"}]))
    wait_until(lambda: running_pod(k, "rogue", ns), 60, what="rogue runs once fixed")
    k.kubectl("delete", "cam", "rogue", "peek", "-n", ns, "--timeout=60s")


def test_restarted_operator_creates_nothing_twice(k8s_cluster, ns, operator_kubeconfig, server):
    k = k8s_cluster
    settings = op_settings(ns, operator_kubeconfig, server)
    with running_operator(settings):
        k.apply(camera("hall", ns))
        wait_until(lambda: status_of(k, "hall", ns).get("phase") == "Running", 60,
                   what="hall Running")
    secret = get(k, "secret", "hall-token", ns)
    dep = get(k, "deployment", "hall-node", ns)
    # changed while no operator runs
    k.kubectl("patch", "cam", "hall", "-n", ns, "--type=merge",
              "-p", json.dumps({"spec": {"camera": {"fps": 5}}}))
    with running_operator(settings):
        wait_until(lambda: (d := get(k, "deployment", "hall-node", ns))["metadata"][
            "generation"] > dep["metadata"]["generation"] and d, 30, what="resumed update")
        wait_until(lambda: status_of(k, "hall", ns).get("observedGeneration") == 2, 30,
                   what="observedGeneration 2")
        time.sleep(2)
    sel = "facegrid.io/camera=hall"
    assert len(k.kubectl_json("get", "deployments", "-n", ns, "-l", sel)["items"]) == 1
    assert len(k.kubectl_json("get", "secrets", "-n", ns, "-l", sel)["items"]) == 1
    after = get(k, "deployment", "hall-node", ns)
    assert after["metadata"]["uid"] == dep["metadata"]["uid"]
    s2 = get(k, "secret", "hall-token", ns)
    assert s2["metadata"]["uid"] == secret["metadata"]["uid"]
    assert s2["data"] == secret["data"]  # the token was kept, not re-issued
    env = {e["name"]: e.get("value") for e in
           after["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FACEGRID_MAX_FPS"] == "5"
    with running_operator(settings):
        k.kubectl("delete", "cam", "hall", "-n", ns, "--timeout=60s")


def test_token_rotation_keeps_the_old_token_valid(k8s_cluster, ns, operator, server):
    k = k8s_cluster
    k.apply(camera("gate", ns, token={"ttl": "20s", "rotateAtPercent": 30}))
    first = wait_until(lambda: secret_token(k, "gate", ns), 30, what="first token")
    assert register(server, first, "gate") == 200
    second = wait_until(lambda: (t := secret_token(k, "gate", ns)) != first and t, 30,
                        what="rotated token")
    ann = get(k, "secret", "gate-token", ns)["metadata"]["annotations"]
    c1, c2 = tokens.unverified_claims(first), tokens.unverified_claims(second)
    assert ann[builders.ANN_PREV_JTI] == c1["jti"] and ann[builders.ANN_JTI] == c2["jti"]
    assert c2["iat"] >= c1["iat"] + 6
    # both tokens are accepted by the server until their own expiry
    assert heartbeat(server, first, "gate") == 200
    assert heartbeat(server, second, "gate") == 200
    pod = running_pod(k, "gate", ns)
    assert pod is not None  # rotation does not touch the pod (the node re-reads the file)
    st = status_of(k, "gate", ns)
    assert cond(st, "TokenReady")["status"] == "True"
    k.kubectl("delete", "cam", "gate", "-n", ns, "--timeout=60s")
    assert heartbeat(server, first, "gate") in (401, 403)
    assert heartbeat(server, second, "gate") in (401, 403)


def test_pause_and_an_unreachable_server(k8s_cluster, ns, operator_kubeconfig, server):
    k = k8s_cluster
    dead = f"http://127.0.0.1:{free_port()}"
    with running_operator(op_settings(ns, operator_kubeconfig, dead)):
        k.apply(camera("yard", ns))
        st = wait_until(lambda: (s := status_of(k, "yard", ns)).get("phase") == "Running"
                        and cond(s, "Heartbeating").get("reason") == "ServerUnreachable" and s,
                        60, what="Running with Heartbeating Unknown")
        assert cond(st, "Heartbeating")["status"] == "Unknown"
        k.kubectl("patch", "cam", "yard", "-n", ns, "--type=merge",
                  "-p", '{"spec": {"paused": true}}')
        wait_until(lambda: status_of(k, "yard", ns).get("phase") == "Paused"
                   and not pods_of(k, "yard", ns), 60, what="paused, no pod")
        assert get(k, "deployment", "yard-node", ns)["spec"]["replicas"] == 0
        # delete while the server is down: revocation fails closed, the object stays ...
        k.kubectl("delete", "cam", "yard", "-n", ns, "--wait=false")
        time.sleep(3)
        assert (get(k, "cameranode", "yard", ns) or {}).get("metadata", {}).get(
            "deletionTimestamp")
    # ... until an operator that reaches the server has revoked its tokens
    with running_operator(op_settings(ns, operator_kubeconfig, server)):
        wait_until(lambda: get(k, "cameranode", "yard", ns) is None, 60,
                   what="yard gone once its tokens are revoked")


class SlowStatusProxy:
    """Forwards every request to the real server, but holds each read of a node's status
    for ``delay`` seconds first: the operator's status timer is then inside a call most
    of the time."""

    def __init__(self, upstream: str, delay: float) -> None:
        self.upstream, self.delay = upstream, delay
        self.holding: dict[str, int] = {}
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                held = self.command == "GET" and self.path.startswith(contract.node_path(""))
                if held:
                    with proxy._lock:
                        proxy.holding[self.path] = proxy.holding.get(self.path, 0) + 1
                    time.sleep(proxy.delay)
                try:
                    r = httpx.request(self.command, proxy.upstream + self.path, content=body,
                                      headers={k: v for k, v in self.headers.items()
                                               if k.lower() not in ("host", "connection")})
                finally:
                    if held:
                        with proxy._lock:
                            proxy.holding[self.path] -= 1
                self.send_response(r.status_code)
                for k in ("Content-Type",):
                    if k in r.headers:
                        self.send_header(k, r.headers[k])
                self.send_header("Content-Length", str(len(r.content)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

            def log_message(self, *args) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def in_flight(self, node_id: str) -> bool:
        with self._lock:
            return self.holding.get(contract.node_path(node_id), 0) > 0

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def test_delete_while_a_timer_is_inside_a_call_lets_the_object_go_at_once(
        k8s_cluster, ns, operator_kubeconfig, server):
    """The finalizer flake: a CameraNode deleted while its status timer waited for the
    server kept kopf's finalizer for 60 s after its delete handler had finished (kopf
    looked at the stopping timer again only after ``cancellation_polling``)."""
    k = k8s_cluster
    proxy = SlowStatusProxy(server, delay=3)
    try:
        with running_operator(op_settings(ns, operator_kubeconfig, proxy.url,
                                          http_timeout_s=6)):
            k.apply(camera("porch", ns))
            wait_until(lambda: status_of(k, "porch", ns).get("phase") == "Running", 60,
                       what="porch Running")
            wait_until(lambda: proxy.in_flight("porch"), 15, interval=0.05,
                       what="the status timer inside a server call")
            t0 = time.monotonic()
            k.kubectl("delete", "cam", "porch", "-n", ns, "--timeout=30s")
            took = time.monotonic() - t0
    finally:
        proxy.close()
    # the held call ends within 3 s; then the finalizer goes within a second or two
    assert took < 10, f"deletion took {took:.1f} s"


def test_each_camera_its_own_redis_user_removed_with_it(k8s_cluster, ns, operator_kubeconfig,
                                                        server, redis_server):
    """With FACEGRID_REDIS_ADMIN_URL (the chart sets it): a Redis ACL user per CameraNode
    (facegrid.acl's node rules) on a real redis-server, its password in the CameraNode's
    own Secret, made again when Redis lost it, deleted — fail closed — with the camera."""
    import secrets

    import redis

    from facegrid import acl, keys

    k = k8s_cluster
    admin = redis_server.client()
    op_pw = secrets.token_hex(12)

    def operator_user() -> None:
        admin.execute_command("ACL", "SETUSER",
                              *acl.setuser_args("facegrid-operator", op_pw, "operator"))

    operator_user()
    settings = op_settings(ns, operator_kubeconfig, server, node_redis_url=redis_server.url,
                           redis_admin_url=acl.url_with_user(redis_server.url,
                                                             "facegrid-operator", op_pw))
    user = acl.node_user("porch")
    with running_operator(settings):
        k.apply(camera("porch", ns))
        secret = wait_until(lambda: get(k, "secret", "porch-redis", ns), 30,
                            what="the camera's Redis Secret")
        (ref,) = secret["metadata"]["ownerReferences"]
        assert ref["kind"] == "CameraNode" and ref["name"] == "porch"
        url = builders.secret_value(secret, "redis-url")
        assert url.startswith(f"redis://{user}:")
        dep = wait_until(lambda: get(k, "deployment", "porch-node", ns), 30, what="Deployment")
        env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["FACEGRID_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "porch-redis", "key": "redis-url"}
        node = redis.Redis.from_url(url)
        node.xadd(keys.EVENTS_STREAM, {"v": "2"})
        with pytest.raises(redis.exceptions.NoPermissionError):
            node.xrange(keys.EVENTS_STREAM)
        # Redis lost its users (a restart): the token timer makes the camera's again
        admin.execute_command("ACL", "DELUSER", user)
        wait_until(lambda: admin.acl_getuser(user), 20, what="the node user made again")
        assert redis.Redis.from_url(url).ping()
        # delete while the operator cannot reach Redis as itself: the camera stays ...
        admin.execute_command("ACL", "DELUSER", "facegrid-operator")
        k.kubectl("delete", "cam", "porch", "-n", ns, "--wait=false")
        time.sleep(3)
        cam = get(k, "cameranode", "porch", ns)
        assert cam and cam["metadata"].get("deletionTimestamp") and admin.acl_getuser(user)
        # ... until it can: then the user goes (its connection too) and so does the camera
        operator_user()
        wait_until(lambda: get(k, "cameranode", "porch", ns) is None, 60,
                   what="porch gone once its Redis user is deleted")
    assert admin.acl_getuser(user) is None
    with pytest.raises(redis.ConnectionError):
        node.execute_command("PING")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(url).ping()
    wait_until(lambda: get(k, "secret", "porch-redis", ns) is None, 60,
               what="the Redis Secret collected")
