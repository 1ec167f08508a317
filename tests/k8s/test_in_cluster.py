"""A real Node in the test cluster: containerd + a kubelet built from the same
Kubernetes module as the apiserver (``scripts/k8s-test-cluster up --kubelet``).

It registers as ``system:node:real-01`` beside the kwok Nodes, runs the server
image (built from services/Dockerfile, imported into containerd, never pulled) as
a locked-down pod that becomes Ready through its own readiness probe on its pod
IP; ``kubectl logs`` and ``kubectl exec`` work.  Then a CameraNode whose camera is
a video file on the host: the operator (``facegrid operator``, a process here)
mints the token and runs the node image as a real pod on real-01; the pod's events
reach the worker (server, worker and Redis run on this machine, on its address:
the pod reaches them through its bridge) and the sightings are read back; deleting
the CameraNode removes the pod and the token is refused.  When the cluster stops,
every change the kubelet and CNI made to the machine (sysctls, iptables, links,
network namespaces, mounts, cgroups) is put back.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from facegrid_operator import builders
from fixtures.images import image_archives
from fixtures.k8s import ROOT, import_images, real_node_cluster, wait_until
from fixtures.servers import free_port, missing
from fixtures.stack import CLIP, ENROLLED, running_stack

from facegrid import contract, tokens

pytestmark = [pytest.mark.k8s, pytest.mark.images, pytest.mark.e2e, pytest.mark.models]
SELECTOR = f"{builders.LABEL_CAMERA}=door"
sys.path.insert(0, str(ROOT / "scripts"))
import k8s_real_node  # noqa: E402  (the same snapshot the cluster script takes)


def server_pod(image: str) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "server", "namespace": "default"},
        "spec": {
            "nodeSelector": {"facegrid.io/real-node": "true"},
            "tolerations": [{"key": "node-role.kubernetes.io/edge", "operator": "Exists",
                             "effect": "NoSchedule"}],
            "securityContext": {"runAsNonRoot": True,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "server", "image": image, "imagePullPolicy": "Never",
                "args": ["server"],
                "env": [{"name": "FACEGRID_ADMIN_TOKEN", "value": "real-node-test-admin"},
                        {"name": "FACEGRID_PUBLIC_KEY_FILE", "value": "/etc/facegrid/signing.pub"},
                        # No Redis here: /healthz (liveness) does not need it.
                        {"name": "FACEGRID_REDIS_URL", "value": "redis://127.0.0.1:1/0"}],
                "ports": [{"containerPort": 8000, "name": "http"}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                                   "periodSeconds": 1},
                "securityContext": {"readOnlyRootFilesystem": True,
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                                 {"name": "pub", "mountPath": "/etc/facegrid"}],
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}},
                        {"name": "pub", "configMap": {"name": "signing-pub"}}],
        },
    }


@pytest.mark.skipif(os.environ.get("FACEGRID_REAL_NODE") == "0",
                    reason="FACEGRID_REAL_NODE=0: the real-Node test is switched off")
def test_real_node_runs_our_images_and_the_machine_is_put_back(facegrid_images, tmp_path,
                                                               test_weights):
    archives = image_archives(["server", "node"])
    before = k8s_real_node.machine_state()
    with real_node_cluster(tmp_path / "run") as k:
        nodes = {n["metadata"]["name"]: n for n in k.kubectl_json("get", "nodes")["items"]}
        assert {"edge-01", "edge-02", "control-01", "real-01"} <= set(nodes)
        real = nodes["real-01"]
        info = real["status"]["nodeInfo"]
        assert info["kubeletVersion"] == k.versions["KUBERNETES_VERSION"]
        assert info["containerRuntimeVersion"].startswith("containerd://")
        assert "node-role.kubernetes.io/edge" in real["metadata"]["labels"]
        ready = {c["type"]: c["status"] for c in real["status"]["conditions"]}
        assert ready["Ready"] == "True"
        # registered with its own identity: the Node authorizer lets system:node:real-01
        # read its own Node, and nobody else's
        who = ["--as=system:node:real-01", "--as-group=system:nodes"]
        assert k.kubectl("auth", "can-i", "get", "nodes/real-01", *who,
                         check=False).stdout.strip() == "yes"
        lease = wait_until(lambda: k.kubectl_json("get", "lease", "-n", "kube-node-lease",
                                                  "--field-selector=metadata.name=real-01")
                           ["items"], 60, what="the kubelet's Lease")
        assert lease[0]["spec"]["holderIdentity"] == "real-01"

        import_images(k, [archives["server"], archives["node"]])
        _, pub = tokens.write_keypair(tmp_path / "keys")
        k.kubectl("create", "configmap", "signing-pub", f"--from-file=signing.pub={pub}")
        k.apply(server_pod(facegrid_images["server"]))
        k.kubectl("wait", "--for=condition=Ready", "pod/server", "--timeout=120s", timeout=150)
        pod = k.kubectl_json("get", "pod", "server")
        assert pod["spec"]["nodeName"] == "real-01"
        assert pod["status"]["podIP"].startswith("10.89.0.")  # the Node's CNI bridge
        logs = k.kubectl("logs", "server").stdout
        assert "Uvicorn running on http://0.0.0.0:8000" in logs, logs
        who_am_i = k.kubectl("exec", "server", "--", "id").stdout
        assert who_am_i.startswith("uid=10001(facegrid) gid=10001(facegrid)"), who_am_i
        touch = k.kubectl("exec", "server", "--", "touch", "/opt/x", check=False)
        assert touch.returncode != 0 and "Read-only file system" in touch.stderr
        during = k8s_real_node.differences(before, k8s_real_node.machine_state())
        assert any("fgtest0" in d for d in during)  # the check can see the changes
        camera_on_the_real_node(k, facegrid_images["node"], tmp_path, test_weights)
    assert k8s_real_node.differences(before, k8s_real_node.machine_state()) == []


def start_operator(k, env: dict[str, str], log: Path) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "facegrid"
    return subprocess.Popen([str(exe), "operator"],
                            env={**os.environ, "FACEGRID_KUBECONFIG": str(k.kubeconfig),
                                 "FACEGRID_LIVENESS_PORT": "0", "FACEGRID_METRICS_PORT": "0",
                                 "FACEGRID_STATUS_INTERVAL_S": "2", **env},
                            stdout=log.open("a"), stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def camera_on_the_real_node(k, node_image: str, tmp_path: Path, weights: Path) -> None:
    ns = "cams"
    node_ip = k.state["real_node"]["node_ip"]
    k.kubectl("apply", "-f", str(ROOT / "crds" / "cameranodes.facegrid.io.yaml"))
    k.kubectl("wait", "--for=condition=Established", "--timeout=60s",
              "crd/cameranodes.facegrid.io")
    k.kubectl("create", "namespace", ns)
    media = tmp_path / "media"
    media.mkdir()
    shutil.copyfile(CLIP, media / "door.mp4")
    (media / "door.mp4").chmod(0o644)
    op_log = tmp_path / "operator.log"
    base = {"FACEGRID_NAMESPACE": ns, "FACEGRID_WATCH_NAMESPACES": ns}

    # 1. The operator makes the signing key; the server will trust it.
    op = start_operator(k, {**base, "FACEGRID_SERVER_URL": "http://127.0.0.1:9",
                            "FACEGRID_ADMIN_TOKEN": "x" * 32}, op_log)
    try:
        secret = wait_until(lambda: k.kubectl_json("get", "secret", "-n", ns,
                                                   "--field-selector=metadata.name="
                                                   "facegrid-signing-key")["items"], 60,
                            what="the operator's signing key")[0]
    finally:
        stop(op)
    state = tmp_path / "stack"
    (state / "keys").mkdir(parents=True)
    key = tokens.load_private_key(base64.b64decode(secret["data"][tokens.PRIVATE_KEY_FILE]))
    (state / "keys" / tokens.PRIVATE_KEY_FILE).write_bytes(tokens.private_pem(key))
    (state / "keys" / tokens.PUBLIC_KEY_FILE).write_bytes(tokens.public_pem(key))

    # 2. Redis on this machine's address (password set), the stack's server on it too.
    redis_bin = shutil.which("redis-server")
    if not redis_bin:
        missing("redis-server")
    rport, password = free_port(), secrets.token_urlsafe(16)
    redis = subprocess.Popen([redis_bin, "--port", str(rport), "--bind", f"127.0.0.1 {node_ip}",
                              "--requirepass", password, "--save", "", "--appendonly", "no",
                              "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: subprocess.run(["redis-cli", "-p", str(rport), "-a", password,
                                           "--no-auth-warning", "ping"], capture_output=True,
                                          text=True).stdout.strip() == "PONG", 30,
                   what="redis-server")
        with running_stack(state, weights, redis_url=f"redis://:{password}@127.0.0.1:{rport}/0",
                           host=node_ip) as stack:
            op = start_operator(k, {
                **base, "FACEGRID_SERVER_URL": stack.plan.server_url,
                "FACEGRID_ADMIN_TOKEN": stack.admin_token,
                "FACEGRID_NODE_REDIS_URL": f"redis://:{password}@{node_ip}:{rport}/0",
                "FACEGRID_NODE_IMAGE": node_image, "FACEGRID_NODE_IMAGE_PULL_POLICY": "Never",
                "FACEGRID_FILE_SOURCE_PREFIX": f"{media}/"}, op_log)
            try:
                run_camera(k, ns, stack, media / "door.mp4", op, op_log)
            finally:
                stop(op)
    finally:
        redis.terminate()
        redis.wait(15)


def run_camera(k, ns: str, stack, clip: Path, op: subprocess.Popen, op_log: Path) -> None:
    t0 = time.monotonic()
    k.apply({"apiVersion": "facegrid.io/v1alpha1", "kind": "CameraNode",
             "metadata": {"name": "door", "namespace": ns},
             "spec": {"host": {"nodeName": "real-01"}, "camera": {"source": str(clip)}}})

    def ready_pod():
        assert op.poll() is None, op_log.read_text()[-3000:]
        for p in k.kubectl_json("get", "pods", "-n", ns, "-l", SELECTOR)["items"]:
            conds = {c["type"]: c["status"] for c in p["status"].get("conditions") or []}
            if conds.get("Ready") == "True":
                return p
        return None

    try:
        pod = wait_until(ready_pod, 180, what="the camera's node pod Ready on real-01")
    except AssertionError:
        pods = k.kubectl("get", "pods", "-n", ns, "-o", "wide", check=False).stdout
        logs = k.kubectl("logs", "-n", ns, "-l", SELECTOR, "--tail=30", check=False)
        raise AssertionError(f"{pods}\n{logs.stdout}{logs.stderr}\n"
                             f"{op_log.read_text()[-3000:]}") from None
    ready_s = time.monotonic() - t0
    sys.stderr.write(f"\nCameraNode apply -> node pod Ready on the real Node: {ready_s:.1f} s\n")
    assert pod["spec"]["nodeName"] == "real-01"
    token = builders.secret_token(k.kubectl_json("get", "secret", "door-token", "-n", ns))

    # the pod's events reach the worker; the sightings come back through the server
    def recognised() -> set[str]:
        return {s["person_name"] for s in stack.sightings()
                if s.get("node_id") == "door" and s.get("person_name")}

    names = wait_until(recognised, 180, what="recognised sightings from the pod")
    assert names <= set(ENROLLED), names

    # delete: the pod goes, the token is refused
    k.kubectl("delete", "cam", "door", "-n", ns, "--wait=true", "--timeout=60s")
    wait_until(lambda: not k.kubectl_json("get", "pods", "-n", ns)["items"], 60,
               what="the node pod gone")
    body = contract.Registration(node_id="door", timezone="UTC", model="facenet-casia-webface",
                                 version="test").model_dump()
    r = httpx.post(stack.plan.server_url + contract.REGISTER_PATH, json=body,
                   headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code in (401, 403), r.text
