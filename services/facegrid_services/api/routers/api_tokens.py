"""Named API tokens (admin), who am I (any role) and the audit log of writes (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from .. import api_tokens
from ..deps import Admin, CurrentPrincipal, DbSession, Viewer
from ..roles import capabilities
from ..schemas import ApiTokenCreate, ApiTokenCreated, ApiTokenOut, AuditOut, Page, WhoAmI
from .common import Limit, Offset, utc_instant

router = APIRouter(tags=["access"])
TokenId = Annotated[int, Path(ge=1, le=2**31 - 1, description="API token id")]


def _out(row) -> ApiTokenOut:
    return ApiTokenOut(id=row.id, name=row.name, role=row.role, prefix=row.prefix,
                       created_at=row.created_at, created_by=row.created_by,
                       expires_at=row.expires_at, last_used_at=row.last_used_at,
                       revoked_at=row.revoked_at)


@router.get("/auth/me", response_model=WhoAmI, dependencies=[Viewer],
            summary="The calling token's name, role and what the role may do")
def who_am_i(principal: CurrentPrincipal) -> WhoAmI:
    return WhoAmI(name=principal.name, role=principal.role.value,
                  token_id=principal.token_id, expires_at=principal.expires_at,
                  can=capabilities(principal.role))


@router.get("/api-tokens", response_model=Page[ApiTokenOut], dependencies=[Admin],
            summary="Named API tokens (never the secrets)")
def list_api_tokens(session: DbSession, include_revoked: bool = False, limit: Limit = 100,
                    offset: Offset = 0) -> Page[ApiTokenOut]:
    rows = api_tokens.list_tokens(session, include_revoked=include_revoked, limit=limit,
                                  offset=offset)
    return Page[ApiTokenOut](items=[_out(r) for r in rows], limit=limit, offset=offset,
                             total=api_tokens.count_tokens(session,
                                                           include_revoked=include_revoked))


@router.post("/api-tokens", response_model=ApiTokenCreated, dependencies=[Admin],
             status_code=status.HTTP_201_CREATED,
             responses={409: {"description": "the name is taken"}},
             summary="Create a named token with a role; the token is shown only in this reply")
def create_api_token(body: ApiTokenCreate, session: DbSession,
                     principal: CurrentPrincipal) -> ApiTokenCreated:
    expires_at = utc_instant(body.expires_at, "expires_at")
    try:
        row, token = api_tokens.create(session, body.name, body.role, created_by=principal.name,
                                       expires_at=expires_at)
    except api_tokens.TokenConflict as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
    except ValueError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
    return ApiTokenCreated(**_out(row).model_dump(), token=token)


@router.delete("/api-tokens/{token_id}", response_model=ApiTokenOut, dependencies=[Admin],
               summary="Revoke a named token at once (idempotent)")
def revoke_api_token(token_id: TokenId, session: DbSession) -> ApiTokenOut:
    try:
        row = api_tokens.find(session, token_id)
    except api_tokens.TokenNotFound as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from None
    api_tokens.revoke(session, row)
    return _out(row)


@router.get("/audit", response_model=Page[AuditOut], dependencies=[Admin],
            summary="Every management write, newest first, with the token that made it")
def audit_log(session: DbSession, limit: Limit = 100, offset: Offset = 0,
              token_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
              actor: Annotated[str | None, Query(max_length=100)] = None) -> Page[AuditOut]:
    rows, total = api_tokens.list_audit(session, limit=limit, offset=offset,
                                        token_id=token_id, actor=actor)
    return Page[AuditOut](items=[AuditOut.model_validate(r, from_attributes=True)
                                 for r in rows], total=total, limit=limit, offset=offset)
