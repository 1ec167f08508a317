"""Create, resume and spec changes: the token, the host check, the node Deployment, the status."""

from __future__ import annotations

import logging
import time

import kopf

from .. import metrics, reconcile
from ..context import OperatorContext
from ..kube import KubeError
from ..redis_users import RedisUnavailable
from ..spec import InvalidSpec
from . import NodeLabels, kopf_error, plain, pods_of

log = logging.getLogger(__name__)


def reconcile_camera(body, memo: OperatorContext, node_labels: kopf.Index,
                     camera_pods: kopf.Index, **_) -> None:
    body = plain(body)
    md = body["metadata"]
    t0 = time.perf_counter()
    try:
        reconcile.reconcile_camera(memo, body, NodeLabels(node_labels),
                                   pods_of(camera_pods, md["namespace"], md["name"]))
    except InvalidSpec as e:
        # No retry storm: a spec change, a Node change or the slow re-check runs it again.
        raise kopf.PermanentError(f"{e.reason}: {e.detail}") from e
    except KubeError as e:
        raise kopf_error(e, "CameraNode children") from e
    except RedisUnavailable as e:
        raise kopf.TemporaryError(str(e), delay=memo.settings.revoke_backoff_s * 3) from e
    metrics.RECONCILE_SECONDS.labels(stage="deployment").observe(time.perf_counter() - t0)


def recheck(memo: OperatorContext, body: dict, nodes: NodeLabels, camera_pods: kopf.Index) -> bool:
    """Run the reconcile step again outside kopf's change handling (a Node appeared, the
    slow re-check of an Invalid camera, a generation kopf never handed over).  Returns
    whether the camera is valid now; failures are logged, the next trigger retries."""
    md = body["metadata"]
    try:
        reconcile.reconcile_camera(memo, body, nodes,
                                   pods_of(camera_pods, md["namespace"], md["name"]))
    except InvalidSpec:
        return False  # the status says why
    except (KubeError, RedisUnavailable) as e:
        log.warning("re-check of CameraNode %s/%s failed: %s", md["namespace"], md["name"], e)
        return False
    return True
