"""Everything the handlers share in one operator process, built before kopf starts.

:meth:`OperatorContext.connect` connects to the cluster and the server and
loads (or creates) the signing key; the ready context is handed to kopf as its
``memo``, so every handler gets it as the ``memo`` keyword.  kopf copies the memo
for each object it serves; :meth:`__copy__` returns the same context, so all
objects share one set of clients and caches.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import metrics
from .conditions import Phase
from .kube import ClusterAccess, Kube
from .redis_users import RedisUsers
from .server_api import ServerClient
from .settings import OperatorSettings
from .signing import ensure_signing_key

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name) of a CameraNode


@dataclass
class CameraStatus:
    """The status this process last wrote for one CameraNode (the operator is its only
    writer), so the next write needs no read."""

    uid: str | None
    status: dict
    #: spec.paused when it was written (pod events carry no CameraNode spec).
    paused: bool = False


@dataclass
class OperatorContext:
    settings: OperatorSettings
    access: ClusterAccess
    kube: Kube
    server: ServerClient
    key: Ed25519PrivateKey
    #: Per-CameraNode Redis users (None: settings.redis_admin_url unset).
    redis_users: RedisUsers | None = None
    #: CameraNodes whose Redis user this process has set once (later: only checked).
    redis_users_set: set[Key] = field(default_factory=set)
    #: (namespace, name) -> spec generation whose children were last applied.
    reconciled: dict[Key, int] = field(default_factory=dict)
    #: (namespace, name) -> spec hash of the node Deployment this process last applied.
    applied: dict[Key, str] = field(default_factory=dict)
    #: (namespace, name) -> the status last written.
    statuses: dict[Key, CameraStatus] = field(default_factory=dict)
    #: (namespace, name) -> monotonic time of the last slow re-check of an Invalid camera.
    rechecked: dict[Key, float] = field(default_factory=dict)
    #: CameraNodes with a status write from pod events coming (folds pod changes); set
    #: the event to write at once.
    pod_writes_due: dict[Key, asyncio.Event] = field(default_factory=dict)
    pod_write_tasks: set[asyncio.Task] = field(default_factory=set)
    #: CameraNodes whose delete handler has started: no more status writes for them.
    deleting: set[Key] = field(default_factory=set)
    #: Node name -> labels last seen (Node events re-check Invalid cameras on changes).
    seen_node_labels: dict[str, dict] = field(default_factory=dict)
    #: (namespace, name) -> phase last written (for the per-phase gauge).
    phases: dict[Key, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _camera_locks: defaultdict[Key, threading.Lock] = field(
        default_factory=lambda: defaultdict(threading.Lock))

    @classmethod
    def connect(cls, settings: OperatorSettings) -> OperatorContext:
        """Connect to the cluster and the server; load or create the signing key."""
        access = ClusterAccess.discover(settings.kubeconfig)
        kube = Kube(access)
        server = ServerClient(settings.server_url, settings.admin_secret,
                              timeout=settings.http_timeout_s)
        try:
            key = ensure_signing_key(kube, settings)
        except BaseException:
            kube.close()
            server.close()
            raise
        log.info("operator connected to %s; signing key %s/%s ready", access.server,
                 settings.namespace, settings.signing_key_secret)
        users = None
        if settings.redis_admin_url:
            users = RedisUsers(settings.redis_admin_url, settings.node_redis_url,
                               timeout=settings.http_timeout_s)
            log.info("each CameraNode gets its own Redis user on %s",
                     settings.node_redis_url.rsplit("@", 1)[-1])
        return cls(settings=settings, access=access, kube=kube, server=server, key=key,
                   redis_users=users)

    def __copy__(self) -> OperatorContext:
        return self  # one shared context: kopf's per-object memo copies must not split it

    def close(self) -> None:
        self.kube.close()
        self.server.close()
        if self.redis_users is not None:
            self.redis_users.close()

    def camera_lock(self, ns: str, name: str) -> threading.Lock:
        """Serialises the status writes of one CameraNode."""
        with self.lock:
            return self._camera_locks[(ns, name)]

    def forget(self, ns: str, name: str) -> None:
        """Drop everything remembered about a deleted CameraNode."""
        key = (ns, name)
        for d in (self.reconciled, self.applied, self.statuses, self.rechecked):
            d.pop(key, None)
        self.deleting.discard(key)
        self.redis_users_set.discard(key)
        with self.lock:
            self._camera_locks.pop(key, None)
        self.set_phase(ns, name, None)

    def set_phase(self, ns: str, name: str, phase: str | None) -> None:
        with self.lock:
            if phase is None:
                self.phases.pop((ns, name), None)
            else:
                self.phases[(ns, name)] = phase
            counts: dict[str, int] = {}
            for p in self.phases.values():
                counts[p] = counts.get(p, 0) + 1
        for p in Phase:
            metrics.CAMERAS.labels(state=p.value).set(counts.get(p.value, 0))
