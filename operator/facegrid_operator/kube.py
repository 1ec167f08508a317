"""A small JSON client for the Kubernetes API (plain dicts in and out).

The operator's children are plain dicts built by :mod:`facegrid_operator.builders`,
so this client speaks JSON over HTTPS with httpx: server-side apply for the
objects the operator owns, merge patches for status, and clear errors
(:class:`KubeError` with the HTTP status and the API server's message).
The same :class:`ClusterAccess` also logs kopf in (see ``handlers/startup.py``).
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from . import metrics
from .spec import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)

FIELD_MANAGER = "facegrid-operator"
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeError(Exception):
    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(f"HTTP {status} {reason}: {message}".strip())
        self.status = status
        self.message = message
        self.reason = reason

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


@dataclass(frozen=True)
class ClusterAccess:
    """Where the API server is and how to authenticate (client cert or bearer token)."""

    server: str
    ca_path: str | None = None
    cert_path: str | None = None
    key_path: str | None = None
    token: str | None = None
    token_path: str | None = None
    insecure: bool = False
    namespace: str | None = None

    @classmethod
    def in_cluster(cls) -> ClusterAccess:
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host or not (SA_DIR / "token").exists():
            raise RuntimeError("not running in a cluster (no service account token)")
        if ":" in host:
            host = f"[{host}]"
        ns_file = SA_DIR / "namespace"
        return cls(server=f"https://{host}:{port}", ca_path=str(SA_DIR / "ca.crt"),
                   token_path=str(SA_DIR / "token"),
                   namespace=ns_file.read_text().strip() if ns_file.exists() else None)

    @classmethod
    def from_kubeconfig(cls, path: Path | None = None) -> ClusterAccess:
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(path) if path else None,
                                client_configuration=cfg, persist_config=False)
        header = (cfg.get_api_key_with_prefix("BearerToken")
                  or cfg.get_api_key_with_prefix("authorization") or "")
        token = header.split(" ", 1)[1] if " " in header else (header or None)
        return cls(server=cfg.host, ca_path=cfg.ssl_ca_cert, cert_path=cfg.cert_file,
                   key_path=cfg.key_file, token=token, insecure=not cfg.verify_ssl)

    @classmethod
    def discover(cls, kubeconfig: Path | None = None) -> ClusterAccess:
        """The given kubeconfig, else the in-cluster service account, else ~/.kube/config."""
        if kubeconfig is not None:
            return cls.from_kubeconfig(kubeconfig)
        try:
            return cls.in_cluster()
        except RuntimeError:
            return cls.from_kubeconfig(None)

    def bearer(self) -> str | None:
        if self.token_path:
            return Path(self.token_path).read_text().strip()
        return self.token


class Kube:
    """Thread-safe; one per operator process."""

    def __init__(self, access: ClusterAccess, *, timeout: float = 10.0) -> None:
        self.access = access
        if access.insecure:
            verify: ssl.SSLContext | bool = False
        else:
            verify = ssl.create_default_context(cafile=access.ca_path)
            if access.cert_path:
                verify.load_cert_chain(access.cert_path, access.key_path)
        self._http = httpx.Client(base_url=access.server, verify=verify, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    # -- plumbing ------------------------------------------------------------
    def request(self, method: str, path: str, *, body: Any = None, params: dict | None = None,
                content_type: str = "application/json") -> dict:
        headers = {"Accept": "application/json"}
        token = self.access.bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        content = None
        if body is not None:
            headers["Content-Type"] = content_type
            content = json.dumps(body).encode()
        metrics.KUBE_REQUESTS.labels(verb=method, resource=resource_of(path)).inc()
        try:
            resp = self._http.request(method, path, params=params, headers=headers,
                                      content=content)
        except httpx.HTTPError as e:
            raise KubeError(0, f"{method} {path}: {e}", "Unreachable") from e
        if resp.status_code >= 400:
            try:
                data = resp.json()
                message, reason = data.get("message", resp.text), data.get("reason", "")
            except ValueError:
                message, reason = resp.text, ""
            raise KubeError(resp.status_code, message, reason)
        return resp.json() if resp.content else {}

    def get(self, path: str, params: dict | None = None) -> dict:
        return self.request("GET", path, params=params)

    def get_or_none(self, path: str) -> dict | None:
        try:
            return self.get(path)
        except KubeError as e:
            if e.not_found:
                return None
            raise

    def create(self, collection: str, obj: dict) -> dict:
        return self.request("POST", collection, body=obj)

    def apply(self, path: str, obj: dict) -> dict:
        """Server-side apply as the operator's field manager (idempotent create-or-update)."""
        return self.request("PATCH", path, body=obj,
                            params={"fieldManager": FIELD_MANAGER, "force": "true"},
                            content_type="application/apply-patch+yaml")

    def merge_patch(self, path: str, patch: dict) -> dict:
        return self.request("PATCH", path, body=patch,
                            content_type="application/merge-patch+json")

    def delete(self, path: str) -> None:
        try:
            self.request("DELETE", path)
        except KubeError as e:
            if not e.not_found:
                raise

    def list(self, path: str, label_selector: str | None = None) -> list[dict]:
        params = {"labelSelector": label_selector} if label_selector else None
        return list(self.get(path, params).get("items") or [])


# -- paths -------------------------------------------------------------------

def resource_of(path: str) -> str:
    """The resource (plural, plus a subresource) an API path names, e.g.
    ``cameranodes/status`` (a bounded metric label)."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if "namespaces" in parts and len(parts) > parts.index("namespaces") + 2:
        parts = parts[parts.index("namespaces") + 2:]
    else:  # cluster-scoped: /api/v1/R[/name] or /apis/G/V/R[/name]
        parts = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if not parts:
        return "unknown"
    return parts[0] + (f"/{parts[2]}" if len(parts) > 2 else "")


def _q(s: str) -> str:
    return quote(s, safe="")


def secrets_path(ns: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{_q(ns)}/secrets"
    return f"{base}/{_q(name)}" if name else base


def configmaps_path(ns: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{_q(ns)}/configmaps"
    return f"{base}/{_q(name)}" if name else base


def deployments_path(ns: str, name: str | None = None) -> str:
    base = f"/apis/apps/v1/namespaces/{_q(ns)}/deployments"
    return f"{base}/{_q(name)}" if name else base


def pods_path(ns: str) -> str:
    return f"/api/v1/namespaces/{_q(ns)}/pods"


def nodes_path(name: str | None = None) -> str:
    return f"/api/v1/nodes/{_q(name)}" if name else "/api/v1/nodes"


def cameranode_path(ns: str | None, name: str | None = None, *, status: bool = False) -> str:
    if ns is None:
        return f"/apis/{GROUP}/{VERSION}/{PLURAL}"
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{_q(ns)}/{PLURAL}"
    if name is None:
        return base
    return f"{base}/{_q(name)}" + ("/status" if status else "")
