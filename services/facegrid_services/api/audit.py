"""Audit middleware: every management write is recorded with the token that made it.

``deps.resolve_principal`` leaves the principal on the request's state; after
the response this middleware writes one ``audit_log`` row (token, role, method,
route template, path, status) for every POST/PUT/PATCH/DELETE that carried
one, refused ones (403) included.  Node routes carry no principal and are not
audited here (they have their own counters).
"""

from __future__ import annotations

import asyncio
import logging

from . import api_tokens, metrics

log = logging.getLogger(__name__)
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AuditMiddleware:
    def __init__(self, app, sessions) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITES:
            await self.app(scope, receive, send)
            return
        status_code = 500

        async def _send(message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            principal = scope.get("state", {}).get("principal")
            if principal is not None:
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                await asyncio.to_thread(self._record, principal, scope["method"], route,
                                        scope.get("path", ""), status_code)

    def _record(self, principal, method: str, route: str, path: str, status: int) -> None:
        try:
            with self.sessions() as session:
                api_tokens.record_write(session, principal, method=method, route=route,
                                        path=path, status=status)
        except Exception:  # the write itself stands; the failure is counted and logged
            metrics.AUDIT_FAILURES.inc()
            log.exception("could not record the audit entry of %s %s by %s", method, path,
                          principal.name)
