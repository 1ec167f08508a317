"""The CameraNode resource: names, and pure checks of a spec beyond what the CRD schema can say.

The CRD schema (crds/cameranodes.facegrid.io.yaml) already refuses most bad
input at the API server; this module reads a spec into plain values and says
exactly what is wrong with the rest (unknown time zone, URL without a host,
TTL too short).  Checks that need the cluster (does the host exist?) live in
:mod:`facegrid_operator.hosts`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from facegrid import tokens
from facegrid.errors import ReasonError
from facegrid.types import check_zone, is_node_id

GROUP = "facegrid.io"
VERSION = "v1alpha1"
PLURAL = "cameranodes"
KIND = "CameraNode"
API_VERSION = f"{GROUP}/{VERSION}"

MIN_TTL_S = 10
_DEVICE_RE = re.compile(r"^/dev/video[0-9]{1,3}$")
_INDEX_RE = re.compile(r"^[0-9]{1,3}$")
_URL_SCHEMES = ("rtsp", "rtsps", "http", "https")


class SourceKind(enum.StrEnum):
    DEVICE = "device"
    INDEX = "index"
    URL = "url"
    FILE = "file"
    SECRET = "secret"


class InvalidSpec(ReasonError, ValueError):
    """The spec cannot be run; ``reason`` is a bounded CamelCase word, ``detail`` says why.

    ``str(error)`` is the detail alone (it is written into a status condition).
    """

    def __str__(self) -> str:
        return self.detail


def source_kind(source: str) -> SourceKind:
    """What kind of camera source a ``camera.source`` string names (raises InvalidSpec)."""
    if _DEVICE_RE.match(source):
        return SourceKind.DEVICE
    if _INDEX_RE.match(source):
        return SourceKind.INDEX
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    if scheme:
        if scheme not in _URL_SCHEMES:
            raise InvalidSpec("UnusableSource", f"camera.source scheme {scheme!r} is not one of "
                              f"{', '.join(_URL_SCHEMES)}")
        parts = urlsplit(source)
        if not parts.hostname:
            raise InvalidSpec("UnusableSource", f"camera.source {redact(source)!r} has no host")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise InvalidSpec("UnusableSource",
                              f"camera.source {redact(source)!r} has a bad port") from None
        return SourceKind.URL
    if source.startswith("/dev/"):
        raise InvalidSpec("UnusableSource", f"camera.source {source!r} is a device but not a "
                          "V4L2 capture device (/dev/videoN)")
    if source.startswith("/") and ".." not in source.split("/"):
        return SourceKind.FILE
    raise InvalidSpec("UnusableSource", f"camera.source {source!r} is not a device, index, "
                      "rtsp/http URL or absolute path")


def redact(url: str) -> str:
    """A URL with any password replaced (safe for status messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


@dataclass(frozen=True)
class CameraSpec:
    """A checked CameraNode spec (CRD defaults applied by the API server)."""

    name: str
    node_name: str | None
    node_selector: dict[str, str]
    source: str | None
    source_secret: tuple[str, str] | None
    kind: SourceKind
    fps: float
    width: int | None
    height: int | None
    timezone: str
    detection_threshold: float
    send_distance: float
    resend_interval_s: float
    weights: str | None
    idle_after_s: float
    idle_fps: float
    motion_threshold: float
    ttl_s: int
    rotate_at_percent: int
    image: str | None
    image_pull_policy: str | None
    resources: dict
    paused: bool
    server_url: str | None
    redis_url: str | None
    redis_url_secret: tuple[str, str] | None
    log_level: str | None

    @property
    def rotate_after_s(self) -> float:
        return self.ttl_s * self.rotate_at_percent / 100.0


def _secret_ref(obj: dict | None) -> tuple[str, str] | None:
    if not obj:
        return None
    ref = obj.get("secretKeyRef") or {}
    if not ref.get("name") or not ref.get("key"):
        raise InvalidSpec("InvalidSpec", "secretKeyRef needs name and key")
    return str(ref["name"]), str(ref["key"])


def parse(name: str, spec: dict, *, default_ttl: str = "24h") -> CameraSpec:
    """Read and check a CameraNode spec; raise :class:`InvalidSpec` saying exactly what is wrong."""
    if not is_node_id(name):
        raise InvalidSpec("InvalidName", f"name {name!r} is not a valid node id (DNS label, "
                          "at most 63 characters)")
    host = spec.get("host") or {}
    node_name = host.get("nodeName") or None
    selector = dict(host.get("nodeSelector") or {})
    if bool(node_name) == bool(selector):
        raise InvalidSpec("InvalidHost", "set exactly one of host.nodeName and host.nodeSelector")
    camera = spec.get("camera") or {}
    source = camera.get("source")
    source_secret = _secret_ref(camera.get("sourceFrom"))
    if (source is None) == (source_secret is None):
        raise InvalidSpec("UnusableSource", "set exactly one of camera.source and "
                          "camera.sourceFrom")
    kind = source_kind(str(source)) if source is not None else SourceKind.SECRET
    tz = spec.get("timeZone") or "UTC"
    try:
        check_zone(tz)
    except ValueError:
        raise InvalidSpec("UnknownTimeZone", f"timeZone {tz!r} is not an IANA time zone") from None
    token = spec.get("token") or {}
    ttl_text = token.get("ttl") or default_ttl
    try:
        ttl_s = tokens.parse_ttl(ttl_text)
    except ValueError as e:
        raise InvalidSpec("InvalidTokenTTL", f"token.ttl: {e}") from None
    if ttl_s < MIN_TTL_S:
        raise InvalidSpec("InvalidTokenTTL", f"token.ttl {ttl_text!r} is shorter than "
                          f"{MIN_TTL_S}s")
    rec = spec.get("recognition") or {}
    idle = spec.get("idle") or {}
    redis = spec.get("redis") or {}
    redis_secret = _secret_ref(redis.get("urlFrom"))
    if redis.get("url") and redis_secret:
        raise InvalidSpec("InvalidSpec", "set at most one of redis.url and redis.urlFrom")
    return CameraSpec(
        name=name,
        node_name=node_name,
        node_selector=selector,
        source=None if source is None else str(source),
        source_secret=source_secret,
        kind=kind,
        fps=float(camera.get("fps", 15)),
        width=camera.get("width"),
        height=camera.get("height"),
        timezone=tz,
        detection_threshold=float(rec.get("detectionThreshold", 0.92)),
        send_distance=float(rec.get("sendDistance", 0.25)),
        resend_interval_s=float(rec.get("resendIntervalSeconds", 60)),
        weights=rec.get("weights"),
        idle_after_s=float(idle.get("idleAfterSeconds", 30)),
        idle_fps=float(idle.get("idleFps", 2)),
        motion_threshold=float(idle.get("motionThreshold", 0.004)),
        ttl_s=ttl_s,
        rotate_at_percent=int(token.get("rotateAtPercent", 66)),
        image=spec.get("image"),
        image_pull_policy=spec.get("imagePullPolicy"),
        resources=dict(spec.get("resources") or {}),
        paused=bool(spec.get("paused", False)),
        server_url=spec.get("serverURL"),
        redis_url=redis.get("url"),
        redis_url_secret=redis_secret,
        log_level=spec.get("logLevel"),
    )
