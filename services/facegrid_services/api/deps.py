"""FastAPI dependencies: server context, database sessions, API roles, node authentication."""

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

from . import api_tokens, metrics
from .api_tokens import Principal
from .heartbeats import HeartbeatBuffer
from .revocation import RevocationRegistry
from .roles import Role
from .settings import ServerSettings

log = logging.getLogger(__name__)


@dataclass
class ServerContext:
    """Everything a request handler may use; built once by create_app."""

    settings: ServerSettings
    sessions: sessionmaker[Session]
    redis: redis.Redis
    verifier: TokenVerifier
    revocations: RevocationRegistry
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

api_scheme = HTTPBearer(auto_error=False, scheme_name="ApiToken",
                        description="A named API token (fgk_…) or the bootstrap admin "
                                    "token (FACEGRID_ADMIN_TOKEN); the route's role applies")
node_scheme = HTTPBearer(auto_error=False, scheme_name="NodeToken",
                         description="The node's JWT (EdDSA), issued by the operator")

_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def resolve_principal(
    ctx: Ctx,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(api_scheme)],
) -> Principal:
    """Who is asking: the bootstrap admin token or a named API token (401 if neither).

    The principal is kept on ``request.state`` so the audit middleware can record
    every write with the token that made it.
    """
    if credentials is None or not credentials.credentials:
        metrics.ADMIN_REFUSED.labels("missing").inc()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "API token required: Authorization: Bearer <token>",
                            headers=_UNAUTHORIZED)
    given = credentials.credentials
    if hmac.compare_digest(given.encode("utf-8", "surrogatepass"), ctx.admin_token.encode()):
        principal = api_tokens.bootstrap_principal()
    else:
        try:
            with ctx.sessions() as session:
                principal = api_tokens.authenticate(session, given)
        except api_tokens.Refused as e:
            metrics.ADMIN_REFUSED.labels(e.reason).inc()
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, e.detail,
                                headers=_UNAUTHORIZED) from None
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(resolve_principal)]


def require_role(needed: Role) -> Callable[[Principal], Principal]:
    """A dependency that lets only ``needed`` or a higher role through (403 otherwise)."""

    def _check(principal: CurrentPrincipal) -> Principal:
        if not principal.role.allows(needed):
            metrics.ROLE_FORBIDDEN.labels(principal.role.value).inc()
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"this needs the {needed.value} role; token "
                                f"{principal.name!r} has the {principal.role.value} role")
        return principal

    _check.__name__ = f"require_{needed.value}"
    _check.needed_role = needed  # type: ignore[attr-defined]  (read by openapi.py)
    return _check


Viewer = Depends(require_role(Role.viewer))
Operator = Depends(require_role(Role.operator))
Admin = Depends(require_role(Role.admin))


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
        if ctx.revocations.is_claims_revoked(claims):
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
