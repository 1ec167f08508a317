"""The node Deployment: checked spec and host, then applied (create, update, resume)."""

from __future__ import annotations

import time

import kopf

from .. import metrics, reconcile
from ..context import OperatorContext
from ..kube import KubeError
from ..spec import GROUP, PLURAL, VERSION, InvalidSpec
from . import plain


def deploy(ctx: OperatorContext, body) -> str:
    body = plain(body)
    t0 = time.perf_counter()
    try:
        phase = reconcile.validate_and_deploy(ctx, body)
    except InvalidSpec as e:
        metrics.RECONCILES.labels(stage="deployment", reason="invalid").inc()
        # No retry storm: a spec change, a Node change or the slow re-check runs it again.
        raise kopf.PermanentError(f"{e.reason}: {e.detail}") from e
    except KubeError as e:
        metrics.RECONCILES.labels(stage="deployment", reason="api_error").inc()
        raise reconcile.kopf_error(e, "node Deployment") from e
    metrics.RECONCILES.labels(stage="deployment", reason="ok").inc()
    metrics.RECONCILE_SECONDS.labels(stage="deployment").observe(time.perf_counter() - t0)
    return phase


def register(registry: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry, id="deployment")
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, id="deployment")
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry, id="deployment", field="spec")
    def deployment(body, **_) -> None:
        deploy(ctx, body)
