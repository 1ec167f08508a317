"""Wiring: a kopf registry with every handler, kopf's settings, and the run loop."""

from __future__ import annotations

import importlib
import logging
import threading

import kopf

from .context import OperatorContext
from .handlers import MODULES
from .settings import OperatorSettings

log = logging.getLogger(__name__)
PREFIX = "facegrid.io"


def build_registry(ctx: OperatorContext) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    for name in MODULES:
        importlib.import_module(f"{__package__}.handlers.{name}").register(registry, ctx)
    return registry


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
    return ks


def run(settings: OperatorSettings, *, stop_flag: threading.Event | None = None) -> None:
    """Run the operator until stopped (liveness probe on settings.liveness_port)."""
    ctx = OperatorContext(settings)
    namespaces = settings.watch_namespaces
    liveness = (f"http://0.0.0.0:{settings.liveness_port}/healthz"
                if settings.liveness_port else None)
    kopf.run(
        registry=build_registry(ctx),
        settings=kopf_settings(settings),
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=True,
        liveness_endpoint=liveness,
        stop_flag=stop_flag,
    )
