"""The chart installed for real: every facegrid workload a real pod on a real Node.

``scripts/k8s-test-cluster up --kubelet`` adds ``real-01`` beside the kwok Nodes:
containerd + a kubelet built from the same Kubernetes module as the apiserver,
registered as ``system:node:real-01``, with kube-proxy (Services) and CoreDNS (the
cluster DNS), so pods find each other and the apiserver as on any cluster.  It is
the control host (no kwok ``control-01``) and an edge host.

The images are built from our Dockerfiles (scripts/container-images) and imported
under the names the chart's values give them; Redis, PostgreSQL and the ``helm
test`` image are local stand-ins with the official names (tests only,
docs/containers.md).  Then, as the README says it: ``helm install facegrid
charts/facegrid --namespace facegrid --create-namespace`` (``--wait``, plus the
site's model and media folder); the operator, server, worker, notifier, Redis and
PostgreSQL become Ready on real-01; ``helm test`` passes.  People are enrolled
through the server's Service; a CameraNode whose camera is a video file on the host
makes the in-cluster operator mint its token and run the node image on real-01; its
events reach the in-cluster worker and the sightings are read back through the
server's Service.  Deleting the CameraNode removes the pod and the token is refused
within seconds.  When the cluster stops, every change the kubelet, kube-proxy and
CNI made to the machine (sysctls, iptables, links, network namespaces, mounts,
cgroups) is put back.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from facegrid_operator import builders
from fixtures.images import image_archives, standin_archives
from fixtures.k8s import ROOT, import_images, real_node_cluster, wait_until
from fixtures.stack import CLIP, ENROLLED, EXAMPLES

from facegrid import contract

pytestmark = [pytest.mark.k8s, pytest.mark.images, pytest.mark.e2e, pytest.mark.models]
sys.path.insert(0, str(ROOT / "scripts"))
import k8s_real_node  # noqa: E402  (the same snapshot the cluster script takes)

CHART = ROOT / "charts" / "facegrid"
NS = "facegrid"
RELEASE = "facegrid"
CAMERA = "door"
SELECTOR = f"{builders.LABEL_CAMERA}={CAMERA}"
MODEL = "facenet-casia-webface"  # what the node image built for the tests carries
CLIP_SECONDS = 38  # examples/clip.mp4: 380 frames at 10 frames/s
API = "/api/v1"


def chart_image_names() -> dict[str, str]:
    """Our images as the chart's default values name them (fully qualified)."""
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    repos = {"server": values["server"]["image"]["repository"],
             "operator": values["operator"]["image"]["repository"],
             "node": values["operator"]["nodeImage"]["repository"]}
    return {name: f"docker.io/{repo}:{version}" for name, repo in repos.items()}


def conditions(obj: dict) -> dict[str, str]:
    return {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}


def diagnose(k, ns: str = NS) -> str:
    """What a failure report needs: pods, events, each pod's last log lines."""
    out = [k.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout,
           k.kubectl("get", "events", "-n", ns, "--sort-by=.lastTimestamp",
                     check=False).stdout[-4000:]]
    for p in k.kubectl_json("get", "pods", "-n", ns)["items"]:
        name = p["metadata"]["name"]
        logs = k.kubectl("logs", "-n", ns, name, "--all-containers", "--tail=25", check=False)
        out.append(f"--- {name} ---\n{logs.stdout}{logs.stderr}")
    return "\n".join(out)[-12000:]


@pytest.mark.skipif(os.environ.get("FACEGRID_REAL_NODE") == "0",
                    reason="FACEGRID_REAL_NODE=0: the real-Node test is switched off")
def test_helm_install_runs_for_real_and_a_camera_is_recognised(facegrid_images, tmp_path,
                                                              test_weights):
    archives = image_archives(["server", "operator", "node"])
    standins = standin_archives()
    before = k8s_real_node.machine_state()
    with real_node_cluster(tmp_path / "run") as k:
        real_node_registered(k)
        t0 = time.monotonic()
        names = chart_image_names()
        import_images(k, [*archives.values(), *standins.values()],
                      tags={facegrid_images[n]: names[n] for n in names})
        sys.stderr.write(f"\nimages imported in {time.monotonic() - t0:.1f} s\n")
        media = tmp_path / "media"
        media.mkdir()
        shutil.copyfile(CLIP, media / "door.mp4")
        (media / "door.mp4").chmod(0o644)
        try:
            install_and_test(k, media)
            server = server_url(k)
            admin = base64.b64decode(k.kubectl_json(
                "get", "secret", f"{RELEASE}-admin", "-n", NS)["data"]["token"]).decode()
            enroll(server, admin, test_weights, tmp_path)
            camera_on_the_real_node(k, server, admin, media / "door.mp4")
        except BaseException:
            sys.stderr.write(diagnose(k) + "\n")
            raise
        during = k8s_real_node.differences(before, k8s_real_node.machine_state())
        assert any("fgtest0" in d for d in during)  # the check can see the changes
        assert any("iptables" in d and "nat" in d for d in during)  # kube-proxy's rules
    assert k8s_real_node.differences(before, k8s_real_node.machine_state()) == []


def real_node_registered(k) -> None:
    nodes = {n["metadata"]["name"]: n for n in k.kubectl_json("get", "nodes")["items"]}
    assert {"edge-01", "edge-02", "real-01"} <= set(nodes)
    assert "control-01" not in nodes  # the real Node is the control host
    real = nodes["real-01"]
    info = real["status"]["nodeInfo"]
    assert info["kubeletVersion"] == k.versions["KUBERNETES_VERSION"]
    assert info["containerRuntimeVersion"].startswith("containerd://")
    assert {"facegrid.io/edge", "facegrid.io/control"} <= set(real["metadata"]["labels"])
    assert not real["spec"].get("taints")
    assert conditions(real)["Ready"] == "True"
    # registered with its own identity: the Node authorizer lets system:node:real-01
    # read its own Node, and nobody else's
    who = ["--as=system:node:real-01", "--as-group=system:nodes"]
    assert k.kubectl("auth", "can-i", "get", "nodes/real-01", *who,
                     check=False).stdout.strip() == "yes"
    other = k.kubectl("auth", "can-i", "get", "nodes/edge-01", *who, check=False).stdout
    assert other.startswith("no"), other
    lease = wait_until(lambda: k.kubectl_json("get", "lease", "-n", "kube-node-lease",
                                              "--field-selector=metadata.name=real-01")
                       ["items"], 60, what="the kubelet's Lease")
    assert lease[0]["spec"]["holderIdentity"] == "real-01"
    # the apiserver behind the `kubernetes` Service, on the node's address
    eps = k.kubectl_json("get", "endpointslices", "-n", "default",
                         "-l", "kubernetes.io/service-name=kubernetes")["items"]
    assert [a for e in eps for ep in e["endpoints"] for a in ep["addresses"]] == \
        [k.state["real_node"]["node_ip"]]


def install_and_test(k, media: Path) -> None:
    t0 = time.monotonic()
    # The README's command, with --wait and the site's two settings: the model of its
    # node image, and where camera files lie on the hosts.
    k.helm("install", RELEASE, str(CHART), "--namespace", NS, "--create-namespace",
           "--wait", "--timeout", "8m", "--set", f"model={MODEL}",
           "--set", f"operator.fileSourcePrefix={media}/", timeout=600)
    sys.stderr.write(f"helm install --wait: {time.monotonic() - t0:.1f} s\n")
    pods = k.kubectl_json("get", "pods", "-n", NS)["items"]
    components = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in pods}
    assert {"operator", "server", "worker", "notifier", "redis", "postgresql"} <= components
    for p in pods:
        assert p["spec"]["nodeName"] == "real-01", p["metadata"]["name"]
        assert p["status"]["phase"] == "Running" and conditions(p)["Ready"] == "True", \
            p["metadata"]["name"]
        assert p["status"]["podIP"].startswith("10.89.0.")  # the real Node's bridge
        for c in p["status"]["containerStatuses"]:
            assert c["restartCount"] == 0, (p["metadata"]["name"], c)
    # helm test: a pod of its own (the curl image) reads the server's /readyz
    t0 = time.monotonic()
    # (it tolerates no taint: only real-01 can run it; a failed run is kept and fails)
    out = k.helm("test", RELEASE, "-n", NS, "--timeout", "3m", timeout=240).stdout
    assert "Phase:          Succeeded" in out, out
    sys.stderr.write(f"helm test: {time.monotonic() - t0:.1f} s\n")
    # our images run locked down: non-root, read-only root filesystem
    server = next(p["metadata"]["name"] for p in pods
                  if p["metadata"]["labels"].get("app.kubernetes.io/component") == "server")
    logs = k.kubectl("logs", "-n", NS, server).stdout
    assert "Uvicorn running on" in logs, logs
    who_am_i = k.kubectl("exec", "-n", NS, server, "--", "id").stdout
    assert who_am_i.startswith("uid=10001(facegrid) gid=10001(facegrid)"), who_am_i
    touch = k.kubectl("exec", "-n", NS, server, "--", "touch", "/opt/x", check=False)
    assert touch.returncode != 0 and "Read-only file system" in touch.stderr
    # the operator (in its pod, through the `kubernetes` Service) made the signing key
    pub = k.kubectl_json("get", "configmap", f"{RELEASE}-signing-pub", "-n", NS)
    assert "signing.pub" in pub["data"]


def server_url(k) -> str:
    """The server's Service, reached from this machine at its ClusterIP (kube-proxy)."""
    svc = k.kubectl_json("get", "service", f"{RELEASE}-server", "-n", NS)
    port = svc["spec"]["ports"][0]["port"]
    url = f"http://{svc['spec']['clusterIP']}:{port}"
    r = httpx.get(url + "/readyz", timeout=10)
    assert r.status_code == 200, r.text
    return url


def enroll(server: str, admin: str, weights: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "facegrid"
    p = subprocess.run([str(exe), "enroll", str(EXAMPLES / "people"), "--server", server,
                        "--weights", str(weights)],
                       env={**os.environ, "FACEGRID_ADMIN_TOKEN": admin},
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    r = httpx.get(f"{server}{API}/people", params={"limit": 500},
                  headers={"Authorization": f"Bearer {admin}"}, timeout=10)
    r.raise_for_status()
    assert {x["name"] for x in r.json()["items"]} >= set(ENROLLED)


def camera_on_the_real_node(k, server: str, admin: str, clip: Path) -> None:
    t0 = time.monotonic()
    k.apply({"apiVersion": "facegrid.io/v1alpha1", "kind": "CameraNode",
             "metadata": {"name": CAMERA, "namespace": NS},
             "spec": {"host": {"nodeName": "real-01"}, "camera": {"source": str(clip)}}})

    def ready_pod():
        for p in k.kubectl_json("get", "pods", "-n", NS, "-l", SELECTOR)["items"]:
            if conditions(p).get("Ready") == "True":
                return p
        return None

    pod = wait_until(ready_pod, 180, what="the camera's node pod Ready on real-01")
    ready_s = time.monotonic() - t0
    sys.stderr.write(f"CameraNode apply -> node pod Ready on the real Node: {ready_s:.1f} s\n")
    assert pod["spec"]["nodeName"] == "real-01"
    token = builders.secret_token(k.kubectl_json("get", "secret", f"{CAMERA}-token", "-n", NS))
    headers = {"Authorization": f"Bearer {admin}"}

    # the pod's events reach the in-cluster worker; sightings come back through the
    # server's Service
    def recognised() -> set[str]:
        r = httpx.get(f"{server}{API}/sightings", params={"limit": 500, "node_id": CAMERA},
                      headers=headers, timeout=10)
        r.raise_for_status()
        return {s["person_name"] for s in r.json()["items"]
                if s.get("node_id") == CAMERA and s.get("person_name")}

    names = wait_until(recognised, 240, what="recognised sightings from the node pod")
    assert names <= set(ENROLLED), names
    # a file camera plays in a loop: past the clip's end the node is still the same
    # process (no exit, no restart by the kubelet)
    time.sleep(max(0.0, CLIP_SECONDS + 5 - (time.monotonic() - t0)))
    pod = k.kubectl_json("get", "pod", pod["metadata"]["name"], "-n", NS)
    assert conditions(pod)["Ready"] == "True"
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0, pod["status"]
    cam = k.kubectl_json("get", "cam", CAMERA, "-n", NS)
    assert cam["status"]["phase"] == "Running", cam["status"]
    assert cam["status"].get("host") == "real-01", cam["status"]

    # delete: the pod goes, the token is refused within seconds
    t0 = time.monotonic()
    k.kubectl("delete", "cam", CAMERA, "-n", NS, "--wait=true", "--timeout=60s")
    wait_until(lambda: not k.kubectl_json("get", "pods", "-n", NS, "-l", SELECTOR)["items"],
               60, what="the node pod gone")
    body = contract.Registration(node_id=CAMERA, timezone="UTC", model=MODEL,
                                 version="test").model_dump()

    def refused() -> bool:
        r = httpx.post(server + contract.REGISTER_PATH, json=body,
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
        return r.status_code in (401, 403)

    wait_until(refused, 10, what="the deleted camera's token refused")
    sys.stderr.write(f"CameraNode delete -> pod gone, token refused: "
                     f"{time.monotonic() - t0:.1f} s\n")
