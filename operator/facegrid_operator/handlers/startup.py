"""Start-up and shut-down: connect, load/create the signing key, log kopf in."""

from __future__ import annotations

import kopf

from ..context import OperatorContext
from ..kube import ClusterAccess


def register(registry: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    @kopf.on.startup(registry=registry, id="facegrid-startup")
    def startup(logger, **_) -> None:
        try:
            ctx.start()
        except Exception as e:  # reported to kopf, which retries
            raise kopf.TemporaryError(f"cannot start: {e}", delay=5) from e

    @kopf.on.login(registry=registry, id="facegrid-login")
    def login(**_) -> kopf.ConnectionInfo:
        access = ctx.access or ClusterAccess.discover(ctx.settings.kubeconfig)
        token = access.bearer()
        return kopf.ConnectionInfo(
            server=access.server,
            ca_path=access.ca_path,
            insecure=access.insecure,
            scheme="Bearer" if token else None,
            token=token,
            certificate_path=access.cert_path,
            private_key_path=access.key_path,
            default_namespace=access.namespace,
        )

    @kopf.on.cleanup(registry=registry, id="facegrid-cleanup")
    def cleanup(**_) -> None:
        ctx.stop()
