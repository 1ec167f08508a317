"""The chart against a real control plane (tests/fixtures/k8s.py): every object
accepted by the real API server, restricted Pod Security enforced, Pods
scheduled and Running (kwok), the operator — run locally with the chart's
ServiceAccount token, so the chart's RBAC is what is tested — turning a
CameraNode into a Running pod on its edge host, then upgrade (CRD included)
and uninstall."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from fixtures.chart import CHART
from fixtures.k8s import wait_until

from facegrid import acl

pytestmark = pytest.mark.k8s

RELEASE = "fg"
STORAGE_CLASS = "facegrid-test-local"
CRD = "cameranodes.facegrid.io"


@pytest.fixture
def ns(k8s_cluster):
    """A namespace that enforces the restricted Pod Security Standard."""
    name = f"h-{uuid.uuid4().hex[:8]}"
    k8s_cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted",
                                 "pod-security.kubernetes.io/enforce-version": "latest"}}})
    wait_until(lambda: k8s_cluster.kubectl("get", "serviceaccount", "default", "-n", name,
                                           check=False).returncode == 0,
               timeout=60, what=f"default ServiceAccount in {name}")
    yield name
    k8s_cluster.helm("uninstall", RELEASE, "-n", name, "--wait", check=False)
    k8s_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def local_volumes(k8s_cluster, ns: str, count: int) -> None:
    """A no-provisioner StorageClass and PVs for the Redis/PostgreSQL claims
    (the PV controller of kube-controller-manager binds them)."""
    k8s_cluster.apply({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                       "metadata": {"name": STORAGE_CLASS},
                       "provisioner": "kubernetes.io/no-provisioner",
                       "volumeBindingMode": "Immediate"})
    k8s_cluster.apply([{
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": f"{ns}-pv-{i}"},
        "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": STORAGE_CLASS,
                 "persistentVolumeReclaimPolicy": "Delete",
                 "hostPath": {"path": f"/tmp/{ns}-pv-{i}"}}} for i in range(count)])


def install_args(ns: str) -> list[str]:
    return ["-n", ns, "--wait", "--timeout", "240s",
            "--set", f"redis.persistence.storageClass={STORAGE_CLASS}",
            "--set", f"postgresql.persistence.storageClass={STORAGE_CLASS}",
            "--set", "image.pullPolicy=Never"]


def adopt_crd(k8s_cluster, ns: str) -> None:
    """Let this release take over a CameraNode CRD an earlier test applied with kubectl
    (the documented Helm adoption: its ownership label and annotations), as a site that
    applied crds/ by hand before installing the chart does."""
    if k8s_cluster.kubectl("get", "crd", CRD, check=False).returncode != 0:
        return
    k8s_cluster.kubectl("label", "--overwrite", "crd", CRD,
                        "app.kubernetes.io/managed-by=Helm")
    k8s_cluster.kubectl("annotate", "--overwrite", "crd", CRD,
                        f"meta.helm.sh/release-name={RELEASE}",
                        f"meta.helm.sh/release-namespace={ns}")


def release_objects(k8s_cluster, ns: str) -> list[dict]:
    out = k8s_cluster.helm("get", "manifest", RELEASE, "-n", ns).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def pods_running(k8s_cluster, ns: str, selector: str, expect: int) -> list[dict]:
    pods = k8s_cluster.kubectl_json("get", "pods", "-n", ns, "-l", selector)["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running"
               and not p["metadata"].get("deletionTimestamp")]
    return running if len(running) >= expect else []


def operator_kubeconfig(k8s_cluster, ns: str, path: Path) -> Path:
    """A kubeconfig holding a token of the chart's operator ServiceAccount."""
    tr = k8s_cluster.kubectl("create", "token", f"{RELEASE}-facegrid-operator", "-n", ns,
                             "--duration=1h").stdout.strip()
    ca = base64.b64encode(k8s_cluster.ca_file.read_bytes()).decode()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "op",
        "clusters": [{"name": "c", "cluster": {"server": k8s_cluster.server,
                                               "certificate-authority-data": ca}}],
        "users": [{"name": "op", "user": {"token": tr}}],
        "contexts": [{"name": "op", "context": {"cluster": "c", "user": "op",
                                                 "namespace": ns}}]}))
    return path


def start_operator(kubeconfig: Path, env_from_chart: dict[str, str], log: Path):
    env = {**os.environ, **env_from_chart,
           "FACEGRID_KUBECONFIG": str(kubeconfig), "KUBECONFIG": str(kubeconfig),
           "FACEGRID_METRICS_PORT": "0", "FACEGRID_LIVENESS_PORT": "0",
           # No API server runs under kwok: do not wait on revocations.
           "FACEGRID_REVOKE_RETRIES": "0", "FACEGRID_ADMIN_TOKEN": "x" * 32}
    env.pop("FACEGRID_ADMIN_TOKEN_FILE", None)
    exe = Path(sys.executable).parent / "facegrid"
    return subprocess.Popen([str(exe), "operator"], env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_alive(proc: subprocess.Popen, log: Path, pred, what: str, timeout: float = 90):
    """Poll ``pred`` like wait_until, but fail at once, with the operator's log,
    if the operator process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"facegrid operator exited {proc.returncode} while waiting for "
                        f"{what}:\n{log.read_text()[-6000:]}", pytrace=False)
        res = pred()
        if res:
            return res
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; operator log:\n"
                f"{log.read_text()[-6000:]}", pytrace=False)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def chart_env(obj: dict) -> dict[str, str]:
    """The operator's plain env values from its rendered Deployment."""
    c = obj["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in c["env"] if "value" in e}


def test_install_operator_camera_upgrade_uninstall(k8s_cluster, ns, tmp_path, redis_server):
    local_volumes(k8s_cluster, ns, 2)
    adopt_crd(k8s_cluster, ns)
    out = k8s_cluster.helm("install", RELEASE, str(CHART), *install_args(ns), timeout=300).stdout
    # NOTES.txt: how to reach the server, get the admin token, add a camera.
    assert f"port-forward svc/{RELEASE}-facegrid-server 8000:8000" in out
    assert f"get secret {RELEASE}-facegrid-admin" in out and "kind: CameraNode" in out
    served = "monitoring.coreos.com/v1" in k8s_cluster.kubectl("api-versions").stdout
    assert ("were not\nfound" in out) is not served  # the notes say when monitors are off

    # Every object of the release exists in the cluster (accepted by the API server).
    objs = release_objects(k8s_cluster, ns)
    kinds = {o["kind"] for o in objs}
    assert {"Deployment", "StatefulSet", "Service", "Secret", "ConfigMap", "NetworkPolicy",
            "ServiceAccount", "ClusterRole", "Role", "CustomResourceDefinition"} <= kinds
    for o in objs:
        args = ["get", o["kind"].lower() + "." + o["apiVersion"].split("/")[0]
                if "/" in o["apiVersion"] else o["kind"].lower(), o["metadata"]["name"]]
        if o["metadata"].get("namespace"):
            args += ["-n", o["metadata"]["namespace"]]
        assert k8s_cluster.kubectl(*args, check=False).returncode == 0, args

    k8s_cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD}", "--timeout=60s")
    # All Pods scheduled and Running; the PVCs bound.
    for comp, n in (("operator", 1), ("server", 1), ("worker", 1), ("redis", 1),
                    ("postgresql", 1)):
        wait_until(lambda c=comp, n=n: pods_running(
            k8s_cluster, ns, f"app.kubernetes.io/instance={RELEASE},"
            f"app.kubernetes.io/component={c}", n), timeout=120, what=f"{comp} Running")
    pvcs = k8s_cluster.kubectl_json("get", "pvc", "-n", ns)["items"]
    assert len(pvcs) == 2 and all(p["status"]["phase"] == "Bound" for p in pvcs)
    # The namespace enforces "restricted": nothing was refused.
    events = k8s_cluster.kubectl_json("get", "events", "-n", ns,
                                      "--field-selector", "reason=FailedCreate")["items"]
    assert not events, [e["message"] for e in events]

    # The helm test Pod is valid too (kwok never completes a bare Pod: dry-run on the server).
    hook = k8s_cluster.helm("template", RELEASE, str(CHART), "-n", ns,
                            "--show-only", "templates/tests/test-readyz.yaml").stdout
    k8s_cluster.kubectl("create", "--dry-run=server", "-n", ns, "-f", "-", input=hook)

    secrets_before = {n: k8s_cluster.kubectl_json("get", "secret", n, "-n", ns)["data"]
                      for n in (f"{RELEASE}-facegrid-redis", f"{RELEASE}-facegrid-database",
                                f"{RELEASE}-facegrid-admin")}

    # The operator, with the chart's ServiceAccount and env, runs a CameraNode.
    op_dep = next(o for o in objs if o["kind"] == "Deployment"
                  and o["metadata"]["name"] == f"{RELEASE}-facegrid-operator")
    env = chart_env(op_dep)
    env["FACEGRID_NAMESPACE"] = ns
    # The chart gives the operator its own Redis user (ACL SETUSER/DELUSER only) by
    # secretKeyRef; no Redis container runs under kwok, so a real local redis-server
    # with that user stands in for the bundled one.
    assert {e["name"]: e for e in op_dep["spec"]["template"]["spec"]["containers"][0]["env"]}[
        "FACEGRID_REDIS_ADMIN_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{RELEASE}-facegrid-redis-operator", "key": "redis-url"}
    op_pw = "helmOperatorPw1234"
    redis_admin = redis_server.client()
    redis_admin.execute_command("ACL", "SETUSER",
                                *acl.setuser_args("facegrid-operator", op_pw, "operator"))
    env["FACEGRID_REDIS_ADMIN_URL"] = acl.url_with_user(redis_server.url, "facegrid-operator",
                                                        op_pw)
    # Camera pods get their one device from the device plugin and need no privilege:
    # the namespace enforces the "restricted" Pod Security Standard while they run.
    k8s_cluster.kubectl("label", "namespace", ns, "--overwrite",
                        "pod-security.kubernetes.io/enforce=restricted")
    kubeconfig = operator_kubeconfig(k8s_cluster, ns, tmp_path / "operator.kubeconfig")
    log = tmp_path / "operator.log"
    proc = start_operator(kubeconfig, env, log)
    try:
        wait_alive(proc, log, lambda: k8s_cluster.kubectl(
            "get", "configmap", f"{RELEASE}-facegrid-signing-pub", "-n", ns,
            check=False).returncode == 0, what="public key ConfigMap")
        cm = k8s_cluster.kubectl_json("get", "configmap", f"{RELEASE}-facegrid-signing-pub",
                                      "-n", ns)
        assert "BEGIN PUBLIC KEY" in cm["data"]["signing.pub"]
        k8s_cluster.kubectl("get", "secret", f"{RELEASE}-facegrid-signing-key", "-n", ns)
        k8s_cluster.apply({
            "apiVersion": "facegrid.io/v1alpha1", "kind": "CameraNode",
            "metadata": {"name": "door-1", "namespace": ns},
            "spec": {"host": {"nodeName": "edge-01"}, "camera": {"source": "/dev/video0"}}})
        pod = wait_alive(proc, log, lambda: (pods_running(
            k8s_cluster, ns, "facegrid.io/camera=door-1", 1) or [None])[0],
            timeout=120, what="the camera pod Running")
        assert pod["spec"]["nodeName"] == "edge-01"
        node_env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        # The camera gets its own Redis user (XADD events, its results only), made by the
        # operator, password in the camera's own Secret.
        assert node_env["FACEGRID_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "door-1-redis", "key": "redis-url"}
        assert redis_admin.acl_getuser(acl.node_user("door-1"))
        assert pod["spec"]["containers"][0]["image"] == env["FACEGRID_NODE_IMAGE"]
        # Revocation fails closed: the in-cluster server here is a kwok stand-in that
        # cannot confirm it, so the CameraNode must stay (finalizer kept) after delete.
        k8s_cluster.kubectl("delete", "cameranode", "door-1", "-n", ns, "--wait=false")
        time.sleep(3)
        cam = k8s_cluster.kubectl_json("get", "cameranode", "door-1", "-n", ns)
        assert cam["metadata"].get("deletionTimestamp") and cam["metadata"].get("finalizers")
        k8s_cluster.kubectl("patch", "cameranode", "door-1", "-n", ns, "--type=merge",
                            "-p", '{"metadata":{"finalizers":null}}')
        for user in (acl.node_user("door-1"), "facegrid-operator"):
            redis_admin.execute_command("ACL", "DELUSER", user)
        k8s_cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce-")
    except BaseException:
        sys.stderr.write(log.read_text()[-6000:])
        raise
    finally:
        stop(proc)
    assert "forbidden" not in log.read_text().lower(), log.read_text()[-4000:]

    # Upgrade: a changed CRD reaches the cluster (Helm never upgrades crds/), passwords stay.
    chart2 = tmp_path / "facegrid"
    shutil.copytree(CHART, chart2)
    crd_file = chart2 / "files" / "crds" / f"{CRD}.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    crd["spec"]["versions"][0]["additionalPrinterColumns"].append(
        {"name": "Upgraded", "type": "string", "jsonPath": ".spec.camera.source"})
    crd_file.write_text(yaml.safe_dump(crd))
    k8s_cluster.helm("upgrade", RELEASE, str(chart2), *install_args(ns),
                     "--set", "server.replicas=2", timeout=300)
    live = k8s_cluster.kubectl_json("get", "crd", CRD)
    cols = [c["name"] for c in live["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert "Upgraded" in cols
    wait_until(lambda: pods_running(k8s_cluster, ns, f"app.kubernetes.io/instance={RELEASE},"
                                    "app.kubernetes.io/component=server", 2),
               timeout=120, what="2 server pods")
    for name, data in secrets_before.items():
        assert k8s_cluster.kubectl_json("get", "secret", name, "-n", ns)["data"] == data, name

    # Uninstall: every release object goes, except the CRD (resource-policy keep).
    k8s_cluster.helm("uninstall", RELEASE, "-n", ns, "--wait", timeout=300)
    for o in objs:
        if o["kind"] == "CustomResourceDefinition":
            continue
        args = ["get", o["kind"].lower() + ("." + o["apiVersion"].split("/")[0]
                                            if "/" in o["apiVersion"] else ""),
                o["metadata"]["name"], "--ignore-not-found", "-o", "name"]
        if o["metadata"].get("namespace"):
            args += ["-n", o["metadata"]["namespace"]]
        assert k8s_cluster.kubectl(*args).stdout.strip() == "", args
    k8s_cluster.kubectl("get", "crd", CRD)
    wait_until(lambda: not k8s_cluster.kubectl_json("get", "pods", "-n", ns)["items"],
               timeout=120, what="all pods gone")
    assert json.loads(k8s_cluster.helm("list", "-n", ns, "-o", "json").stdout) == []


def standin_crd(group: str, version: str, kind: str, plural: str, spec_schema: dict) -> dict:
    """A CRD with the group/version/kind of a third-party resource and a schema
    for the fields the chart sets (the real Prometheus Operator and KEDA CRDs
    are not vendored here); unknown fields are kept, required ones enforced."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"kind": kind, "plural": plural, "singular": kind.lower(),
                           "listKind": f"{kind}List"},
                 "versions": [{"name": version, "served": True, "storage": True, "schema": {
                     "openAPIV3Schema": {"type": "object", "required": ["spec"], "properties": {
                         "spec": {"x-kubernetes-preserve-unknown-fields": True,
                                  **spec_schema}}}}}]}}


DURATION = {"type": "string", "pattern": "^(0|([0-9]+[smhdwy])+)$"}
KEEP = "x-kubernetes-preserve-unknown-fields"
SELECTOR = {"type": "object", KEEP: True}
STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
STANDIN_CRDS = [
    standin_crd("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors", {
        "type": "object", "required": ["selector", "endpoints"], "properties": {
            "selector": SELECTOR,
            "endpoints": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["port"], KEEP: True,
                "properties": {"port": {"type": "string"}, "interval": DURATION}}}}}),
    standin_crd("monitoring.coreos.com", "v1", "PodMonitor", "podmonitors", {
        "type": "object", "required": ["selector", "podMetricsEndpoints"], "properties": {
            "selector": SELECTOR,
            "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["port"], KEEP: True,
                "properties": {"port": {"type": "string"}, "interval": DURATION}}}}}),
    standin_crd("monitoring.coreos.com", "v1", "PrometheusRule", "prometheusrules", {
        "type": "object", "required": ["groups"], "properties": {"groups": {
            "type": "array", "items": {"type": "object", "required": ["name", "rules"],
                                       "properties": {"name": {"type": "string", "minLength": 1},
                                                      "rules": {"type": "array", "items": {
                "type": "object", "required": ["expr"],
                "properties": {"alert": {"type": "string"}, "expr": {"type": "string"},
                               "for": DURATION,
                               "labels": {"type": "object", "additionalProperties": {
                                   "type": "string"}},
                               "annotations": {"type": "object", "additionalProperties": {
                                   "type": "string"}}}}}}}}}}),
    standin_crd("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects", {
        "type": "object", "required": ["scaleTargetRef", "triggers"], "properties": {
            "scaleTargetRef": {"type": "object", "required": ["name"],
                               "x-kubernetes-preserve-unknown-fields": True},
            "minReplicaCount": {"type": "integer", "minimum": 0},
            "maxReplicaCount": {"type": "integer", "minimum": 1},
            "triggers": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["type", "metadata"],
                "x-kubernetes-preserve-unknown-fields": True, "properties": {
                    "type": {"type": "string"},
                    "metadata": STRINGS}}}}}),
    standin_crd("keda.sh", "v1alpha1", "TriggerAuthentication", "triggerauthentications", {
        "type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]


def test_monitoring_and_keda_objects_accepted_with_their_crds(k8s_cluster, ns):
    """With Prometheus Operator and KEDA CRDs present (detected through
    .Capabilities, not forced), the monitors, rules and ScaledObject install."""
    for crd in STANDIN_CRDS:
        k8s_cluster.apply(crd)
    for crd in STANDIN_CRDS:
        k8s_cluster.kubectl("wait", "--for=condition=Established",
                            f"crd/{crd['metadata']['name']}", "--timeout=60s")
    time.sleep(2)  # let discovery catch up before helm reads .Capabilities
    out = k8s_cluster.helm(
        "install", RELEASE, str(CHART), "-n", ns, "--wait", "--timeout", "240s",
        "--set", "redis.persistence.enabled=false", "--set", "postgresql.persistence.enabled=false",
        "--set", "crds.install=false", "--set", "worker.keda.enabled=true", timeout=300).stdout
    assert "scales with KEDA" in out and "were not\nfound" not in out
    objs = release_objects(k8s_cluster, ns)
    kinds = {o["kind"] for o in objs}
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ScaledObject",
            "TriggerAuthentication"} <= kinds
    assert k8s_cluster.kubectl_json("get", "prometheusrules", "-n", ns)["items"]
    assert k8s_cluster.kubectl_json("get", "scaledobjects.keda.sh", "-n", ns)["items"]


def test_readme_install_with_the_default_storage_class(k8s_cluster, tmp_path):
    """`helm install ... --create-namespace --wait` exactly as the README says it: the
    cluster's default StorageClass binds the Redis and PostgreSQL claims (kwok runs the
    pods), so the install completes instead of timing out on Pending claims."""
    ns = f"readme-{os.getpid()}"
    # The chart owns the CRD (kept on uninstall): when an earlier test's release made it,
    # this second release leaves it alone, as values.yaml says to (crds.install=false).
    crd = k8s_cluster.kubectl("get", "crd", CRD, check=False)
    extra = ["--set", "crds.install=false"] if crd.returncode == 0 else []
    try:
        k8s_cluster.helm("install", "facegrid", str(CHART), "--namespace", ns,
                         "--create-namespace", "--wait", "--timeout", "240s", *extra,
                         timeout=300)
        claims = k8s_cluster.kubectl_json("get", "pvc", "-n", ns)["items"]
        assert len(claims) >= 2 and all(c["status"]["phase"] == "Bound" for c in claims)
        assert {c["spec"]["storageClassName"] for c in claims} == {"standard"}
    finally:
        k8s_cluster.helm("uninstall", "facegrid", "-n", ns, "--wait", check=False)
        k8s_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
