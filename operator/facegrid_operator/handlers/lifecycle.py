"""Log kopf in with the context's credentials; close the clients when kopf stops."""

from __future__ import annotations

import kopf

from ..context import OperatorContext


def login(memo: OperatorContext, **_) -> kopf.ConnectionInfo:
    access = memo.access
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


def cleanup(memo: OperatorContext, **_) -> None:
    memo.close()
