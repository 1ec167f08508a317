"""Calls from the operator to the facegrid API server (admin token): node status and revocation."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from facegrid import contract

from . import metrics

log = logging.getLogger(__name__)


class ServerUnavailable(Exception):
    """The server could not be asked (down, timeout, 5xx, no admin token); try again later."""


class ServerRefused(Exception):
    """The server answered with a 4xx that retrying will not change."""


class ServerClient:
    def __init__(self, base_url: str, admin_token: Callable[[], str | None], *,
                 timeout: float = 3.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._token = admin_token
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout,
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, *, extra_headers: dict | None = None,
              **kw) -> httpx.Response:
        token = self._token()
        if not token:
            metrics.SERVER_ERRORS.labels(reason="no_admin_token").inc()
            raise ServerUnavailable("no admin token configured (FACEGRID_ADMIN_TOKEN_FILE)")
        try:
            headers = {"Authorization": f"Bearer {token}", **(extra_headers or {})}
            resp = self._http.request(method, path, headers=headers, **kw)
        except httpx.HTTPError as e:
            metrics.SERVER_ERRORS.labels(reason="unreachable").inc()
            raise ServerUnavailable(f"{method} {path}: {type(e).__name__}: {e}") from e
        if resp.status_code >= 500:
            metrics.SERVER_ERRORS.labels(reason="server_error").inc()
            raise ServerUnavailable(f"{method} {path}: HTTP {resp.status_code}")
        if resp.status_code in (401, 403):
            metrics.SERVER_ERRORS.labels(reason="unauthorized").inc()
            raise ServerUnavailable(f"{method} {path}: HTTP {resp.status_code} (admin token "
                                    "refused)")
        return resp

    def node_status(self, node_id: str) -> contract.NodeStatus | None:
        """What the server knows of the node; None if it never registered."""
        resp = self._call("GET", contract.node_path(node_id))
        if resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            metrics.SERVER_ERRORS.labels(reason="refused").inc()
            raise ServerRefused(f"GET node {node_id}: HTTP {resp.status_code} {resp.text[:200]}")
        try:
            return contract.NodeStatus.model_validate_json(resp.content)
        except ValueError as e:
            metrics.SERVER_ERRORS.labels(reason="bad_reply").inc()
            raise ServerUnavailable(f"GET node {node_id}: unreadable reply: {e}") from e

    def revoke_node(self, node_id: str, not_before: float, reason: str) -> None:
        """Revoke every token of ``node_id`` issued before ``not_before`` (epoch s)."""
        body = contract.NodeRevokeRequest(
            node_id=node_id, reason=reason[:200],
            not_before=datetime.fromtimestamp(not_before, UTC))
        resp = self._call("POST", contract.REVOKE_NODE_PATH,
                          content=body.model_dump_json().encode(),
                          extra_headers={"Content-Type": "application/json"})
        if resp.status_code >= 400:
            metrics.SERVER_ERRORS.labels(reason="refused").inc()
            raise ServerRefused(f"revoke node {node_id}: HTTP {resp.status_code} "
                                f"{resp.text[:200]}")

    def revoke(self, jti: str, node_id: str, expires_at: float | None, reason: str) -> None:
        body = contract.RevokeRequest(
            jti=jti, node_id=node_id, reason=reason[:200],
            expires_at=datetime.fromtimestamp(expires_at, UTC) if expires_at else None)
        resp = self._call("POST", contract.REVOKE_PATH, content=body.model_dump_json().encode(),
                          extra_headers={"Content-Type": "application/json"})
        if resp.status_code >= 400:
            metrics.SERVER_ERRORS.labels(reason="refused").inc()
            raise ServerRefused(f"revoke {jti}: HTTP {resp.status_code} {resp.text[:200]}")
