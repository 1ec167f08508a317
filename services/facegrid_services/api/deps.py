"""FastAPI dependencies: the server context, database sessions, admin and node authentication."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated

import redis
from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from facegrid.tokens import Claims, TokenError, TokenReason, TokenVerifier
from facegrid.types import NODE_ID_PATTERN

from . import metrics
from .heartbeats import HeartbeatBuffer
from .revocation import RevocationList
from .settings import ServerSettings

log = logging.getLogger(__name__)


@dataclass
class ServerContext:
    """Everything a request handler may use; built once by create_app."""

    settings: ServerSettings
    sessions: sessionmaker[Session]
    redis: redis.Redis
    verifier: TokenVerifier
    revocations: RevocationList
    heartbeats: HeartbeatBuffer
    admin_token: str
    clock: Callable[[], float] = field(default=None)  # type: ignore[assignment]


async def get_ctx(request: Request) -> ServerContext:
    return request.app.state.ctx


Ctx = Annotated[ServerContext, Depends(get_ctx)]


def get_session(ctx: Ctx) -> Iterator[Session]:
    with ctx.sessions() as session:
        yield session


DbSession = Annotated[Session, Depends(get_session)]

admin_scheme = HTTPBearer(auto_error=False, scheme_name="AdminToken",
                          description="The admin token (FACEGRID_ADMIN_TOKEN)")
node_scheme = HTTPBearer(auto_error=False, scheme_name="NodeToken",
                         description="The node's JWT (EdDSA), issued by the operator")

_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


async def require_admin(
    ctx: Ctx,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_scheme)],
) -> None:
    if credentials is None or not credentials.credentials:
        metrics.ADMIN_REFUSED.labels("missing").inc()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "admin token required: Authorization: Bearer <token>",
                            headers=_UNAUTHORIZED)
    given = credentials.credentials.encode("utf-8", "surrogatepass")
    if not hmac.compare_digest(given, ctx.admin_token.encode()):
        metrics.ADMIN_REFUSED.labels("invalid").inc()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "admin token is not valid",
                            headers=_UNAUTHORIZED)


Admin = Depends(require_admin)


def verify_node_token(ctx: ServerContext, credentials: HTTPAuthorizationCredentials | None,
                      node_id: str) -> Claims:
    """Verify a node's JWT for ``node_id``; HTTP 401/403 saying why if it is refused."""
    if credentials is None or not credentials.credentials:
        metrics.TOKENS_REFUSED.labels("missing").inc()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "node token required: Authorization: Bearer <JWT>",
                            headers=_UNAUTHORIZED)
    try:
        claims = ctx.verifier.verify(credentials.credentials, node_id=node_id)
        if claims.jti in ctx.revocations:
            raise TokenError(TokenReason.REVOKED, f"token {claims.jti} was revoked")
    except TokenError as e:
        metrics.TOKENS_REFUSED.labels(e.reason.value).inc()
        log.info("refused node token for %s: %s", node_id, e)
        code = (status.HTTP_403_FORBIDDEN if e.reason == TokenReason.WRONG_NODE
                else status.HTTP_401_UNAUTHORIZED)
        raise HTTPException(code, f"node token refused: {e.reason.value}: {e.detail}",
                            headers=_UNAUTHORIZED) from None
    return claims


NodeIdPath = Annotated[str, Path(pattern=NODE_ID_PATTERN, description="DNS-1123 node id")]


async def node_claims(
    ctx: Ctx,
    node_id: NodeIdPath,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(node_scheme)],
) -> Claims:
    return verify_node_token(ctx, credentials, node_id)


NodeCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(node_scheme)]
NodeClaims = Annotated[Claims, Depends(node_claims)]
