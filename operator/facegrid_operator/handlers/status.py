"""CameraNode status: pod events (fast), a timer pulling heartbeats from the server, and a
slow re-check of Invalid cameras."""

from __future__ import annotations

import contextlib
import time

import kopf

from .. import builders, reconcile
from ..conditions import Cond, Phase
from ..context import OperatorContext
from ..kube import KubeError
from ..spec import GROUP, PLURAL, VERSION
from .deployment import deploy


def register(registry: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    last_recheck: dict[tuple[str, str], float] = {}

    @kopf.timer(GROUP, VERSION, PLURAL, registry=registry, id="status",
                interval=ctx.settings.status_interval_s, initial_delay=1)
    def status(body, namespace, name, **_) -> None:
        if body.get("metadata", {}).get("deletionTimestamp"):
            return
        phase = (body.get("status") or {}).get("phase")
        if phase == Phase.INVALID:
            now = time.monotonic()
            if now - last_recheck.get((namespace, name), 0) >= ctx.settings.invalid_recheck_s:
                last_recheck[(namespace, name)] = now
                with contextlib.suppress(kopf.PermanentError):  # still invalid: status says why
                    deploy(ctx, body)
            return
        generation = body.get("metadata", {}).get("generation")
        observed = (body.get("status") or {}).get("observedGeneration")
        if phase and observed is not None and generation != observed \
                and (namespace, name) not in ctx.reconciled:
            # A spec change this process never handled (e.g. made while the operator was
            # restarting between kopf's progress and diff-base writes): apply it now.
            with contextlib.suppress(kopf.PermanentError):
                deploy(ctx, body)
        cond, extra = reconcile.heartbeat_view(ctx, name)
        try:
            reconcile.sync_status(ctx, namespace, name, updates={Cond.HEARTBEATING: cond},
                                  extra=extra)
        except KubeError as e:
            raise reconcile.kopf_error(e, "status") from e

    @kopf.on.event("", "v1", "pods", registry=registry, id="node-pods",
                   labels={"app.kubernetes.io/managed-by": builders.MANAGED_BY,
                           builders.LABEL_CAMERA: kopf.PRESENT})
    def pod_event(body, namespace, **_) -> None:
        camera = body["metadata"]["labels"][builders.LABEL_CAMERA]
        with contextlib.suppress(KubeError):  # the next event or the status timer writes it
            reconcile.sync_status(ctx, namespace, camera)
