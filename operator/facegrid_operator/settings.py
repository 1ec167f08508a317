"""OperatorSettings: the one configuration of ``facegrid operator`` (env prefix FACEGRID_)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from facegrid import __version__, tokens
from facegrid.settings import AdminTokenSettings, TokenAudienceSettings
from facegrid.types import HttpUrl, RedisUrl


class OperatorSettings(AdminTokenSettings, TokenAudienceSettings):
    """Configuration of ``facegrid operator`` (shared fields from :mod:`facegrid.settings`).

    ``token_audience`` is the `aud` claim of the node tokens the operator issues; the
    admin token is the API server's (for node status and revocation).
    """

    server_url: HttpUrl = Field("http://facegrid-server:8000",
        description="API server the operator calls (node status, token revocation).")
    node_server_url: HttpUrl | None = Field(None,
        description="Server URL given to the nodes (default: server_url).")
    node_redis_url: RedisUrl = Field("redis://facegrid-redis:6379/0",
        description="Redis URL given to the nodes unless a CameraNode overrides it.")
    node_redis_url_secret: str | None = Field(
        None, pattern=r"^[a-z0-9][-a-z0-9.]*:[-._a-zA-Z0-9]+$",
        description="``secret-name:key`` holding the nodes' Redis URL (with password); wins over "
                    "node_redis_url.")
    redis_admin_url: RedisUrl | None = Field(None,
        description="Redis URL of a user that may ACL SETUSER/DELUSER/GETUSER (facegrid.acl's "
                    "``operator`` role).  Set: every CameraNode gets its own Redis user "
                    "(``facegrid-node-<name>``: XADD events, its own results channel) with its "
                    "own password in the Secret ``<name>-redis``, on node_redis_url's host; "
                    "re-asserted every rotation_check_s (a Redis restart loses it) and removed "
                    "when the CameraNode is deleted.  Unset: nodes get node_redis_url[_secret].")
    namespace: str = Field("facegrid",
        description="Namespace of the signing-key Secret and the public-key ConfigMap (the "
                    "operator's own).")
    signing_key_secret: str = Field("facegrid-signing-key",
        description="Secret holding the Ed25519 signing key (created if missing).")
    public_key_configmap: str = Field("facegrid-signing-pub",
        description="ConfigMap publishing the public key for server and worker.")
    node_image: str = Field(f"facegrid/node:{__version__}",
        description="Image of the node Deployments unless a CameraNode names one.")
    node_image_pull_policy: str = Field("IfNotPresent", pattern="^(Always|IfNotPresent|Never)$",
        description="imagePullPolicy of the node containers.")
    allowed_images: Annotated[list[str], NoDecode] = Field(default_factory=list,
        description="Images a CameraNode's spec.image may name (comma-separated): a repository "
                    "(any tag or digest of it) or a prefix ending in \"/\"; empty: only "
                    "node_image's repository.")
    file_source_prefix: str = Field("/var/lib/facegrid/media/", pattern=r"^(/.*)?$",
        description="Host folder that file/folder camera sources must lie under (mounted "
                    "read-only); empty: file sources are refused.")
    device_resource_prefix: str = Field("smarter-devices/", pattern=r"^[-a-z0-9.]+/[-a-z0-9.]*$",
        description="Extended-resource prefix of the device plugin that hands one camera device "
                    "to a pod (resource <prefix><device>, e.g. smarter-devices/video0); no "
                    "privileged container.")
    device_group: int = Field(44, ge=0,
        description="Group id that owns the camera devices on the hosts (video); added to the "
                    "node pod.")
    privileged_devices: bool = Field(False,
        description="Without a device plugin: mount /dev/videoN from the host into a privileged "
                    "container.")
    default_token_ttl: str = Field("24h",
        description="Used when a CameraNode has no spec.token.ttl (the CRD defaults it to 24h).")
    watch_namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list,
        description="Namespaces to watch (comma-separated in the env); empty: all namespaces.")
    kubeconfig: Path | None = Field(None,
        description="Kubeconfig to use outside a cluster (default: in-cluster, then ~/.kube).")
    metrics_port: int = Field(9102, ge=0, le=65535,
        description="Port of the operator's /metrics (0: off).")
    liveness_port: int = Field(8080, ge=0, le=65535,
        description="Port of kopf's liveness endpoint /healthz (0: off).")
    status_interval_s: float = Field(15.0, gt=0,
        description="How often each CameraNode's status is refreshed from the server "
                    "(heartbeats).")
    rotation_check_s: float = Field(30.0, gt=0,
        description="How often each token is checked for rotation.")
    invalid_recheck_s: float = Field(300.0, gt=0,
        description="How often an Invalid CameraNode is checked again (Node changes re-check at "
                    "once).")
    http_timeout_s: float = Field(3.0, gt=0, le=60,
        description="Timeout of each call to the API server.")
    revoke_retries: int = Field(20, ge=0,
        description="Delete retries the revocation until the server confirms (the CameraNode "
                    "stays); after this many tries each further failure is logged as an error.")
    revoke_backoff_s: float = Field(3.0, gt=0,
        description="Seconds between revocation retries on delete.")

    @field_validator("watch_namespaces", "allowed_images", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

    @field_validator("default_token_ttl")
    @classmethod
    def _ttl(cls, v: str) -> str:
        tokens.parse_ttl(v)
        return v

    @property
    def nodes_server_url(self) -> str:
        return self.node_server_url or self.server_url
