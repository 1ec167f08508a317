"""The node's JWT: issued on create/resume, re-issued on a TTL change, rotated by a timer.

The old token stays valid until it expires (the worker accepts both), and the
node re-reads its mounted Secret file, so a rotation restarts nothing.
"""

from __future__ import annotations

import time

import kopf

from .. import metrics, reconcile
from ..conditions import Cond
from ..context import OperatorContext
from ..kube import KubeError
from ..spec import GROUP, PLURAL, VERSION, InvalidSpec
from . import plain


def _ensure(ctx: OperatorContext, body) -> None:
    body = plain(body)
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    t0 = time.perf_counter()
    try:
        cam = reconcile.read_spec(ctx, name, body.get("spec") or {})
    except InvalidSpec:
        return  # the deployment step reports what is wrong
    try:
        claims = reconcile.ensure_token(ctx, body, cam)
        cond, extra = reconcile.token_conditions(claims)
        reconcile.sync_status(ctx, ns, name, updates={Cond.TOKEN_READY: cond}, extra=extra)
    except KubeError as e:
        metrics.RECONCILES.labels(stage="token", reason="api_error").inc()
        raise reconcile.kopf_error(e, "token Secret") from e
    metrics.RECONCILES.labels(stage="token", reason="ok").inc()
    metrics.RECONCILE_SECONDS.labels(stage="token").observe(time.perf_counter() - t0)


def register(registry: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry, id="token")
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, id="token")
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry, id="token", field="spec.token")
    def token(body, **_) -> None:
        _ensure(ctx, body)

    @kopf.timer(GROUP, VERSION, PLURAL, registry=registry, id="token-rotation",
                interval=ctx.settings.rotation_check_s, sharp=True)
    def rotation(body, **_) -> None:
        if body.get("metadata", {}).get("deletionTimestamp"):
            return
        _ensure(ctx, body)
