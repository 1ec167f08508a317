"""Delete: revoke the node's tokens at the server at once; owner references remove the rest."""

from __future__ import annotations

import contextlib
import logging

import kopf

from .. import metrics, reconcile
from ..context import OperatorContext
from ..kube import KubeError
from ..server_api import ServerRefused, ServerUnavailable
from ..spec import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)


def register(registry: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, id="revoke")
    def revoke(namespace, name, retry, **_) -> None:
        # Fail closed: the finalizer stays until the server confirmed the revocation;
        # after revoke_retries tries every further try is logged as an error.
        try:
            n = reconcile.revoke_node_tokens(ctx, namespace, name)
        except (ServerUnavailable, ServerRefused) as e:
            metrics.REVOCATIONS.labels(state="failed").inc()
            if retry >= ctx.settings.revoke_retries:
                log.error("still cannot revoke the tokens of %s/%s after %d tries (%s); the "
                          "CameraNode stays until the server confirms", namespace, name,
                          retry + 1, e)
            raise kopf.TemporaryError(f"cannot revoke yet: {e}",
                                      delay=ctx.settings.revoke_backoff_s) from e
        except KubeError as e:
            raise reconcile.kopf_error(e, "token Secret") from e
        ctx.set_phase(namespace, name, None)
        ctx.reconciled.pop((namespace, name), None)
        with contextlib.suppress(KeyError):
            metrics.TOKEN_EXPIRY.remove(metrics.camera_label(namespace, name))
        metrics.RECONCILES.labels(stage="delete", reason="ok").inc()
        log.info("CameraNode %s/%s deleted: %d token(s) revoked", namespace, name, n)
