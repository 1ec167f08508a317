"""Redis ACL users per role: the one definition of who may do what on Redis.

* ``node``: ``XADD`` to the event stream and ``SUBSCRIBE`` to its own results
  channel, nothing else: a stolen camera cannot read the stream (other nodes'
  tokens and embeddings), read or delete anything, or ``FLUSHALL``.
* ``worker`` and ``server``: every command on facegrid's own keys and channels
  except the dangerous ones (``FLUSHALL``, ``CONFIG``, ``KEYS``, ``ACL``,
  ``DEBUG``, ``SHUTDOWN``…); ``INFO`` stays (the worker reads Redis' memory).
* ``operator``: ``ACL SETUSER``/``DELUSER``/``GETUSER`` and ``PING`` only, no key
  and no channel: it makes one ``node`` user per CameraNode (:func:`node_user`) and
  removes it with the CameraNode.  A user that may ``ACL SETUSER`` can give itself
  anything, so this one is as trusted as Redis' admin (the operator holds the token
  signing key anyway); what the restriction buys is that it reads nothing by mistake.
* ``keda``: what KEDA's ``redis-streams`` scaler (``lagCount``) sends — ``INFO``
  (Redis version), ``XINFO GROUPS`` and ``XLEN`` on the event stream — plus the
  connection handshake (``HELLO``, ``PING``; go-redis ignores a refused
  ``CLIENT SETINFO``, which Redis < 7.2 does not know); it reads no entry.

:func:`setuser_args` gives the arguments of ``ACL SETUSER`` (``facegrid up``
sends them); :func:`acl_line` the same rule as an ``aclfile``/``redis.conf``
``user`` line (compose and the chart render the same rules, checked by a test).
"""

from __future__ import annotations

from facegrid import keys

ROLES = ("node", "worker", "server", "operator", "keda")

_SERVICE_RULES = ("~facegrid:*", "&facegrid:*", "+@all", "-@dangerous", "+info")


def rules(role: str, node_id: str | None = None) -> tuple[str, ...]:
    """The ACL rules of ``role`` (a node's results channel is its own when ``node_id``
    is given, else any node's: one shared node user)."""
    if role == "node":
        channel = keys.results_channel(node_id) if node_id else keys.results_channel("*")
        return (f"~{keys.EVENTS_STREAM}", f"&{channel}", "+xadd", "+subscribe",
                "+unsubscribe", "+ping")
    if role in ("worker", "server"):
        return _SERVICE_RULES
    if role == "operator":
        return ("+acl|setuser", "+acl|deluser", "+acl|getuser", "+ping")
    if role == "keda":
        return (f"~{keys.EVENTS_STREAM}", "+info", "+xinfo|groups", "+xlen", "+hello", "+ping")
    raise ValueError(f"unknown Redis role {role!r} (one of {', '.join(ROLES)})")


def node_user(node_id: str) -> str:
    """The Redis user name of one node (``facegrid up`` and the operator)."""
    return f"facegrid-node-{node_id}"


def setuser_args(user: str, password: str, role: str, node_id: str | None = None) -> list[str]:
    """``ACL SETUSER`` arguments: a fresh user (``reset``) with one password."""
    return [user, "reset", "on", f">{password}", *rules(role, node_id)]


def acl_line(user: str, password: str, role: str, node_id: str | None = None) -> str:
    return " ".join(["user", *setuser_args(user, password, role, node_id)])


def url_with_user(url: str, user: str, password: str) -> str:
    """``redis://[:old@]host…`` with ``user:password@`` instead."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"{url!r} is not a redis:// URL")
    hostpart = rest.rsplit("@", 1)[-1]
    return f"{scheme}://{user}:{password}@{hostpart}"
