"""One Redis ACL user per CameraNode, with the ``node`` rules of :mod:`facegrid.acl`.

A camera's user may ``XADD`` to the event stream and ``SUBSCRIBE`` to its own
results channel, nothing else, so a stolen camera cannot read other cameras'
results, tokens or embeddings.  The password lives in the CameraNode's Secret
``<name>-redis`` (owned by the CameraNode, so it goes with it); the user is
made through the operator's own Redis user (``ACL SETUSER``), checked again on
every rotation timer tick (users made with ``ACL SETUSER`` are lost when Redis
restarts: the next tick makes it again, and the node's publisher buffers and
retries meanwhile) and deleted (``ACL DELUSER``, which also closes the node's
connections) when the CameraNode is deleted.
"""

from __future__ import annotations

import hashlib
import logging

import redis

from facegrid import acl
from facegrid.errors import FacegridError

log = logging.getLogger(__name__)


class RedisUnavailable(FacegridError):
    """Redis could not be reached or refused the ACL command (the caller retries)."""


class RedisUsers:
    """Node users on one Redis, through an admin connection (the ``operator`` role)."""

    def __init__(self, admin_url: str, node_url: str, *, timeout: float = 3.0) -> None:
        self.node_url = node_url
        self._client = redis.Redis.from_url(admin_url, socket_timeout=timeout,
                                            socket_connect_timeout=timeout)

    def url_for(self, node_id: str, password: str) -> str:
        """The URL the node connects with: its own user on node_url's host."""
        return acl.url_with_user(self.node_url, acl.node_user(node_id), password)

    def ensure(self, node_id: str, password: str, *, force: bool = False) -> bool:
        """Make the node's user with this password unless it is there already (``force``:
        set it anyway, e.g. once per operator process, so changed rules apply).  Returns
        whether ``ACL SETUSER`` was sent.  Raises redis.RedisError."""
        user = acl.node_user(node_id)
        if not force:
            info = self._client.acl_getuser(user)
            digest = hashlib.sha256(password.encode()).hexdigest()
            if info and "on" in _texts(info.get("flags")) and \
                    digest in _texts(info.get("passwords")):
                return False
        self._client.execute_command("ACL", "SETUSER",
                                     *acl.setuser_args(user, password, "node", node_id))
        log.info("Redis user %s set (XADD events, SUBSCRIBE its own results)", user)
        return True

    def remove(self, node_id: str) -> bool:
        """Delete the node's user (and so its connections); False if there was none."""
        user = acl.node_user(node_id)
        n = int(self._client.execute_command("ACL", "DELUSER", user))
        if n:
            log.info("Redis user %s deleted", user)
        return bool(n)

    def close(self) -> None:
        self._client.close()


def _texts(values) -> set[str]:
    return {v.decode() if isinstance(v, bytes) else str(v) for v in values or ()}
