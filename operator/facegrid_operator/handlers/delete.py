"""Delete: revoke the node's tokens at the server and delete its Redis user at once;
owner references remove the rest."""

from __future__ import annotations

import contextlib
import logging

import kopf

from .. import metrics, reconcile
from ..context import OperatorContext
from ..kube import KubeError
from ..redis_users import RedisUnavailable
from ..server_api import ServerRefused, ServerUnavailable
from . import kopf_error

log = logging.getLogger(__name__)


def revoke(namespace, name, retry, memo: OperatorContext, **_) -> None:
    ctx = memo
    ctx.deleting.add((namespace, name))
    # Fail closed: the finalizer stays until the server confirmed the revocation and
    # Redis deleted the node's user; after revoke_retries tries every further try is
    # logged as an error.
    try:
        n = reconcile.revoke_node_tokens(ctx, namespace, name)
        reconcile.remove_redis_user(ctx, namespace, name)
    except (ServerUnavailable, ServerRefused, RedisUnavailable) as e:
        metrics.REVOCATIONS.labels(state="failed").inc()
        if retry >= ctx.settings.revoke_retries:
            log.error("still cannot revoke the tokens (or delete the Redis user) of %s/%s "
                      "after %d tries (%s); the CameraNode stays until that is done",
                      namespace, name,
                      retry + 1, e)
        raise kopf.TemporaryError(f"cannot revoke yet: {e}",
                                  delay=ctx.settings.revoke_backoff_s) from e
    except KubeError as e:
        raise kopf_error(e, "token Secret") from e
    ctx.forget(namespace, name)
    with contextlib.suppress(KeyError):
        metrics.TOKEN_EXPIRY.remove(metrics.camera_label(namespace, name))
    metrics.RECONCILES.labels(stage="delete", reason="ok").inc()
    log.info("CameraNode %s/%s deleted: %d token(s) revoked", namespace, name, n)
