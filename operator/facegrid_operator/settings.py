"""OperatorSettings: the one configuration of ``facegrid operator`` (env prefix FACEGRID_)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from facegrid import __version__, tokens


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEGRID_", extra="ignore")

    #: API server the operator calls (node status, token revocation).
    server_url: str = Field("http://facegrid-server:8000", pattern=r"^https?://\S+$")
    #: Server URL given to the nodes (default: server_url).
    node_server_url: str | None = Field(None, pattern=r"^https?://\S+$")
    #: Redis URL given to the nodes unless a CameraNode overrides it.
    node_redis_url: str = Field("redis://facegrid-redis:6379/0",
                                pattern=r"^(redis|rediss|unix)://\S+$")
    #: ``secret-name:key`` holding the nodes' Redis URL (with password); wins over node_redis_url.
    node_redis_url_secret: str | None = Field(
        None, pattern=r"^[a-z0-9][-a-z0-9.]*:[-._a-zA-Z0-9]+$")
    #: Admin token of the API server (for status and revocation).
    admin_token: SecretStr | None = None
    #: File holding the admin token; wins over FACEGRID_ADMIN_TOKEN.
    admin_token_file: Path | None = None
    #: Namespace of the signing-key Secret and the public-key ConfigMap (the operator's own).
    namespace: str = "facegrid"
    #: Secret holding the Ed25519 signing key (created if missing).
    signing_key_secret: str = "facegrid-signing-key"
    #: ConfigMap publishing the public key for server and worker.
    public_key_configmap: str = "facegrid-signing-pub"
    #: `aud` claim of the node tokens the operator issues.
    token_audience: str = tokens.DEFAULT_AUDIENCE
    #: Image of the node Deployments unless a CameraNode names one.
    node_image: str = f"facegrid/node:{__version__}"
    #: imagePullPolicy of the node containers.
    node_image_pull_policy: str = Field("IfNotPresent", pattern="^(Always|IfNotPresent|Never)$")
    #: Images a CameraNode's spec.image may name (comma-separated): a repository
    #: (any tag or digest of it) or a prefix ending in "/"; empty: only node_image's repository.
    allowed_images: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Host folder that file/folder camera sources must lie under (mounted read-only);
    #: empty: file sources are refused.
    file_source_prefix: str = Field("/var/lib/facegrid/media/", pattern=r"^(/.*)?$")
    #: Extended-resource prefix of the device plugin that hands one camera device to a
    #: pod (resource <prefix><device>, e.g. smarter-devices/video0); no privileged container.
    device_resource_prefix: str = Field("smarter-devices/", pattern=r"^[-a-z0-9.]+/[-a-z0-9.]*$")
    #: Group id that owns the camera devices on the hosts (video); added to the node pod.
    device_group: int = Field(44, ge=0)
    #: Without a device plugin: mount /dev/videoN from the host into a privileged container.
    privileged_devices: bool = False
    #: Used when a CameraNode has no spec.token.ttl (the CRD defaults it to 24h).
    default_token_ttl: str = "24h"
    #: Namespaces to watch (comma-separated in the env); empty: all namespaces.
    watch_namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Kubeconfig to use outside a cluster (default: in-cluster, then ~/.kube).
    kubeconfig: Path | None = None
    #: Port of the operator's /metrics (0: off).
    metrics_port: int = Field(9102, ge=0, le=65535)
    #: Port of kopf's liveness endpoint /healthz (0: off).
    liveness_port: int = Field(8080, ge=0, le=65535)
    #: How often each CameraNode's status is refreshed from the server (heartbeats).
    status_interval_s: float = Field(15.0, gt=0)
    #: How often each token is checked for rotation.
    rotation_check_s: float = Field(30.0, gt=0)
    #: How often an Invalid CameraNode is checked again (Node changes re-check at once).
    invalid_recheck_s: float = Field(300.0, gt=0)
    #: Timeout of each call to the API server.
    http_timeout_s: float = Field(3.0, gt=0, le=60)
    #: Delete retries the revocation until the server confirms (the CameraNode stays);
    #: after this many tries each further failure is logged as an error.
    revoke_retries: int = Field(20, ge=0)
    #: Seconds between revocation retries on delete.
    revoke_backoff_s: float = Field(3.0, gt=0)
    #: DEBUG, INFO, WARNING or ERROR.
    log_level: str = "INFO"

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

    def admin_secret(self) -> str | None:
        """The admin token (the file wins, so a mounted Secret can rotate), or None."""
        if self.admin_token_file is not None:
            return self.admin_token_file.read_text().strip() or None
        if self.admin_token is not None:
            return self.admin_token.get_secret_value().strip() or None
        return None

    @property
    def nodes_server_url(self) -> str:
        return self.node_server_url or self.server_url
