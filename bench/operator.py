"""How fast the operator turns CameraNodes into running node pods on the test control plane.

    .venv/bin/python bench/operator.py [--single N] [--batch M]

Uses the control plane of scripts/k8s-test-cluster (a running one when
FACEGRID_K8S_DIR is set, else it starts one and stops it afterwards); kwok
plays the kubelets, so "Running" is the Pod phase kwok sets once the real
scheduler has bound the pod.  The operator runs in this process (its own run
function, in a thread) with the cluster admin's credentials and no API server,
so the Heartbeating condition stays Unknown.  Prints, for one CameraNode applied at a
time (target < 3 s) and for M applied at once (target: 50 in < 5 s): seconds
from `kubectl apply` to the Pod Running and to the CameraNode status phase
Running, and the API requests the operator sent per camera for the batch (its
own client's, by verb and resource, and kopf's patches).

    .venv/bin/python bench/operator.py --real N

A cluster of its own with a real Node (``scripts/k8s-test-cluster up --kubelet``:
containerd + kubelet), the node image built from node_image/Dockerfile
(scripts/container-images) imported into it, a real ``facegrid server`` and
redis-server on this machine's address; N CameraNodes one at a time whose camera
is the demo clip on the host.  Prints seconds from `kubectl apply` to the node
pod Ready on the real Node (target < 15 s, image start included).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "k8s-test-cluster"


@contextlib.contextmanager
def operator_running(run, settings):
    """The real operator (``run``) in a thread, started and ready, stopped on exit."""
    stop, ready = threading.Event(), threading.Event()
    op = threading.Thread(target=run, args=(settings,),
                          kwargs={"stop_flag": stop, "ready_flag": ready}, daemon=True)
    op.start()
    try:
        if not ready.wait(60):
            raise SystemExit("the operator did not start within 60 s")
        yield
    finally:
        stop.set()
        op.join(30)


def sh(*args: str, env: dict, input: str | None = None) -> str:
    p = subprocess.run(args, env=env, input=input, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {p.stderr[-2000:]}")
    return p.stdout


def camera(name: str, ns: str, host: str) -> dict:
    return {"apiVersion": "facegrid.io/v1alpha1", "kind": "CameraNode",
            "metadata": {"name": name, "namespace": ns},
            # a stream source: a local device would be one pod per device and host
            "spec": {"host": {"nodeName": host}, "camera": {"source": f"rtsp://cam.lan/{name}"}}}


def wait_all(kube, ns: str, names: list[str], t0: float, timeout: float = 300) -> tuple:
    """Seconds from t0 until each camera's Deployment exists, its pod is Running and its
    status phase is Running."""
    from facegrid_operator.kube import cameranode_path, deployments_path, pods_path

    def items(path: str) -> list[dict]:
        # the client's HTTP session directly: these polls are not the operator's requests
        r = kube._http.get(path, params={"labelSelector": "app.kubernetes.io/name=facegrid-node"}
                           if not path.endswith("cameranodes") else None)
        r.raise_for_status()
        return r.json().get("items") or []

    dep_at: dict[str, float] = {}
    pod_at: dict[str, float] = {}
    phase_at: dict[str, float] = {}
    want = set(names)
    while (len(pod_at) < len(want) or len(phase_at) < len(want)) and \
            time.monotonic() - t0 < timeout:
        now = time.monotonic() - t0
        for p in items(pods_path(ns)):
            cam = p["metadata"]["labels"].get("facegrid.io/camera")
            if cam in want and cam not in pod_at and p["status"].get("phase") == "Running":
                pod_at[cam] = now
        for d in items(deployments_path(ns)):
            cam = d["metadata"]["labels"].get("facegrid.io/camera")
            if cam in want and cam not in dep_at:
                dep_at[cam] = now
        for c in items(cameranode_path(ns)):
            n = c["metadata"]["name"]
            if n in want and n not in phase_at and (c.get("status") or {}).get(
                    "phase") == "Running":
                phase_at[n] = now
        time.sleep(0.1)
    if len(pod_at) < len(want) or len(phase_at) < len(want):
        raise SystemExit(f"timed out: {len(pod_at)} pods, {len(phase_at)} phases of {len(want)}")
    return dep_at, pod_at, phase_at


class KopfPatches(logging.Handler):
    """Counts kopf's own PATCH requests (it logs each at DEBUG before sending it)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith(("Merge-patching the ", "JSON-patching the ")):
            self.count += 1


def own_requests() -> collections.Counter:
    """The operator client's requests so far, by (verb, resource)."""
    from facegrid_operator import metrics

    out: collections.Counter = collections.Counter()
    for metric in metrics.KUBE_REQUESTS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                out[(sample.labels["verb"], sample.labels["resource"])] += int(sample.value)
    return out


def real_pod_ready(runs: int) -> None:
    """apply -> node pod Ready on a real Node (containerd + kubelet), ``runs`` times."""
    import secrets
    import shutil

    import httpx
    from facegrid_operator.operator import run
    from facegrid_operator.settings import OperatorSettings

    from facegrid import tokens
    from facegrid.up import free_port

    images = ROOT / "scripts" / "container-images"
    saved = subprocess.run([sys.executable, str(images), "save", "--json", "node"], check=True,
                           capture_output=True, text=True).stdout
    archive = json.loads(saved)["node"]
    tag = json.loads(subprocess.run([sys.executable, str(images), "build", "--json", "node"],
                                    check=True, capture_output=True, text=True).stdout)["node"]
    work = Path(tempfile.mkdtemp(prefix="fg-bench-real-"))
    rundir = work / "run"
    subprocess.run([sys.executable, str(SCRIPT), "up", "--kubelet", "--dir", str(rundir),
                    "--watch-pid", str(os.getpid())], check=True)
    procs: list[subprocess.Popen] = []
    try:
        subprocess.run([sys.executable, str(SCRIPT), "import", "--dir", str(rundir), archive],
                       check=True)
        info = json.loads(subprocess.run([sys.executable, str(SCRIPT), "env", "--dir",
                                          str(rundir), "--json"], check=True,
                                         capture_output=True, text=True).stdout)
        node_ip = json.loads((rundir / "state.json").read_text())["real_node"]["node_ip"]
        kubeconfig = rundir / "kubeconfig"
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        kubectl = str(Path(info["FACEGRID_K8S_BIN"]) / "kubectl")
        ns = "bench-real"
        sh(kubectl, "apply", "-f", str(ROOT / "crds" / "cameranodes.facegrid.io.yaml"), env=env)
        sh(kubectl, "wait", "--for=condition=Established", "crd/cameranodes.facegrid.io",
           env=env)
        sh(kubectl, "create", "namespace", ns, env=env)
        # the signing key the operator will use, and the server trusts
        priv, pub = tokens.write_keypair(work / "keys")
        sh(kubectl, "create", "secret", "generic", "facegrid-signing-key", "-n", ns,
           f"--from-file={tokens.PRIVATE_KEY_FILE}={priv}", env=env)
        media = work / "media"
        media.mkdir()
        shutil.copyfile(ROOT / "examples" / "clip.mp4", media / "clip.mp4")
        (media / "clip.mp4").chmod(0o644)
        rport, password = free_port(), secrets.token_urlsafe(16)
        procs.append(subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(rport), "--bind",
             f"127.0.0.1 {node_ip}", "--requirepass", password, "--save", "",
             "--dir", str(work)], stdout=subprocess.DEVNULL))
        port, admin = free_port(), secrets.token_urlsafe(24)
        server = f"http://{node_ip}:{port}"
        procs.append(subprocess.Popen(
            [str(Path(sys.executable).parent / "facegrid"), "server", "--host", node_ip,
             "--port", str(port)],
            env={**os.environ, "FACEGRID_REDIS_URL": f"redis://:{password}@127.0.0.1:{rport}/0",
                 "FACEGRID_DATABASE_URL": f"sqlite:///{work / 'facegrid.db'}",
                 "FACEGRID_PUBLIC_KEY_FILE": str(pub), "FACEGRID_ADMIN_TOKEN": admin},
            stdout=(work / "server.log").open("w"), stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(server + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"server did not start: {(work / 'server.log').read_text()}")
            time.sleep(0.3)
        settings = OperatorSettings(
            kubeconfig=kubeconfig, namespace=ns, watch_namespaces=[ns], server_url=server,
            admin_token=admin, node_redis_url=f"redis://:{password}@{node_ip}:{rport}/0",
            node_image=tag, node_image_pull_policy="Never", file_source_prefix=f"{media}/",
            liveness_port=0, metrics_port=0, status_interval_s=5)
        with operator_running(run, settings):
            times = []
            for i in range(runs):
                name = f"real-{i}"
                t0 = time.monotonic()
                sh(kubectl, "apply", "-f", "-", env=env, input=json.dumps(
                    {"apiVersion": "facegrid.io/v1alpha1", "kind": "CameraNode",
                     "metadata": {"name": name, "namespace": ns},
                     "spec": {"host": {"nodeName": "real-01"},
                              "camera": {"source": str(media / "clip.mp4")}}}))
                while True:
                    pods = json.loads(sh(kubectl, "get", "pods", "-n", ns, "-l",
                                         f"facegrid.io/camera={name}", "-o", "json", env=env))
                    if any(c["type"] == "Ready" and c["status"] == "True"
                           for p in pods["items"] for c in p["status"].get("conditions") or []):
                        break
                    if time.monotonic() - t0 > 180:
                        raise SystemExit(f"{name}: no Ready pod after 180 s")
                    time.sleep(0.2)
                times.append(time.monotonic() - t0)
                sh(kubectl, "delete", "cameranode", name, "-n", ns, "--timeout=60s", env=env)
        print(f"real Node (containerd + kubelet, node image, file camera), {runs} runs: "
              f"apply -> node pod Ready median {statistics.median(times):.1f} s, "
              f"max {max(times):.1f} s (target < 15 s)")
    finally:
        for p in procs:
            p.terminate()
            p.wait(15)
        subprocess.run([sys.executable, str(SCRIPT), "down", "--dir", str(rundir)])
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--single", type=int, default=5, help="one-at-a-time repetitions")
    ap.add_argument("--batch", type=int, default=50, help="CameraNodes applied at once")
    ap.add_argument("--real", type=int, default=0, metavar="N",
                    help="only: N CameraNodes one at a time on a real Node (containerd + "
                         "kubelet): apply -> node pod Ready")
    args = ap.parse_args()
    if args.real:
        real_pod_ready(args.real)
        return 0

    from facegrid_operator.kube import ClusterAccess, Kube
    from facegrid_operator.operator import run
    from facegrid_operator.settings import OperatorSettings

    reuse = os.environ.get("FACEGRID_K8S_DIR")
    rundir = Path(reuse) if reuse else Path(tempfile.mkdtemp(prefix="fg-bench-")) / "run"
    if not reuse:
        subprocess.run([sys.executable, str(SCRIPT), "up", "--dir", str(rundir),
                        "--watch-pid", str(os.getpid())], check=True)
    try:
        info = json.loads(subprocess.run([sys.executable, str(SCRIPT), "env", "--dir",
                                          str(rundir), "--json"], check=True,
                                         capture_output=True, text=True).stdout)
        kubeconfig = rundir / "kubeconfig"
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        kubectl = str(Path(info["FACEGRID_K8S_BIN"]) / "kubectl")
        ns = f"bench-{uuid.uuid4().hex[:6]}"
        sh(kubectl, "apply", "-f", str(ROOT / "crds" / "cameranodes.facegrid.io.yaml"), env=env)
        sh(kubectl, "wait", "--for=condition=Established", "crd/cameranodes.facegrid.io",
           env=env)
        sh(kubectl, "create", "namespace", ns, env=env)
        settings = OperatorSettings(kubeconfig=kubeconfig, namespace=ns, watch_namespaces=[ns],
                                    server_url="http://127.0.0.1:9", liveness_port=0,
                                    metrics_port=0, node_image="registry.invalid/node:bench",
                                    status_interval_s=30, rotation_check_s=60,
                                    revoke_retries=0)
        kube = Kube(ClusterAccess.from_kubeconfig(kubeconfig))
        with operator_running(run, settings):
            time.sleep(1)
            pods, phases = [], []
            for i in range(args.single):
                name = f"single-{i}"
                t0 = time.monotonic()
                sh(kubectl, "apply", "-f", "-", env=env,
                   input=json.dumps(camera(name, ns, "edge-01" if i % 2 else "edge-02")))
                _, p, ph = wait_all(kube, ns, [name], t0)
                pods.append(p[name])
                phases.append(ph[name])
            patches = KopfPatches()
            kopf_log = logging.getLogger("kopf.objects")
            kopf_log.setLevel(logging.DEBUG)
            kopf_log.addHandler(patches)
            kopf_log.propagate = False
            before = own_requests()
            names = [f"batch-{i:03d}" for i in range(args.batch)]
            items = [camera(n, ns, "edge-01" if i % 2 else "edge-02")
                     for i, n in enumerate(names)]
            t0 = time.monotonic()
            sh(kubectl, "apply", "-f", "-", env=env,
               input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
            bd, bp, bph = wait_all(kube, ns, names, t0)
            time.sleep(1)  # the last status writes
            calls = own_requests() - before
            kopf_patches = patches.count
        # No server here, and revocation fails closed: release the finalizers by hand.
        for obj in sh(kubectl, "get", "cameranodes", "-n", ns, "-o", "name", env=env).split():
            sh(kubectl, "patch", obj, "-n", ns, "--type=merge", "-p",
               '{"metadata":{"finalizers":null}}', env=env)
        sh(kubectl, "delete", "namespace", ns, "--wait=false", env=env)
        print(f"one CameraNode at a time ({args.single} runs): apply -> Pod Running "
              f"median {statistics.median(pods):.2f} s, max {max(pods):.2f} s; "
              f"-> status Running median {statistics.median(phases):.2f} s, "
              f"max {max(phases):.2f} s")
        print(f"{args.batch} CameraNodes applied at once: last Deployment created after "
              f"{max(bd.values()):.2f} s (operator side); last Pod Running after "
              f"{max(bp.values()):.2f} s (median {statistics.median(bp.values()):.2f} s); "
              f"all statuses Running after {max(bph.values()):.2f} s "
              f"({args.batch / max(bph.values()):.1f} cameras/s)")
        per = args.batch
        print(f"API requests per camera in the batch: {sum(calls.values()) / per:.1f} by the "
              f"operator's client ("
              + ", ".join(f"{v}/{r} {n / per:.1f}" for (v, r), n in sorted(calls.items()))
              + f") + {kopf_patches / per:.1f} kopf patches")
    finally:
        if not reuse:
            subprocess.run([sys.executable, str(SCRIPT), "down", "--dir", str(rundir)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
