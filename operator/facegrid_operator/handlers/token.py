"""The token-rotation timer: re-issues the node's JWT at ``rotateAtPercent`` of its life.

The old token stays valid until it expires (the worker accepts both), and the
node re-reads its mounted Secret file, so a rotation restarts nothing.  The first
token is issued by the create handler (:mod:`.camera`).
"""

from __future__ import annotations

import kopf

from .. import metrics, reconcile
from ..context import OperatorContext
from ..kube import KubeError
from . import kopf_error, plain, pods_of


def rotate(body, memo: OperatorContext, stopped, camera_pods: kopf.Index, **_) -> None:
    if stopped or body.get("metadata", {}).get("deletionTimestamp"):
        return
    body = plain(body)
    md = body["metadata"]
    try:
        reconcile.rotate_token(memo, body, pods_of(camera_pods, md["namespace"], md["name"]))
    except KubeError as e:
        metrics.RECONCILES.labels(stage="token", reason="api_error").inc()
        raise kopf_error(e, "token Secret") from e
