"""The operator's pure logic: host checks against the Node index, status computation, the
API-path labels, kube-to-kopf error mapping, and the wiring of the kopf registry."""

from __future__ import annotations

import kopf
import pytest
from facegrid_operator import hosts, kube, reconcile
from facegrid_operator.conditions import FALSE, TRUE, Cond, condition
from facegrid_operator.handlers import NodeLabels, kopf_error
from facegrid_operator.operator import build_registry, kopf_settings
from facegrid_operator.settings import OperatorSettings
from facegrid_operator.spec import InvalidSpec, parse

pytestmark = pytest.mark.unit
NODES = {"edge-01": {"kubernetes.io/hostname": "edge-01", "node-role.kubernetes.io/edge": ""},
         "edge-02": {"kubernetes.io/hostname": "edge-02", "node-role.kubernetes.io/edge": ""},
         "control-01": {"kubernetes.io/hostname": "control-01"}}


def spec(host: dict) -> dict:
    return {"host": host, "camera": {"source": "/dev/video0"}}


def test_host_by_name_and_by_selector():
    assert hosts.check_host(NODES, parse("a", spec({"nodeName": "edge-02"}))) == "Node edge-02"
    where = hosts.check_host(NODES, parse("a", spec(
        {"nodeSelector": {"node-role.kubernetes.io/edge": ""}})))
    assert where == "2 Node(s) match (edge-01, edge-02)"
    with pytest.raises(InvalidSpec, match="no Node named 'edge-99'") as e:
        hosts.check_host(NODES, parse("a", spec({"nodeName": "edge-99"})))
    assert e.value.reason == "HostNotFound"
    with pytest.raises(InvalidSpec, match="no Node has the labels zone=b"):
        hosts.check_host(NODES, parse("a", spec({"nodeSelector": {"zone": "b"}})))


def pod(name: str, *, node: str | None, ready: bool, created: str = "2026-01-01T00:00:00Z",
        waiting: str | None = None) -> dict:
    cs = {"ready": ready, "restartCount": 0,
          "state": {"waiting": {"reason": waiting}} if waiting else {"running": {}}}
    return {"metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": node},
            "status": {"conditions": [{"type": "Ready", "status": str(ready)}],
                       "containerStatuses": [cs]}}


VALID = {Cond.VALID: condition(TRUE, "Valid", "ok"),
         Cond.TOKEN_READY: condition(TRUE, "Issued", "t"),
         Cond.DEPLOYED: condition(TRUE, "Applied", "d")}


def test_status_follows_the_newest_pod_and_keeps_conditions():
    st = reconcile.compute_status({}, paused=False, pods=[], updates=VALID, extra=None,
                                  generation=1)
    assert st["phase"] == "Deploying" and st["message"] == "Scheduled: no node pod exists yet"
    assert "host" not in st and st["observedGeneration"] == 1
    st = reconcile.compute_status(st, paused=False, pods=[
        pod("old", node="edge-02", ready=False, created="2026-01-01T00:00:00Z"),
        pod("new", node="edge-01", ready=True, created="2026-01-01T00:01:00Z")],
        updates={}, extra={"tokenExpiresAt": "x"}, generation=1)
    assert (st["phase"], st["host"], st["pod"]) == ("Running", "edge-01", "new")
    assert {c["type"] for c in st["conditions"]} == {"Valid", "TokenReady", "Deployed",
                                                      "Scheduled"}
    assert st["tokenExpiresAt"] == "x"
    failing = reconcile.compute_status(st, paused=False, pods=[
        pod("new", node="edge-01", ready=False, waiting="ImagePullBackOff")], updates={},
        extra=None, generation=1)
    assert failing["phase"] == "Degraded"


def test_paused_and_invalid():
    st = reconcile.compute_status({}, paused=True, pods=[], updates=VALID, extra=None,
                                  generation=2)
    assert st["phase"] == "Paused"
    sched = next(c for c in st["conditions"] if c["type"] == "Scheduled")
    assert (sched["status"], sched["reason"]) == (FALSE, "Paused")
    bad = reconcile.compute_status(st, paused=True, pods=[], extra=None, generation=3,
                                   updates={Cond.VALID: condition(FALSE, "HostNotFound", "x")})
    assert bad["phase"] == "Invalid"


@pytest.mark.parametrize(("path", "resource"), [
    (kube.secrets_path("ns", "a-token"), "secrets"),
    (kube.deployments_path("ns", "a-node"), "deployments"),
    (kube.cameranode_path("ns", "a", status=True), "cameranodes/status"),
    (kube.cameranode_path(None), "cameranodes"),
    (kube.nodes_path("edge-01"), "nodes"),
    (kube.pods_path("ns") + "?labelSelector=x", "pods"),
])
def test_resource_label_of_api_paths(path, resource):
    assert kube.resource_of(path) == resource


@pytest.mark.parametrize(("status", "kind", "delay"), [
    (409, kopf.TemporaryError, 1), (0, kopf.TemporaryError, 2), (503, kopf.TemporaryError, 2),
    (429, kopf.TemporaryError, 2), (403, kopf.TemporaryError, 30), (422, kopf.PermanentError, None),
])
def test_kube_errors_become_kopf_errors(status, kind, delay):
    err = kopf_error(kube.KubeError(status, "boom"), "thing")
    assert type(err) is kind
    assert getattr(err, "delay", None) == delay


def test_node_labels_view():
    class FakeIndex(dict):  # kopf.Index: key -> a store of values
        pass

    view = NodeLabels(FakeIndex({"edge-01": [{"a": "b"}]}))
    assert dict(view) == {"edge-01": {"a": "b"}} and "edge-02" not in view


def test_registry_and_settings():
    settings = OperatorSettings(status_interval_s=7, rotation_check_s=11)
    r = build_registry(settings)
    ids = {h.id for h in r._changing.get_all_handlers()}
    assert ids == {"reconcile", "reconcile/spec", "revoke"}  # one handler for the whole spec
    timers = {h.id: h for h in r._spawning.get_all_handlers()}
    assert timers["status"].interval == 7 and timers["token-rotation"].interval == 11
    ks = kopf_settings(settings)
    assert ks.persistence.finalizer == "facegrid.io/operator"
    # a deleted CameraNode whose timer is inside a call is looked at again within a second
    assert ks.background.cancellation_polling <= 1


def test_pod_settled():
    assert not reconcile.pod_settled({"metadata": {"name": "p"}, "spec": {}, "status": {}})
    assert not reconcile.pod_settled(pod("p", node="edge-01", ready=False))  # starting
    assert reconcile.pod_settled(pod("p", node="edge-01", ready=True))
    assert reconcile.pod_settled(pod("p", node="edge-01", ready=False, waiting="ErrImagePull"))
    going = pod("p", node="edge-01", ready=False)
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:02:00Z"
    assert reconcile.pod_settled(going)
    assert reconcile.pod_settled({"metadata": {}, "status": {"phase": "Failed"}})


class WriteRecorder:
    """Stands in for reconcile.write_status: when each write ran and with which pods."""

    def __init__(self) -> None:
        self.writes: list[tuple[float, list[str]]] = []

    def __call__(self, memo, ns, name, *, pods) -> str:
        import time
        self.writes.append((time.monotonic(), [p["metadata"]["name"] for p in pods]))
        return "Running"


def test_pod_events_fold_until_the_pod_settles(monkeypatch):
    """Pod events of a starting pod are folded into one status write POD_SETTLE_S later;
    an event that brings the pod Ready writes at once (and still only once)."""
    import asyncio
    import time
    from types import SimpleNamespace

    from facegrid_operator.handlers import status

    rec = WriteRecorder()
    monkeypatch.setattr(reconcile, "write_status", rec)
    memo = SimpleNamespace(pod_writes_due={}, pod_write_tasks=set())
    labels = {"facegrid.io/camera": "cam"}
    index: dict = {}

    async def event(p: dict) -> None:
        index[("ns", "cam")] = [p]
        await status.pod_event(namespace="ns", labels=labels, body=p, memo=memo,
                               camera_pods=index)

    async def scenario() -> tuple[float, float]:
        t0 = time.monotonic()
        await event(pod("a", node=None, ready=False))            # created
        await asyncio.sleep(0.02)
        await event(pod("a", node="edge-01", ready=False))       # bound: folded
        await asyncio.gather(*memo.pod_write_tasks)
        slow = rec.writes[-1][0] - t0
        monkeypatch.setattr(status, "POD_SETTLE_S", 60.0)  # only the Ready event can end it
        t1 = time.monotonic()
        await event(pod("b", node=None, ready=False))            # created
        await asyncio.sleep(0.02)
        await event(pod("b", node="edge-01", ready=True))        # Ready: write now
        await asyncio.gather(*memo.pod_write_tasks)
        return slow, rec.writes[-1][0] - t1

    settle = status.POD_SETTLE_S
    slow, fast = asyncio.run(scenario())
    assert [w[1] for w in rec.writes] == [["a"], ["b"]]  # one write per pod start
    assert slow >= settle
    assert fast < 30
    assert memo.pod_writes_due == {}


class RecordingKube:
    """The API client's writes, answered as the API server would for a new camera (the
    only stand-in here: everything else is the operator's real code)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict]] = []
        self.objects: dict[str, dict] = {}

    def create(self, path: str, obj: dict) -> dict:
        self.calls.append(("POST", path, obj))
        self.objects[f"{path}/{obj['metadata']['name']}"] = obj
        return obj

    def get_or_none(self, path: str) -> dict | None:
        self.calls.append(("GET", path, {}))
        return self.objects.get(path)

    def apply(self, path: str, obj: dict) -> dict:
        self.calls.append(("APPLY", path, obj))
        return obj

    def merge_patch(self, path: str, patch: dict) -> dict:
        self.calls.append(("PATCH", path, patch))
        return patch


def test_new_camera_status_says_not_registered_so_the_first_timer_tick_writes_nothing():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from facegrid_operator.context import OperatorContext

    k = RecordingKube()
    ctx = OperatorContext(settings=OperatorSettings(), access=None, kube=k, server=None,
                          key=Ed25519PrivateKey.generate())
    body = {"apiVersion": "facegrid.io/v1alpha1", "kind": "CameraNode",
            "metadata": {"name": "lobby", "namespace": "ns", "uid": "u1", "generation": 1},
            "spec": {"host": {"nodeName": "edge-01"},
                     "camera": {"source": "rtsp://cam.lan/lobby"}}}
    assert reconcile.reconcile_camera(ctx, body, NODES, pods=[]) == "Deploying"
    assert [c[0] for c in k.calls] == ["POST", "APPLY", "PATCH"]  # Secret, Deployment, status
    conds = {c["type"]: c for c in k.calls[-1][2]["status"]["conditions"]}
    assert (conds["Heartbeating"]["status"], conds["Heartbeating"]["reason"]) == (
        "Unknown", "NotRegistered")
    # the status timer's first tick, the server not having heard from the node yet
    reconcile.write_status(ctx, "ns", "lobby", pods=[], body=body,
                           updates={Cond.HEARTBEATING: reconcile.not_registered("lobby")})
    assert len(k.calls) == 3  # nothing new: no PATCH
    # a camera whose status already has a heartbeat keeps it on a spec change
    hb = condition(TRUE, "Heartbeating", "online")
    reconcile.write_status(ctx, "ns", "lobby", pods=[], body=body,
                           updates={Cond.HEARTBEATING: hb})
    body["metadata"]["generation"] = 2
    body["status"] = {"tokenExpiresAt": "2099-01-01T00:00:00Z"}
    reconcile.reconcile_camera(ctx, body, NODES, pods=[])
    assert k.calls[-1][0] == "PATCH"
    conds = {c["type"]: c for c in k.calls[-1][2]["status"]["conditions"]}
    assert conds["Heartbeating"]["reason"] == "Heartbeating"
