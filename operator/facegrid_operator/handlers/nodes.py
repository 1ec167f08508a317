"""Kubernetes Node changes: re-check CameraNodes that were Invalid for want of a host."""

from __future__ import annotations

import logging

import kopf

from ..conditions import Cond, Phase, get
from ..context import OperatorContext
from ..kube import KubeError, cameranode_path
from .deployment import deploy

log = logging.getLogger(__name__)


def recheck_invalid(ctx: OperatorContext) -> int:
    """Run the deployment step again for every camera whose host was not found."""
    assert ctx.kube is not None
    namespaces = ctx.settings.watch_namespaces or [None]
    done = 0
    for ns in namespaces:
        for cam in ctx.kube.list(cameranode_path(ns)):
            st = cam.get("status") or {}
            valid = get(st.get("conditions"), Cond.VALID) or {}
            if st.get("phase") == Phase.INVALID and valid.get("reason") == "HostNotFound":
                try:
                    deploy(ctx, cam)
                    done += 1
                except kopf.PermanentError:
                    pass
                except kopf.TemporaryError as e:
                    log.warning("re-check of %s failed: %s", cam["metadata"]["name"], e)
    return done


def register(registry: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    @kopf.on.event("", "v1", "nodes", registry=registry, id="nodes")
    def node_event(type, body, name, **_) -> None:
        labels = dict(body.get("metadata", {}).get("labels") or {})
        if type == "DELETED":
            ctx.node_labels.pop(name, None)
            return
        if ctx.node_labels.get(name) == labels:
            return  # status heartbeats: nothing a CameraNode host check cares about
        ctx.node_labels[name] = labels
        if ctx.kube is None:
            return
        try:
            n = recheck_invalid(ctx)
        except KubeError as e:
            log.warning("cannot re-check CameraNodes after Node %s changed: %s", name, e)
            return
        if n:
            log.info("Node %s appeared or changed: re-checked %d CameraNode(s)", name, n)
