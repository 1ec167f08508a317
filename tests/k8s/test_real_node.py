"""A real Node in the test cluster: containerd + a kubelet built from the same
Kubernetes module as the apiserver (``scripts/k8s-test-cluster up --kubelet``).

It registers as ``system:node:real-01`` beside the kwok Nodes, runs the server
image (built from services/Dockerfile, imported into containerd, never pulled) as
a locked-down pod that becomes Ready through its own readiness probe on its pod
IP; ``kubectl logs`` and ``kubectl exec`` work; and when the cluster stops every
change the kubelet and CNI made to the machine (sysctls, iptables, links, network
namespaces, mounts, cgroups) is put back.
"""

from __future__ import annotations

import sys

import pytest
from fixtures.images import image_archives
from fixtures.k8s import ROOT, import_images, real_node_cluster, wait_until

pytestmark = [pytest.mark.k8s, pytest.mark.images]
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


def test_real_node_runs_our_image_and_the_machine_is_put_back(facegrid_images, tmp_path):
    from facegrid import tokens

    archives = image_archives(["server"])
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

        import_images(k, [archives["server"]])
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
    assert k8s_real_node.differences(before, k8s_real_node.machine_state()) == []
