"""The test control plane is a real one: real scheduler, real API validation,
real CRDs, real RBAC.  Uses the session fixture ``k8s_cluster``
(tests/fixtures/k8s.py, scripts/k8s-test-cluster)."""

from __future__ import annotations

import json
import uuid

import pytest
from fixtures.k8s import wait_until

pytestmark = pytest.mark.k8s

EDGE_TOLERATION = {
    "key": "node-role.kubernetes.io/edge",
    "operator": "Exists",
    "effect": "NoSchedule",
}


@pytest.fixture
def ns(k8s_cluster):
    name = f"t-{uuid.uuid4().hex[:8]}"
    k8s_cluster.kubectl("create", "namespace", name)
    wait_until(
        lambda: (
            k8s_cluster.kubectl(
                "get", "serviceaccount", "default", "-n", name, check=False
            ).returncode
            == 0
        ),
        timeout=60,
        what=f"default ServiceAccount in {name}",
    )
    yield name
    k8s_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def deployment(name: str, *, node: str | None = None, tolerate_edge: bool = False) -> dict:
    pod_spec: dict = {"containers": [{"name": "app", "image": "registry.invalid/facegrid/noop:1"}]}
    if node:
        pod_spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    if tolerate_edge:
        pod_spec["tolerations"] = [EDGE_TOLERATION]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
        },
    }


def test_server_reports_pinned_version(k8s_cluster):
    v = k8s_cluster.kubectl_json("version")
    want = k8s_cluster.versions["KUBERNETES_VERSION"]
    assert v["serverVersion"]["gitVersion"] == want
    assert v["clientVersion"]["gitVersion"] == want
    assert v["serverVersion"]["minor"] == want.split(".")[1]


def test_nodes_ready_with_edge_labels_and_taints(k8s_cluster):
    nodes = {n["metadata"]["name"]: n for n in k8s_cluster.kubectl_json("get", "nodes")["items"]}
    assert {"edge-01", "edge-02", "control-01"} <= set(nodes)
    for name in ("edge-01", "edge-02"):
        n = nodes[name]
        labels = n["metadata"]["labels"]
        assert labels["node-role.kubernetes.io/edge"] == ""
        assert labels["facegrid.io/edge"] == "true"
        assert labels["kubernetes.io/hostname"] == name
        assert {"key": "node-role.kubernetes.io/edge", "effect": "NoSchedule"} in [
            {k: t[k] for k in ("key", "effect")} for t in n["spec"]["taints"]
        ]
    assert not any(
        t["key"] == "node-role.kubernetes.io/edge"
        for t in nodes["control-01"]["spec"].get("taints") or []
    )
    for n in nodes.values():
        ready = [c for c in n["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", n["metadata"]["name"]
        kv = k8s_cluster.versions["KUBERNETES_VERSION"]
        assert n["status"]["nodeInfo"]["kubeletVersion"] == kv


def test_deployment_scheduled_onto_edge_02_and_running(k8s_cluster, ns):
    from kubernetes import client

    api = k8s_cluster.api_client()
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(
        ns, client.V1Deployment.from_dict(deployment("cam", node="edge-02", tolerate_edge=True))
    )

    def running_pod():
        pods = core.list_namespaced_pod(ns, label_selector="app=cam").items
        return next((p for p in pods if p.status.phase == "Running"), None)

    pod = wait_until(running_pod, timeout=90, what="a Running pod of Deployment cam")
    assert pod.spec.node_name == "edge-02"
    conds = {c.type: c.status for c in pod.status.conditions}
    assert conds.get("PodScheduled") == "True"
    assert conds.get("Ready") == "True"
    # The Deployment controller (kube-controller-manager) sees it too.
    wait_until(
        lambda: (
            apps.read_namespaced_deployment(name="cam", namespace=ns).status.ready_replicas == 1
        ),
        timeout=60,
        what="Deployment cam readyReplicas=1",
    )


def test_edge_taint_keeps_untolerating_pod_pending(k8s_cluster, ns):
    k8s_cluster.apply(deployment("no-toleration", node="edge-02"), "-n", ns)

    def failed_scheduling():
        ev = k8s_cluster.kubectl_json(
            "get", "events", "-n", ns, "--field-selector", "reason=FailedScheduling"
        )["items"]
        return [e["message"] for e in ev]

    msgs = wait_until(failed_scheduling, timeout=60, what="a FailedScheduling event")
    assert any("untolerated taint" in m for m in msgs), msgs
    pods = k8s_cluster.kubectl_json("get", "pods", "-n", ns, "-l", "app=no-toleration")["items"]
    assert pods and all(p["status"]["phase"] == "Pending" for p in pods)
    assert all(not p["spec"].get("nodeName") for p in pods)


def test_api_server_rejects_schema_violations(k8s_cluster, ns):
    path = f"/apis/apps/v1/namespaces/{ns}/deployments"
    bad_type = deployment("bad-type")
    bad_type["spec"]["replicas"] = "abc"
    code, body = k8s_cluster.raw("POST", path, bad_type)
    assert code == 400, body
    assert "replicas" in body["message"], body

    no_selector = deployment("no-selector")
    del no_selector["spec"]["selector"]
    code, body = k8s_cluster.raw("POST", path, no_selector)
    assert code == 422, body
    assert body["reason"] == "Invalid"
    assert "spec.selector: Required value" in body["message"]

    unknown = deployment("unknown-field")
    unknown["spec"]["replica"] = 2
    code, body = k8s_cluster.raw("POST", path + "?fieldValidation=Strict", unknown)
    assert code == 400, body
    assert 'unknown field "spec.replica"' in body["message"]

    # kubectl with client-side validation off: the server still refuses it.
    p = k8s_cluster.kubectl(
        "apply", "--validate=false", "-n", ns, "-f", "-", input=json.dumps(no_selector), check=False
    )
    assert p.returncode != 0
    assert "spec.selector: Required value" in p.stderr
    assert k8s_cluster.kubectl_json("get", "deployments", "-n", ns)["items"] == []


GROUP = "test.facegrid.io"


def widget_crd() -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["camera"],
                                    "properties": {
                                        "camera": {"type": "string", "minLength": 1},
                                        "fps": {"type": "integer", "default": 5, "minimum": 1},
                                    },
                                },
                                "status": {
                                    "type": "object",
                                    "properties": {
                                        "phase": {"type": "string", "enum": ["Pending", "Ready"]}
                                    },
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


def test_crd_defaults_validation_and_status_subresource(k8s_cluster, ns):
    from kubernetes import client

    k8s_cluster.apply(widget_crd())
    k8s_cluster.kubectl(
        "wait", "--for=condition=Established", f"crd/widgets.{GROUP}", "--timeout=60s"
    )
    api = k8s_cluster.api_client()
    co = client.CustomObjectsApi(api)
    args = (GROUP, "v1", ns, "widgets")

    # Discovery can lag the Established condition by a moment.
    def create():
        return co.create_namespaced_custom_object(
            *args,
            {
                "apiVersion": f"{GROUP}/v1",
                "kind": "Widget",
                "metadata": {"name": "door"},
                "spec": {"camera": "cam-door"},
                "status": {"phase": "Ready"},  # dropped: status only via /status
            },
        )

    wait_until(create, timeout=30, what="creating Widget door")
    obj = co.get_namespaced_custom_object(*args, "door")
    assert obj["spec"] == {"camera": "cam-door", "fps": 5}  # default filled in by the server
    assert "status" not in obj or not obj["status"]

    # Schema violations are refused.
    code, body = k8s_cluster.raw(
        "POST",
        f"/apis/{GROUP}/v1/namespaces/{ns}/widgets",
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "Widget",
            "metadata": {"name": "bad"},
            "spec": {"fps": 0},
        },
    )
    assert code == 422, body
    assert "spec.camera: Required value" in body["message"]
    assert "spec.fps" in body["message"]

    # Status subresource: /status changes status only ...
    co.patch_namespaced_custom_object_status(
        *args, "door", {"status": {"phase": "Ready"}, "spec": {"fps": 9}}
    )
    obj = co.get_namespaced_custom_object(*args, "door")
    assert obj["status"] == {"phase": "Ready"}
    assert obj["spec"]["fps"] == 5
    # ... and the main resource ignores status changes.
    k8s_cluster.kubectl(
        "patch",
        "widget",
        "door",
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"fps": 12}, "status": {"phase": "Pending"}}),
    )
    obj = co.get_namespaced_custom_object(*args, "door")
    assert obj["spec"]["fps"] == 12
    assert obj["status"] == {"phase": "Ready"}
    # kubectl speaks the subresource too.
    k8s_cluster.kubectl(
        "patch",
        "widget",
        "door",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Pending"}}),
    )
    assert co.get_namespaced_custom_object(*args, "door")["status"]["phase"] == "Pending"
    # Enum in the status schema is enforced on /status as well.
    p = k8s_cluster.kubectl(
        "patch",
        "widget",
        "door",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Exploded"}}),
        check=False,
    )
    assert p.returncode != 0 and "Unsupported value" in p.stderr


def test_rbac_refuses_service_account_without_role(k8s_cluster, ns):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    k8s_cluster.kubectl("create", "serviceaccount", "nobody", "-n", ns)
    admin = client.CoreV1Api(k8s_cluster.api_client())
    tr = admin.create_namespaced_service_account_token(
        "nobody",
        ns,
        client.AuthenticationV1TokenRequest.from_dict({"spec": {"expirationSeconds": 600}}),
    )
    token = tr.status.token
    sa_api = k8s_cluster.api_client(token=token)
    user = f"system:serviceaccount:{ns}:nobody"

    # The token authenticates (as the ServiceAccount) ...
    review = client.AuthenticationV1Api(sa_api).create_self_subject_review(
        client.V1SelfSubjectReview.from_dict(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        )
    )
    assert review.status.user_info.username == user
    # ... but RBAC grants it nothing.
    with pytest.raises(ApiException) as exc:
        client.CoreV1Api(sa_api).list_namespaced_pod(ns)
    assert exc.value.status == 403
    assert "forbidden" in (exc.value.body or "").lower()
    with pytest.raises(ApiException) as exc:
        client.CoreV1Api(sa_api).list_namespaced_secret("kube-system")
    assert exc.value.status == 403

    # Impersonation gives the same answer.
    p = k8s_cluster.kubectl("auth", "can-i", "list", "pods", "-n", ns, f"--as={user}", check=False)
    assert p.stdout.strip() == "no"
    p = k8s_cluster.kubectl("get", "pods", "-n", ns, f"--as={user}", check=False)
    assert p.returncode != 0 and "Forbidden" in p.stderr

    # Granting a Role flips it: RBAC is what decides.
    k8s_cluster.kubectl(
        "create", "role", "pod-reader", "-n", ns, "--verb=get,list", "--resource=pods"
    )
    k8s_cluster.kubectl(
        "create",
        "rolebinding",
        "nobody-reads",
        "-n",
        ns,
        "--role=pod-reader",
        f"--serviceaccount={ns}:nobody",
    )
    wait_until(
        lambda: client.CoreV1Api(sa_api).list_namespaced_pod(ns) is not None,
        timeout=30,
        what="the RoleBinding to take effect",
    )
    p = k8s_cluster.kubectl(
        "auth", "can-i", "delete", "pods", "-n", ns, f"--as={user}", check=False
    )
    assert p.stdout.strip() == "no"


def test_helm_knows_the_cluster_version(k8s_cluster, ns, tmp_path):
    kv = k8s_cluster.versions["KUBERNETES_VERSION"]
    p = k8s_cluster.helm("version", "--short")
    assert p.stdout.startswith(k8s_cluster.versions["HELM_VERSION"])
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    minor = kv.split(".")[1]
    (chart / "Chart.yaml").write_text(
        f"apiVersion: v2\nname: probe\nversion: 0.1.0\nkubeVersion: '>=1.{minor}.0-0'\n"
    )
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\n"
        "data:\n  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n"
    )
    # Offline rendering uses the version compiled in via ldflags ...
    out = k8s_cluster.helm("template", "probe", str(chart)).stdout
    assert f'kube: "v1.{minor}.' in out
    # ... and install checks kubeVersion against the live /version.
    k8s_cluster.helm("install", "probe", str(chart), "-n", ns, "--wait", "--timeout", "60s")
    cm = k8s_cluster.kubectl_json("get", "configmap", "probe", "-n", ns)
    assert cm["data"]["kube"] == kv
