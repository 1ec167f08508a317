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
own client's, by verb and resource, and kopf's patches).  For the batch also where
the time goes: when each camera reached each stage (CameraNode created by kubectl,
finalizer by kopf, token Secret and Deployment by the operator, ReplicaSet by the
deployment controller, Pod by the replicaset controller, bound by the scheduler,
Running by kwok, status Running by the operator), from watches this process holds
(no polling), the CPU seconds of each component, and the load average.

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
from typing import ClassVar

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


class Timeline:
    """When each camera's objects appeared and changed, as this process saw them: one watch
    per resource in the namespace (own HTTP clients), the local arrival time of each event.

    Stages per camera: CameraNode created, finalizer added (kopf), token Secret created,
    Deployment created (operator), ReplicaSet created (deployment controller), Pod created
    (replicaset controller), Pod bound (scheduler), Pod Running (kwok), status Running
    (operator)."""

    STAGES = ("cameranode", "finalizer", "secret", "deployment", "replicaset", "pod", "bound",
              "running", "status")
    WHO: ClassVar[dict[str, str]] = {
        "cameranode": "kubectl apply", "finalizer": "kopf", "secret": "operator",
        "deployment": "operator", "replicaset": "deployment controller",
        "pod": "replicaset controller", "bound": "scheduler", "running": "kwok",
        "status": "operator"}

    def __init__(self, access, ns: str, finalizer: str) -> None:
        from facegrid_operator.kube import (
            cameranode_path,
            deployments_path,
            pods_path,
            secrets_path,
        )

        self.access, self.finalizer = access, finalizer
        #: camera -> stage -> time.monotonic() when this process first saw it
        self.at: dict[str, dict[str, float]] = collections.defaultdict(dict)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._threads: list[threading.Thread] = []
        self._clients: list = []
        self._rvs: list[str] = []
        self._listed = threading.Event()
        paths = {"cameranodes": cameranode_path(ns), "secrets": secrets_path(ns),
                 "deployments": deployments_path(ns),
                 "replicasets": f"/apis/apps/v1/namespaces/{ns}/replicasets",
                 "pods": pods_path(ns)}
        for kind, path in paths.items():
            self._threads.append(threading.Thread(target=self._watch, args=(kind, path),
                                                  daemon=True))

    def start(self) -> None:
        """Start the watches; returns once each has listed (events from then on count)."""
        for t in self._threads:
            t.start()
        if not self._listed.wait(30) or len(self._rvs) < len(self._threads):
            raise SystemExit("the timeline watches did not start")

    def stop(self) -> None:
        self._stop.set()
        for c in list(self._clients):
            with contextlib.suppress(Exception):
                c.close()

    def _mark(self, cam: str | None, stage: str) -> None:
        if not cam:
            return
        now = time.monotonic()
        with self._changed:
            if stage not in self.at[cam]:
                self.at[cam][stage] = now
                self._changed.notify_all()

    def wait(self, names: list[str], stages: tuple[str, ...] = ("running", "status"),
             timeout: float = 300) -> None:
        """Until every camera reached every one of ``stages``."""
        def done() -> bool:
            return all(st in self.at[n] for n in names for st in stages)

        with self._changed:
            if not self._changed.wait_for(done, timeout):
                got = {st: sum(st in self.at[n] for n in names) for st in stages}
                raise SystemExit(f"timed out after {timeout:.0f} s: {got} of {len(names)}")

    def seconds(self, names: list[str], stage: str, t0: float) -> dict[str, float]:
        """Camera -> seconds from ``t0`` until it reached ``stage``."""
        with self._lock:
            return {n: self.at[n][stage] - t0 for n in names if stage in self.at[n]}

    def _seen(self, kind: str, obj: dict) -> None:
        md = obj.get("metadata") or {}
        labels = md.get("labels") or {}
        if kind == "cameranodes":
            cam = md.get("name")
            self._mark(cam, "cameranode")
            if self.finalizer in (md.get("finalizers") or []):
                self._mark(cam, "finalizer")
            if (obj.get("status") or {}).get("phase") == "Running":
                self._mark(cam, "status")
            return
        cam = labels.get("facegrid.io/camera")
        if kind == "secrets":
            if md.get("name", "").endswith("-token"):
                self._mark(cam, "secret")
        elif kind in ("deployments", "replicasets"):
            self._mark(cam, kind[:-1])
        elif kind == "pods":
            self._mark(cam, "pod")
            if (obj.get("spec") or {}).get("nodeName"):
                self._mark(cam, "bound")
            if (obj.get("status") or {}).get("phase") == "Running":
                self._mark(cam, "running")

    def _watch(self, kind: str, path: str) -> None:
        from facegrid_operator.kube import Kube, KubeError

        kube = Kube(self.access, timeout=None)
        self._clients.append(kube)
        for _ in range(100):  # a new CRD's storage answers 429 for a moment
            try:
                rv = kube.get(path)["metadata"]["resourceVersion"]
                break
            except KubeError as e:
                if e.status != 429:
                    raise
                time.sleep(0.2)
        with self._lock:
            self._rvs.append(rv)
            if len(self._rvs) == len(self._threads):
                self._listed.set()
        while not self._stop.is_set():
            try:
                with kube._http.stream("GET", path, params={
                        "watch": "1", "resourceVersion": rv,
                        "timeoutSeconds": "300"}) as r:
                    for line in r.iter_lines():
                        if not line:
                            continue
                        ev = json.loads(line)
                        obj = ev.get("object") or {}
                        if ev.get("type") == "ERROR":
                            return
                        rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                        if ev.get("type") in ("ADDED", "MODIFIED"):
                            self._seen(kind, obj)
            except Exception:  # closed at stop, or a dropped watch: resume
                if self._stop.is_set():
                    return
                time.sleep(0.1)

    def report(self, names: list[str], t0: float) -> list[str]:
        """One line per stage: when the cameras reached it (median, last, seconds from
        ``t0``) and how long the step from the previous stage took (median, max)."""
        lines = []
        prev = None
        for stage in self.STAGES:
            at = [self.at[n][stage] - t0 for n in names if stage in self.at[n]]
            if not at:
                lines.append(f"  {stage:<11} ({self.WHO[stage]}): not seen")
                continue
            steps = [self.at[n][stage] - self.at[n][prev] for n in names
                     if stage in self.at[n] and prev in self.at[n]] if prev else []
            step = (f"; step from {prev} median {statistics.median(steps):.2f} s, "
                    f"max {max(steps):.2f} s" if steps else "")
            lines.append(f"  {stage:<11} ({self.WHO[stage]}): {len(at)} cameras, "
                         f"median {statistics.median(at):.2f} s, last {max(at):.2f} s{step}")
            prev = stage
        return lines


def cpu_seconds(rundir: Path) -> dict[str, float]:
    """CPU seconds used so far by this process (the operator and the bench's watches), its
    children (kubectl) and each component of the cluster (from /proc; Linux)."""
    own = os.times()
    out = {"operator+bench": own.user + own.system,
           "kubectl": own.children_user + own.children_system}
    tick = os.sysconf("SC_CLK_TCK")
    with contextlib.suppress(OSError, ValueError, KeyError):
        comps = json.loads((rundir / "state.json").read_text())["components"]
        for name, c in comps.items():
            with contextlib.suppress(OSError, ValueError):
                fields = Path(f"/proc/{c['pid']}/stat").read_text().rsplit(")", 1)[1].split()
                out[name] = (int(fields[11]) + int(fields[12])) / tick
    return out


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

    from facegrid_operator.kube import ClusterAccess
    from facegrid_operator.operator import kopf_settings, run
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
        access = ClusterAccess.from_kubeconfig(kubeconfig)
        # Watches, not polls: what the bench sees costs the API server (and this process,
        # which runs the operator too) next to nothing.
        timeline = Timeline(access, ns, kopf_settings(settings).persistence.finalizer)
        timeline.start()
        with operator_running(run, settings):
            time.sleep(1)
            pods, phases = [], []
            for i in range(args.single):
                name = f"single-{i}"
                t0 = time.monotonic()
                sh(kubectl, "apply", "-f", "-", env=env,
                   input=json.dumps(camera(name, ns, "edge-01" if i % 2 else "edge-02")))
                timeline.wait([name])
                pods.append(timeline.seconds([name], "running", t0)[name])
                phases.append(timeline.seconds([name], "status", t0)[name])
            patches = KopfPatches()
            kopf_log = logging.getLogger("kopf.objects")
            kopf_log.setLevel(logging.DEBUG)
            kopf_log.addHandler(patches)
            kopf_log.propagate = False
            before = own_requests()
            names = [f"batch-{i:03d}" for i in range(args.batch)]
            items = [camera(n, ns, "edge-01" if i % 2 else "edge-02")
                     for i, n in enumerate(names)]
            load0 = os.getloadavg()[0]
            cpu0 = cpu_seconds(rundir)
            t0 = time.monotonic()
            sh(kubectl, "apply", "-f", "-", env=env,
               input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
            timeline.wait(names)
            wall = time.monotonic() - t0
            cpu = {k: v - cpu0.get(k, 0.0) for k, v in cpu_seconds(rundir).items()}
            load1 = os.getloadavg()[0]
            time.sleep(1)  # the last status writes
            calls = own_requests() - before
            kopf_patches = patches.count
        timeline.stop()
        bd = timeline.seconds(names, "deployment", t0)
        bc = timeline.seconds(names, "cameranode", t0)
        lag = [bd[n] - bc[n] for n in names if n in bd and n in bc]
        bp = timeline.seconds(names, "running", t0)
        bph = timeline.seconds(names, "status", t0)
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
              f"({args.batch / max(bph.values()):.1f} cameras/s); load average "
              f"{load0:.1f} before, {load1:.1f} after")
        print(f"operator side: CameraNode created -> its Deployment created median "
              f"{statistics.median(lag):.2f} s, max {max(lag):.2f} s per camera; `kubectl apply` "
              f"itself created the last CameraNode after {max(bc.values()):.2f} s")
        print(f"where the time goes for the {args.batch} (seconds from the apply, as events "
              "arrived at this process):")
        print("\n".join(timeline.report(names, t0)))
        cores = os.cpu_count() or 1
        print(f"CPU seconds in those {wall:.1f} s ({cores} cores: {cores * wall:.0f} s at most): "
              + ", ".join(f"{k} {v:.1f}" for k, v in
                                       sorted(cpu.items(), key=lambda kv: -kv[1])))
        per = args.batch
        print(f"API requests per camera in the batch: {sum(calls.values()) / per:.1f} by the "
              f"operator's client ("
              + ", ".join(f"{v}/{r} {n / per:.1f}" for (v, r), n in sorted(calls.items()))
              + f") + {kopf_patches / per:.1f} kopf patches")
    finally:
        if not reuse:
            subprocess.run([sys.executable, str(SCRIPT), "down", "--dir", str(rundir)])
            with contextlib.suppress(OSError):
                rundir.parent.rmdir()  # the temporary dir made for it
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
