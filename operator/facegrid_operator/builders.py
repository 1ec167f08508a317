"""Pure builders: the Kubernetes objects the operator owns, as plain dicts.

No I/O here; :mod:`facegrid_operator.reconcile` sends them.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

from facegrid.tokens import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE

from .settings import OperatorSettings
from .spec import CameraSpec, SourceKind

NODE_PORT = 9100
TOKEN_DIR = "/var/run/facegrid/token"
TOKEN_KEY = "token"
EDGE_TAINT_KEY = "node-role.kubernetes.io/edge"
HOSTNAME_LABEL = "kubernetes.io/hostname"
MANAGED_BY = "facegrid-operator"

# Annotations on the token Secret (ids and times only, never the token).
ANN_JTI = "facegrid.io/jti"
ANN_ISSUED = "facegrid.io/issued-at"
ANN_EXPIRES = "facegrid.io/expires-at"
ANN_PREV_JTI = "facegrid.io/previous-jti"
ANN_PREV_EXPIRES = "facegrid.io/previous-expires-at"
ANN_SPEC_HASH = "facegrid.io/spec-hash"
LABEL_CAMERA = "facegrid.io/camera"


def deployment_name(camera: str) -> str:
    return f"{camera}-node"


def token_secret_name(camera: str) -> str:
    return f"{camera}-token"


def redis_secret_name(camera: str) -> str:
    return f"{camera}-redis"


#: Keys of the node's Redis Secret.
REDIS_URL_KEY = "redis-url"
REDIS_PASSWORD_KEY = "password"


def own_redis_user(cam: CameraSpec, settings: OperatorSettings) -> bool:
    """Whether the camera gets its own Redis ACL user (no Redis URL of its own in the spec)."""
    return settings.redis_admin_url is not None and not (cam.redis_url or cam.redis_url_secret)


def selector_labels(camera: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "facegrid-node", LABEL_CAMERA: camera}


def labels(camera: str) -> dict[str, str]:
    return {**selector_labels(camera), "app.kubernetes.io/component": "node",
            "app.kubernetes.io/part-of": "facegrid", "app.kubernetes.io/managed-by": MANAGED_BY}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def owned_by(obj: dict, owner: dict) -> dict:
    """``obj`` with ``owner`` (a CameraNode) as its controlling owner: the garbage collector
    removes it when the CameraNode goes, and a foreground delete waits for it."""
    md = owner["metadata"]
    ref = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": md["name"],
           "uid": md["uid"], "controller": True, "blockOwnerDeletion": True}
    obj["metadata"]["ownerReferences"] = [ref]
    return obj


# -- token -------------------------------------------------------------------

def token_secret(camera: str, namespace: str, token: str, claims: dict,
                 previous: dict | None = None) -> dict:
    """The node's JWT Secret; ``previous`` = claims of the token it replaces (still valid)."""
    ann = {ANN_JTI: claims["jti"], ANN_ISSUED: iso(claims["iat"]),
           ANN_EXPIRES: iso(claims["exp"])}
    if previous:
        ann[ANN_PREV_JTI] = previous["jti"]
        ann[ANN_PREV_EXPIRES] = iso(previous["exp"])
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": token_secret_name(camera), "namespace": namespace,
                     "labels": labels(camera), "annotations": ann},
        "data": {TOKEN_KEY: _b64(token)},
    }


def secret_token(secret: dict) -> str | None:
    raw = (secret.get("data") or {}).get(TOKEN_KEY)
    return base64.b64decode(raw).decode() if raw else None


# -- the node's own Redis user ----------------------------------------------

def redis_secret(camera: str, namespace: str, password: str, url: str) -> dict:
    """The node's Redis credentials: its own ACL user's password and URL."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": redis_secret_name(camera), "namespace": namespace,
                     "labels": labels(camera)},
        "data": {REDIS_PASSWORD_KEY: _b64(password), REDIS_URL_KEY: _b64(url)},
    }


def secret_value(secret: dict, key: str) -> str | None:
    raw = (secret.get("data") or {}).get(key)
    return base64.b64decode(raw).decode() if raw else None


# -- signing key -------------------------------------------------------------

def signing_key_secret(settings: OperatorSettings, private_pem: bytes) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": settings.signing_key_secret, "namespace": settings.namespace,
                     "labels": {"app.kubernetes.io/part-of": "facegrid",
                                "app.kubernetes.io/managed-by": MANAGED_BY}},
        "data": {PRIVATE_KEY_FILE: _b64(private_pem)},
    }


def public_key_configmap(settings: OperatorSettings, public_pem: bytes) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": settings.public_key_configmap, "namespace": settings.namespace,
                     "labels": {"app.kubernetes.io/part-of": "facegrid",
                                "app.kubernetes.io/managed-by": MANAGED_BY}},
        "data": {PUBLIC_KEY_FILE: public_pem.decode()},
    }


# -- node Deployment ---------------------------------------------------------

def _env(name: str, value: object) -> dict:
    return {"name": name, "value": str(value)}


def _env_from(name: str, ref: tuple[str, str]) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref[0], "key": ref[1]}}}


def _num(x: float) -> str:
    return f"{x:g}"


def node_env(cam: CameraSpec, settings: OperatorSettings) -> list[dict]:
    """FACEGRID_* settings of the node agent (names from facegrid_node.settings.NodeSettings)."""
    env = [
        _env("FACEGRID_NODE_ID", cam.name),
        _env("FACEGRID_SERVER_URL", cam.server_url or settings.nodes_server_url),
    ]
    if own_redis_user(cam, settings):
        env.append(_env_from("FACEGRID_REDIS_URL", (redis_secret_name(cam.name), REDIS_URL_KEY)))
    elif cam.redis_url_secret:
        env.append(_env_from("FACEGRID_REDIS_URL", cam.redis_url_secret))
    elif cam.redis_url:
        env.append(_env("FACEGRID_REDIS_URL", cam.redis_url))
    elif settings.node_redis_url_secret:
        name, key = settings.node_redis_url_secret.split(":", 1)
        env.append(_env_from("FACEGRID_REDIS_URL", (name, key)))
    else:
        env.append(_env("FACEGRID_REDIS_URL", settings.node_redis_url))
    env.append(_env("FACEGRID_TOKEN_FILE", f"{TOKEN_DIR}/{TOKEN_KEY}"))
    env.append(_env("FACEGRID_TIMEZONE", cam.timezone))
    if cam.source_secret:
        env.append(_env_from("FACEGRID_CAMERA", cam.source_secret))
    else:
        env.append(_env("FACEGRID_CAMERA", cam.source))
    if cam.kind is SourceKind.FILE:
        # A camera pod runs until its CameraNode goes: a recorded video or folder plays
        # in a loop (else the node would exit at its end and the kubelet would restart
        # it, counted as a crash, with back-off).
        env.append(_env("FACEGRID_LOOP", "true"))
    env += [
        _env("FACEGRID_MAX_FPS", _num(cam.fps)),
        _env("FACEGRID_DET_THRESHOLD", _num(cam.detection_threshold)),
        _env("FACEGRID_SEND_DISTANCE", _num(cam.send_distance)),
        _env("FACEGRID_RESEND_INTERVAL_S", _num(cam.resend_interval_s)),
        _env("FACEGRID_IDLE_AFTER_S", _num(cam.idle_after_s)),
        _env("FACEGRID_IDLE_FPS", _num(cam.idle_fps)),
        _env("FACEGRID_MOTION_THRESHOLD", _num(cam.motion_threshold)),
        _env("FACEGRID_METRICS_PORT", NODE_PORT),
    ]
    if cam.width:
        env.append(_env("FACEGRID_CAMERA_WIDTH", cam.width))
    if cam.height:
        env.append(_env("FACEGRID_CAMERA_HEIGHT", cam.height))
    if cam.weights:
        env.append(_env("FACEGRID_WEIGHTS", cam.weights))
    if cam.log_level:
        env.append(_env("FACEGRID_LOG_LEVEL", cam.log_level))
    return env


def device_path(cam: CameraSpec) -> str | None:
    """The host device the container needs, if the source is a local camera."""
    if cam.kind is SourceKind.DEVICE:
        return cam.source
    if cam.kind is SourceKind.INDEX:
        return f"/dev/video{int(cam.source or 0)}"
    return None


def device_resource(device: str, settings: OperatorSettings) -> str:
    """The device plugin's extended resource for one host device (/dev/video0 ->
    smarter-devices/video0)."""
    return settings.device_resource_prefix + device.rsplit("/", 1)[-1]


def host_node_selector(cam: CameraSpec) -> dict[str, str]:
    if cam.node_name:
        return {HOSTNAME_LABEL: cam.node_name}
    return dict(cam.node_selector)


DEFAULT_RESOURCES = {"requests": {"cpu": "500m", "memory": "512Mi"},
                     "limits": {"memory": "1536Mi"}}


def node_deployment(cam: CameraSpec, namespace: str, settings: OperatorSettings) -> dict:
    """The one-replica, Recreate Deployment running the node agent on the camera's host."""
    device = device_path(cam)
    volumes: list[dict] = [
        {"name": "token", "secret": {"secretName": token_secret_name(cam.name),
                                     "defaultMode": 0o440,
                                     "items": [{"key": TOKEN_KEY, "path": TOKEN_KEY}]}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    ]
    mounts: list[dict] = [
        {"name": "token", "mountPath": TOKEN_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    resources = {k: dict(v) for k, v in (cam.resources or DEFAULT_RESOURCES).items()}
    restricted = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                  "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    pod_security: dict = {"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                          "seccompProfile": {"type": "RuntimeDefault"}}
    if device and settings.privileged_devices:
        # Opt-in for clusters without a device plugin: the host's device node in a
        # privileged container (the device cgroup admits nothing else).
        volumes.append({"name": "camera", "hostPath": {"path": device, "type": "CharDevice"}})
        mounts.append({"name": "camera", "mountPath": device})
        security: dict = {"privileged": True}
        pod_security = {"seccompProfile": {"type": "RuntimeDefault"}}
    elif device:
        # The one device, handed over by the host's device plugin (which also opens it in
        # the pod's device cgroup); the video group may read it.  Nothing privileged.
        res = device_resource(device, settings)
        resources.setdefault("limits", {})[res] = "1"
        resources.setdefault("requests", {})[res] = "1"
        security = restricted
        pod_security["supplementalGroups"] = [settings.device_group]
    else:
        if cam.kind is SourceKind.FILE:
            volumes.append({"name": "camera", "hostPath": {"path": cam.source, "type": ""}})
            mounts.append({"name": "camera", "mountPath": cam.source, "readOnly": True})
        security = restricted
    probe = {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10,
             "timeoutSeconds": 3, "failureThreshold": 3}
    container = {
        "name": "node",
        "image": cam.image or settings.node_image,
        "imagePullPolicy": cam.image_pull_policy or settings.node_image_pull_policy,
        "args": ["node"],
        "env": node_env(cam, settings),
        "ports": [{"name": "metrics", "containerPort": NODE_PORT, "protocol": "TCP"}],
        "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 60},
        "livenessProbe": probe,
        "readinessProbe": {**probe, "httpGet": {"path": "/readyz", "port": "metrics"},
                           "periodSeconds": 5},
        "resources": resources,
        "securityContext": security,
        "volumeMounts": mounts,
    }
    pod_spec = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 10,
        "nodeSelector": host_node_selector(cam),
        "tolerations": [{"key": EDGE_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
        "securityContext": pod_security,
        "containers": [container],
        "volumes": volumes,
    }
    template = {
        "metadata": {"labels": labels(cam.name),
                     "annotations": {"prometheus.io/scrape": "true",
                                     "prometheus.io/port": str(NODE_PORT)}},
        "spec": pod_spec,
    }
    spec_hash = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment_name(cam.name), "namespace": namespace,
                     "labels": labels(cam.name), "annotations": {ANN_SPEC_HASH: spec_hash}},
        "spec": {
            "replicas": 0 if cam.paused else 1,
            "strategy": {"type": "Recreate"},
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(cam.name)},
            "template": template,
        },
    }
