"""Revoked token ids as the worker knows them (for ``TokenVerifier(is_revoked=...)``).

The database table ``revoked_tokens`` is the source of truth; ``keys.REVOKED_SET``
mirrors it in Redis and ``keys.REVOKED_CHANNEL`` announces each new jti.  The
worker loads both at start and on every full refresh, and adds jtis announced
on the channel between refreshes (:class:`facegrid_services.worker.consumer.Worker`
polls the channel before each batch).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from facegrid import keys

from . import metrics


class RevokedSet:
    def __init__(self) -> None:
        self._jtis: frozenset[str] = frozenset()
        #: node id -> every token of that node issued before this epoch second is revoked.
        self._nodes: dict[str, float] = {}
        self._lock = threading.Lock()

    def __contains__(self, jti: str) -> bool:
        return jti in self._jtis

    def node_not_before(self, node_id: str) -> float | None:
        return self._nodes.get(node_id)

    def replace_nodes(self, nodes: dict[str, float]) -> None:
        self._nodes = dict(nodes)

    def add_node(self, node_id: str, not_before: float) -> None:
        with self._lock:
            nodes = dict(self._nodes)
            nodes[node_id] = max(not_before, nodes.get(node_id, 0.0))
            self._nodes = nodes

    def __len__(self) -> int:
        return len(self._jtis)

    def add(self, jtis: Iterable[str | bytes]) -> None:
        """Add revoked jtis (a ``node:<id>:<epoch>`` announcement revokes a whole node)."""
        new = set()
        for j in jtis:
            text = j.decode() if isinstance(j, bytes) else j
            node = keys.parse_node_revocation(text)
            if node is not None:
                self.add_node(*node)
            else:
                new.add(text)
        with self._lock:
            self._jtis = self._jtis | new
        metrics.REVOKED_KNOWN.set(len(self._jtis))

    def replace(self, jtis: Iterable[str | bytes]) -> None:
        """A full refresh (the database and Redis set together)."""
        new = frozenset(j.decode() if isinstance(j, bytes) else j for j in jtis)
        with self._lock:
            self._jtis = new
        metrics.REVOKED_KNOWN.set(len(new))
