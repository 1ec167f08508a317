"""Wiring: which kopf cause runs which handler, kopf's settings, and the run loop."""

from __future__ import annotations

import logging
import threading

import kopf

from .builders import MANAGED_BY
from .context import OperatorContext
from .handlers import camera, delete, lifecycle, nodes, status, token
from .settings import OperatorSettings
from .spec import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)
PREFIX = "facegrid.io"
CAMERAS = (GROUP, VERSION, PLURAL)


def build_registry(settings: OperatorSettings) -> kopf.OperatorRegistry:
    """A kopf registry with every handler (the timers' intervals come from ``settings``)."""
    r = kopf.OperatorRegistry()
    kopf.on.login(registry=r, id="login")(lifecycle.login)
    kopf.on.cleanup(registry=r, id="cleanup")(lifecycle.cleanup)

    # In-memory indexes (kopf keeps them from its watches): no API call per host check
    # or status write.  Their ids are the handlers' keyword names.
    kopf.index("", "v1", "nodes", registry=r, id="node_labels")(nodes.node_labels)
    kopf.index("", "v1", "pods", registry=r, id="camera_pods",
               labels=status.POD_LABELS)(status.camera_pods)

    # One handler for the whole spec: one progress write and one status write per change.
    kopf.on.resume(*CAMERAS, registry=r, id="reconcile")(camera.reconcile_camera)
    kopf.on.create(*CAMERAS, registry=r, id="reconcile")(camera.reconcile_camera)
    kopf.on.update(*CAMERAS, registry=r, id="reconcile", field="spec")(camera.reconcile_camera)
    kopf.on.delete(*CAMERAS, registry=r, id="revoke")(delete.revoke)

    kopf.timer(*CAMERAS, registry=r, id="token-rotation", interval=settings.rotation_check_s,
               initial_delay=settings.rotation_check_s, sharp=True)(token.rotate)
    kopf.timer(*CAMERAS, registry=r, id="status", interval=settings.status_interval_s,
               initial_delay=min(settings.status_interval_s, 5.0))(status.refresh)
    kopf.on.event("", "v1", "pods", registry=r, id="node-pods",
                  labels=status.POD_LABELS)(status.pod_event)
    kopf.on.event("", "v1", "nodes", registry=r, id="nodes")(nodes.node_event)
    return r


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    ks = kopf.OperatorSettings()
    # Progress and the last-handled spec live in facegrid.io annotations, so the
    # CRD's structural status schema stays ours alone.
    ks.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    ks.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration")
    ks.persistence.finalizer = f"{PREFIX}/operator"
    # One replica (Deployment strategy Recreate): no peering objects to create or read.
    ks.peering.standalone = True
    # Resources are known up front (the chart installs the CRD first): no CRD or
    # Namespace watching, so no RBAC for them.
    ks.scanning.disabled = True
    ks.posting.level = logging.WARNING  # Events for problems only: fewer API writes
    ks.execution.max_workers = 16
    ks.networking.request_timeout = 60
    # A CameraNode deleted while one of its timers is inside a call (a server or API
    # request): kopf keeps the finalizer until the timer returns, and by default looks
    # again only 60 s later, so the object lingered a minute after its delete handler
    # had finished.  Look every second instead: the finalizer goes right after the call.
    ks.background.cancellation_polling = 1.0
    return ks


def run(settings: OperatorSettings, *, stop_flag: threading.Event | None = None,
        ready_flag: threading.Event | None = None) -> None:
    """Connect, then run the operator until stopped (liveness on settings.liveness_port)."""
    ctx = OperatorContext.connect(settings)
    namespaces = settings.watch_namespaces
    liveness = (f"http://0.0.0.0:{settings.liveness_port}/healthz"
                if settings.liveness_port else None)
    log.info("watching CameraNodes in %s; node pods labelled managed-by=%s",
             ", ".join(namespaces) if namespaces else "all namespaces", MANAGED_BY)
    kopf.run(
        registry=build_registry(settings),
        settings=kopf_settings(settings),
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=True,
        liveness_endpoint=liveness,
        memo=ctx,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
