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

from . import metrics


class RevokedSet:
    def __init__(self) -> None:
        self._jtis: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def __contains__(self, jti: str) -> bool:
        return jti in self._jtis

    def __len__(self) -> int:
        return len(self._jtis)

    def add(self, jtis: Iterable[str | bytes]) -> None:
        new = {j.decode() if isinstance(j, bytes) else j for j in jtis}
        with self._lock:
            self._jtis = self._jtis | new
        metrics.REVOKED_KNOWN.set(len(self._jtis))

    def replace(self, jtis: Iterable[str | bytes]) -> None:
        """A full refresh (the database and Redis set together)."""
        new = frozenset(j.decode() if isinstance(j, bytes) else j for j in jtis)
        with self._lock:
            self._jtis = new
        metrics.REVOKED_KNOWN.set(len(new))
