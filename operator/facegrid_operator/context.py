"""Everything the handlers share in one operator process."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import metrics
from .kube import ClusterAccess, Kube
from .server_api import ServerClient
from .settings import OperatorSettings
from .signing import ensure_signing_key

log = logging.getLogger(__name__)


@dataclass
class OperatorContext:
    settings: OperatorSettings
    access: ClusterAccess | None = None
    kube: Kube | None = None
    server: ServerClient | None = None
    key: Ed25519PrivateKey | None = None
    #: (namespace, name) -> spec generation whose children were last applied.
    reconciled: dict[tuple[str, str], int] = field(default_factory=dict)
    #: (namespace, name) -> phase last written (for the per-phase gauge).
    phases: dict[tuple[str, str], str] = field(default_factory=dict)
    #: Node name -> labels last seen (Node events re-check Invalid cameras on changes).
    node_labels: dict[str, dict] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        """Connect to the cluster and the server; load or create the signing key."""
        self.stop()
        s = self.settings
        self.access = ClusterAccess.discover(s.kubeconfig)
        self.kube = Kube(self.access)
        self.server = ServerClient(s.server_url, s.admin_secret, timeout=s.http_timeout_s)
        self.key = ensure_signing_key(self.kube, s)
        log.info("operator connected to %s; signing key %s/%s ready", self.access.server,
                 s.namespace, s.signing_key_secret)

    def stop(self) -> None:
        if self.kube is not None:
            self.kube.close()
        if self.server is not None:
            self.server.close()
        self.kube = self.server = None

    def set_phase(self, ns: str, name: str, phase: str | None) -> None:
        with self.lock:
            if phase is None:
                self.phases.pop((ns, name), None)
            else:
                self.phases[(ns, name)] = phase
            counts: dict[str, int] = {}
            for p in self.phases.values():
                counts[p] = counts.get(p, 0) + 1
        from .conditions import Phase

        for p in Phase:
            metrics.CAMERAS.labels(state=p.value).set(counts.get(p.value, 0))
