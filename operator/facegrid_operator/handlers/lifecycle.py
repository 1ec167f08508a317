"""Log kopf in with the context's credentials; close the clients when kopf stops."""

from __future__ import annotations

import asyncio

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


async def cleanup(memo: OperatorContext, **_) -> None:
    """Cancel the pending status writes, then close the clients."""
    tasks = list(memo.pod_write_tasks)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    memo.close()
