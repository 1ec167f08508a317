"""Token revocation (the operator calls it when a CameraNode is deleted)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from facegrid.contract import NodeRevokeRequest, RevokeRequest

from ..deps import Admin, Ctx
from ..schemas import NodeRevokeOut, RevokeOut
from .common import utc_instant

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"], dependencies=[Admin])


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


@router.post("/revoke-node", response_model=NodeRevokeOut,
             responses={201: {"model": NodeRevokeOut, "description": "revoked now"},
                        200: {"description": "was already revoked (from that time or later)"}},
             summary="Revoke every token of a node issued before not_before, whatever its jti")
def revoke_node(body: NodeRevokeRequest, ctx: Ctx, response: Response) -> NodeRevokeOut:
    body.not_before = utc_instant(body.not_before, "not_before")
    row, created = ctx.revocations.revoke_node(body)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return NodeRevokeOut(node_id=row.node_id, not_before=row.not_before,
                         revoked_at=row.revoked_at, reason=row.reason, created=created)
