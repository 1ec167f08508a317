"""Builders return the exact Deployment/Secret dicts the operator sends (pure)."""

from __future__ import annotations

import time
from pathlib import Path

import kopf
import pytest
import yaml
from facegrid_operator import builders, node_tokens
from facegrid_operator.reconcile import tokens_to_revoke
from facegrid_operator.settings import OperatorSettings
from facegrid_operator.spec import parse

from facegrid import tokens

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[3]
EXAMPLE = yaml.safe_load((REPO / "docs" / "camera.yaml").read_text())
SETTINGS = OperatorSettings(server_url="http://facegrid-server.facegrid:8000",
                            node_redis_url="redis://facegrid-redis.facegrid:6379/0")


def cam(**spec_changes):
    return parse("lobby", {**EXAMPLE["spec"], **spec_changes})


def container(dep):
    return dep["spec"]["template"]["spec"]["containers"][0]


def env(dep):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(dep)["env"]}


def test_device_camera_deployment():
    dep = builders.node_deployment(cam(), "facegrid", SETTINGS)
    spec, pod = dep["spec"], dep["spec"]["template"]["spec"]
    assert dep["metadata"]["name"] == "lobby-node" and dep["metadata"]["namespace"] == "facegrid"
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    assert spec["selector"]["matchLabels"] == {"app.kubernetes.io/name": "facegrid-node",
                                               "facegrid.io/camera": "lobby"}
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": "edge-01"}
    assert {"key": "node-role.kubernetes.io/edge", "operator": "Exists",
            "effect": "NoSchedule"} in pod["tolerations"]
    c = container(dep)
    assert c["image"] == SETTINGS.node_image and c["args"] == ["node"]
    assert c["ports"] == [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    # the one device comes from the device plugin: nothing privileged, no host mount
    assert c["securityContext"] == {"allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert pod["securityContext"]["supplementalGroups"] == [44]  # video
    assert c["resources"]["limits"]["smarter-devices/video0"] == "1"
    assert c["resources"]["requests"]["smarter-devices/video0"] == "1"
    vols = {v["name"]: v for v in pod["volumes"]}
    assert "camera" not in vols and not any("hostPath" in v for v in pod["volumes"])
    assert vols["token"]["secret"]["secretName"] == "lobby-token"
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["token"] == {"name": "token", "mountPath": "/var/run/facegrid/token",
                               "readOnly": True}
    assert "subPath" not in mounts["token"]  # subPath mounts never see a rotated token
    e = env(dep)
    assert e["FACEGRID_NODE_ID"] == "lobby"
    assert e["FACEGRID_TOKEN_FILE"] == "/var/run/facegrid/token/token"
    assert e["FACEGRID_CAMERA"] == "/dev/video0" and e["FACEGRID_TIMEZONE"] == "Europe/Paris"
    assert e["FACEGRID_SERVER_URL"] == "http://facegrid-server.facegrid:8000"
    assert e["FACEGRID_MAX_FPS"] == "15" and e["FACEGRID_RESEND_INTERVAL_S"] == "60"
    ex = EXAMPLE["spec"]["resources"]
    assert c["resources"]["limits"] == {**ex["limits"], "smarter-devices/video0": "1"}
    assert EXAMPLE["spec"]["resources"] == ex  # the spec itself is not changed


def test_privileged_devices_only_when_asked_for():
    s = SETTINGS.model_copy(update={"privileged_devices": True})
    dep = builders.node_deployment(cam(), "facegrid", s)
    c = container(dep)
    assert c["securityContext"] == {"privileged": True}
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["camera"]["hostPath"] == {"path": "/dev/video0", "type": "CharDevice"}
    assert "smarter-devices/video0" not in c["resources"].get("limits", {})


def test_url_camera_is_unprivileged_and_has_no_host_mount():
    dep = builders.node_deployment(cam(camera={"source": "rtsp://cam.lan:554/s"}),
                                   "facegrid", SETTINGS)
    c = container(dep)
    assert "privileged" not in c["securityContext"]
    assert c["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert "camera" not in {v["name"] for v in dep["spec"]["template"]["spec"]["volumes"]}


def test_index_camera_asks_for_its_device_and_file_is_read_only():
    dep = builders.node_deployment(cam(camera={"source": "1"}), "facegrid", SETTINGS)
    assert container(dep)["resources"]["limits"]["smarter-devices/video1"] == "1"
    dep = builders.node_deployment(cam(camera={"source": "/srv/door.mp4"}), "facegrid", SETTINGS)
    mounts = {m["name"]: m for m in container(dep)["volumeMounts"]}
    assert mounts["camera"] == {"name": "camera", "mountPath": "/srv/door.mp4", "readOnly": True}
    assert "privileged" not in container(dep)["securityContext"]
    assert env(dep)["FACEGRID_LOOP"] == "true"  # a file camera plays until deleted
    live = builders.node_deployment(cam(camera={"source": "rtsp://cam/1"}), "facegrid", SETTINGS)
    assert "FACEGRID_LOOP" not in env(live)


def test_selector_host_secrets_and_pause():
    c = cam(host={"nodeSelector": {"facegrid.io/edge": "true"}},
            camera={"sourceFrom": {"secretKeyRef": {"name": "cam-urls", "key": "lobby"}}},
            redis={"urlFrom": {"secretKeyRef": {"name": "redis", "key": "url"}}}, paused=True)
    dep = builders.node_deployment(c, "ns1", SETTINGS)
    assert dep["spec"]["replicas"] == 0
    assert dep["spec"]["template"]["spec"]["nodeSelector"] == {"facegrid.io/edge": "true"}
    e = env(dep)
    assert e["FACEGRID_CAMERA"] == {"secretKeyRef": {"name": "cam-urls", "key": "lobby"}}
    assert e["FACEGRID_REDIS_URL"] == {"secretKeyRef": {"name": "redis", "key": "url"}}


def test_env_names_and_values_are_what_the_node_reads():
    """Every FACEGRID_* the operator sets is a NodeSettings field and validates there."""
    ns_mod = pytest.importorskip("facegrid_node.settings")
    dep = builders.node_deployment(cam(recognition={"weights": "casia-webface"}, logLevel="INFO"),
                                   "facegrid", SETTINGS)
    values = {k: v for k, v in env(dep).items() if isinstance(v, str)}
    fields = {f"FACEGRID_{n.upper()}" for n in ns_mod.NodeSettings.model_fields}
    not_read = set(values) - fields - {"FACEGRID_LOG_LEVEL"}
    assert not_read == set()
    assert {"FACEGRID_CAMERA_WIDTH", "FACEGRID_CAMERA_HEIGHT"} <= set(values)
    kwargs = {k.removeprefix("FACEGRID_").lower(): v for k, v in values.items()
              if k in fields}
    node = ns_mod.NodeSettings(**kwargs)
    assert node.node_id == "lobby" and node.timezone == "Europe/Paris"
    assert node.idle_fps == 2 and node.motion_threshold == 0.004
    assert node.resend_interval_s == 60 and node.send_distance == 0.25


def test_spec_hash_follows_the_pod_template():
    a = builders.node_deployment(cam(), "facegrid", SETTINGS)
    b = builders.node_deployment(cam(), "facegrid", SETTINGS)
    c = builders.node_deployment(cam(camera={"source": "/dev/video1"}), "facegrid", SETTINGS)
    h = builders.ANN_SPEC_HASH
    assert a["metadata"]["annotations"][h] == b["metadata"]["annotations"][h]
    assert a["metadata"]["annotations"][h] != c["metadata"]["annotations"][h]


def test_owned_by_sets_the_same_owner_reference_as_kopf_adopt():
    owner = {"apiVersion": "facegrid.io/v1alpha1", "kind": "CameraNode",
             "metadata": {"name": "lobby", "namespace": "facegrid", "uid": "u-1", "labels": {}}}
    dep = builders.owned_by(builders.node_deployment(cam(), "facegrid", SETTINGS), owner)
    (ref,) = dep["metadata"]["ownerReferences"]
    assert ref["uid"] == "u-1" and ref["kind"] == "CameraNode" and ref["controller"] is True
    adopted = builders.node_deployment(cam(), "facegrid", SETTINGS)
    kopf.adopt(adopted, owner=owner)
    assert adopted["metadata"]["ownerReferences"] == [ref]


def test_token_secret_and_rotation_bookkeeping():
    key = tokens.generate_private_key()
    c = cam(token={"ttl": "60s", "rotateAtPercent": 50})
    t0 = time.time()
    token, claims = node_tokens.issue(key, c, now=t0)
    s = builders.token_secret("lobby", "facegrid", token, claims)
    assert builders.secret_token(s) == token
    assert token not in str(s["metadata"])  # ids and times only in the metadata
    assert node_tokens.decide(None, c, key).action is node_tokens.Action.ISSUE
    assert node_tokens.decide(s, c, key, now=t0 + 10).action is node_tokens.Action.KEEP
    d = node_tokens.decide(s, c, key, now=t0 + 31)
    assert d.action is node_tokens.Action.ROTATE and d.current["jti"] == claims["jti"]
    # a TTL change rotates at once; a token signed by another key is replaced
    assert node_tokens.decide(s, cam(token={"ttl": "2m"}), key,
                              now=t0 + 1).action is node_tokens.Action.ROTATE
    other = tokens.generate_private_key()
    d = node_tokens.decide(s, c, other, now=t0 + 1)
    assert d.action is node_tokens.Action.ISSUE and "bad_signature" in d.reason
    # after rotation both the new and the previous token are revoked on delete
    token2, claims2 = node_tokens.issue(key, c, now=t0 + 31)
    s2 = builders.token_secret("lobby", "facegrid", token2, claims2, previous=claims)
    assert [j for j, _ in tokens_to_revoke(s2, now=t0 + 32)] == [claims2["jti"], claims["jti"]]
    assert [j for j, _ in tokens_to_revoke(s2, now=t0 + 62)] == [claims2["jti"]]
    assert tokens_to_revoke(None) == []


def test_own_redis_user_when_the_operator_manages_them():
    own = SETTINGS.model_copy(update={"redis_admin_url": "redis://op:pw@facegrid-redis:6379/0"})
    # Each camera its own Secret (own ACL user); a spec naming a Redis URL keeps it.
    assert env(builders.node_deployment(cam(), "facegrid", own))["FACEGRID_REDIS_URL"] == {
        "secretKeyRef": {"name": "lobby-redis", "key": "redis-url"}}
    given = cam(redis={"url": "redis://other:6379/0"})
    assert not builders.own_redis_user(given, own)
    assert env(builders.node_deployment(given, "facegrid", own))["FACEGRID_REDIS_URL"] == \
        "redis://other:6379/0"
    # Without an admin URL: the shared node URL, as before.
    assert env(builders.node_deployment(cam(), "facegrid", SETTINGS))["FACEGRID_REDIS_URL"] == \
        "redis://facegrid-redis.facegrid:6379/0"
    s = builders.redis_secret("lobby", "facegrid", "abc", "redis://u:abc@h:6379/0")
    assert s["metadata"]["name"] == "lobby-redis"
    assert builders.secret_value(s, "password") == "abc"
    assert builders.secret_value(s, "redis-url") == "redis://u:abc@h:6379/0"
