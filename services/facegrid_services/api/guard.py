"""The request guard: authenticate before any body is read, bound bodies, throttle failures.

A pure ASGI middleware in front of every route under ``/api/``:

1. A client that failed authentication more than ``auth_failures_max`` times within
   ``auth_failure_window_s`` gets 429 (``Retry-After``) without anything else
   being looked at, until its window ends.  Failures are counted per client
   address (the peer address; behind a proxy, run uvicorn with
   ``--forwarded-allow-ips`` so it is the real client).
2. A request that carries a body (POST, PUT, PATCH, DELETE) must present a valid
   credential *before* one byte of the body is read: the node's JWT on the node
   routes (register, heartbeat), an API token or the bootstrap admin token on
   every other route.  Without one: 401, the body is never read or parsed (so a
   malformed body without a token is 401, never 400/422).
3. The body is read up to ``max_body_bytes``: a larger ``Content-Length`` or a
   chunked body growing past it is 413 at once.

Roles (403) and the node id of a token are still checked by the route's own
dependencies; this guard only decides whether the request may be read at all.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable

from facegrid.contract import API_PREFIX
from facegrid.tokens import TokenError, TokenReason

from . import api_tokens, metrics
from .errors import Reason, error_body

log = logging.getLogger(__name__)

_NODE_ROUTE = re.compile(rf"^{re.escape(API_PREFIX)}/nodes/(register|[^/]+/heartbeat)/?$")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_MAX_CLIENTS = 10_000


class FailureThrottle:
    """Per-client count of failed authentications in fixed windows (bounded memory)."""

    def __init__(self, max_failures: int, window_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._clients: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again (0: it may now)."""
        entry = self._clients.get(client)
        if entry is None:
            return 0.0
        start, count = entry
        left = start + self.window_s - self._clock()
        if left <= 0:
            del self._clients[client]
            return 0.0
        return left if count >= self.max_failures else 0.0

    def failed(self, client: str) -> None:
        now = self._clock()
        start, count = self._clients.get(client, (now, 0))
        if now - start >= self.window_s:
            start, count = now, 0
        self._clients[client] = (start, count + 1)
        self._clients.move_to_end(client)
        while len(self._clients) > _MAX_CLIENTS:
            self._clients.popitem(last=False)


async def _respond(send, code: int, detail: str, headers: dict[str, str] | None = None,
                   reason: Reason | None = None) -> None:
    """An error reply in the API's one shape (errors.ErrorOut), written before any route."""
    body = json.dumps(error_body(code, detail, reason)).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    hdrs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": code, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


def _bearer(scope) -> str | None:
    for k, v in scope.get("headers") or ():
        if k == b"authorization":
            text = v.decode("latin-1")
            scheme, _, cred = text.partition(" ")
            if scheme.lower() == "bearer" and cred.strip():
                return cred.strip()
            return None
    return None


class RequestGuard:
    def __init__(self, app, *, ctx, max_body_bytes: int, auth_failures_max: int,
                 auth_failure_window_s: float) -> None:
        self.app = app
        self.ctx = ctx
        self.max_body = max_body_bytes
        self.throttle = FailureThrottle(auth_failures_max, auth_failure_window_s)

    def _authenticate(self, path: str, credential: str) -> str | None:
        """None if the credential may send a body to ``path``, else the refusal's reason."""
        ctx = self.ctx
        if _NODE_ROUTE.match(path):
            try:
                claims = ctx.verifier.verify(credential)
                if ctx.revocations.is_claims_revoked(claims):
                    raise TokenError(TokenReason.REVOKED, "revoked")
            except TokenError as e:
                metrics.TOKENS_REFUSED.labels(e.reason.value).inc()
                return f"node token refused: {e.reason.value}"
            return None
        if hmac.compare_digest(credential.encode("utf-8", "surrogatepass"),
                               ctx.admin_token.encode()):
            return None
        try:
            with ctx.sessions() as session:
                api_tokens.authenticate(session, credential)
        except api_tokens.Refused as e:
            metrics.ADMIN_REFUSED.labels(e.reason).inc()
            return e.detail
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.throttle.retry_after(client)
        if wait > 0:
            metrics.AUTH_THROTTLED.inc()
            await _respond(send, 429, "too many failed authentications: try again later",
                           {"Retry-After": str(int(wait) + 1)}, Reason.auth_throttled)
            return

        async def _send(message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.throttle.failed(client)
            await send(message)

        if scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, _send)
            return
        credential = _bearer(scope)
        refused = ("a token is required: Authorization: Bearer <token>" if credential is None
                   else await asyncio.to_thread(self._authenticate, scope["path"], credential))
        if refused is not None:
            if credential is None:
                counter = (metrics.TOKENS_REFUSED if _NODE_ROUTE.match(scope["path"])
                           else metrics.ADMIN_REFUSED)
                counter.labels("missing").inc()
            await _respond(_send, 401, refused, {"WWW-Authenticate": "Bearer"})
            return
        for k, v in scope.get("headers") or ():
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    await _respond(send, 400, "Content-Length is not a number")
                    return
                if declared > self.max_body:
                    metrics.BODY_TOO_LARGE.inc()
                    await _respond(send, 413, f"request body over {self.max_body} bytes")
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                metrics.BODY_TOO_LARGE.inc()
                await _respond(send, 413, f"request body over {self.max_body} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def _replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, _replay, _send)
