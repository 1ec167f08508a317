"""Token revocation (the operator calls it when a CameraNode is deleted)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from facegrid.contract import RevokeRequest

from ..deps import Admin, Ctx
from ..schemas import RevokeOut
from .common import utc_instant

router = APIRouter(prefix="/tokens", tags=["tokens"], dependencies=[Admin])


@router.post("/revoke", response_model=RevokeOut,
             responses={201: {"model": RevokeOut, "description": "revoked now"},
                        200: {"description": "was already revoked"}},
             summary="Revoke a node token at once (database, Redis set, pub/sub)")
def revoke(body: RevokeRequest, ctx: Ctx, response: Response) -> RevokeOut:
    body.expires_at = utc_instant(body.expires_at, "expires_at")
    row, created = ctx.revocations.revoke(body)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return RevokeOut(jti=row.jti, node_id=row.node_id, revoked_at=row.revoked_at,
                     expires_at=row.expires_at, reason=row.reason, created=created)
