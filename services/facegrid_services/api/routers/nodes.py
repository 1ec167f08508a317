"""Nodes: registration and heartbeat (node JWT), fleet list and one node (admin)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, status

from facegrid.contract import (
    REGISTER_PATH,
    Heartbeat,
    HeartbeatReply,
    NodeStatus,
    Registration,
)
from facegrid.types import check_zone
from facegrid_services.store import queries

from .. import fleet, metrics
from ..deps import (
    Ctx,
    DbSession,
    NodeClaims,
    NodeCredentials,
    NodeIdPath,
    Viewer,
    verify_node_token,
)
from ..schemas import NodeInfo, Page
from .common import Limit, Offset

router = APIRouter(prefix="/nodes", tags=["nodes"])


@router.post("/register", response_model=HeartbeatReply,
             summary="A node's first health check (its JWT as Bearer)")
def register(body: Registration, ctx: Ctx, session: DbSession,
             credentials: NodeCredentials) -> HeartbeatReply:
    claims = verify_node_token(ctx, credentials, body.node_id)
    try:
        check_zone(body.timezone)
    except ValueError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
    now = ctx.clock()
    fleet.register(session, body, claims, datetime.fromtimestamp(now, UTC))
    ctx.heartbeats.add_known(body.node_id)
    metrics.REGISTRATIONS.inc()
    return fleet.heartbeat_reply(now, fleet.lamport_max(ctx.redis),
                                 ctx.settings.heartbeat_interval_s)


@router.post("/{node_id}/heartbeat", response_model=HeartbeatReply,
             summary="Heartbeat: state, fps, drift; the reply carries server time and Lamport max",
             responses={404: {"description": "the node has not registered"}})
async def heartbeat(node_id: NodeIdPath, body: Heartbeat, claims: NodeClaims,
                    ctx: Ctx) -> HeartbeatReply:
    # Memory only (see heartbeats.py): the buffer is written to the store every second.
    received = ctx.clock()
    buffer = ctx.heartbeats
    if not buffer.is_known(node_id) and not await asyncio.to_thread(
            buffer.registered_in_db, node_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"node {node_id!r} is not registered: POST "
                            f"{REGISTER_PATH} first")
    buffer.record(node_id, body, datetime.fromtimestamp(received, UTC))
    metrics.HEARTBEATS.inc()
    # Sample the clock as late as possible: the node's drift estimate uses it.
    return fleet.heartbeat_reply(ctx.clock(), max(buffer.lamport_max, body.lamport),
                                 ctx.settings.heartbeat_interval_s)


@router.get("", response_model=Page[NodeInfo], dependencies=[Viewer],
            summary="The camera fleet: online/idle/offline, heartbeat age, drift, fps")
def list_nodes(ctx: Ctx, session: DbSession, limit: Limit = 100,
               offset: Offset = 0) -> Page[NodeInfo]:
    ctx.heartbeats.flush()
    now = datetime.fromtimestamp(ctx.clock(), UTC)
    page = queries.list_nodes(session, limit=limit, offset=offset)
    return Page[NodeInfo](items=[fleet.node_info(n, now, ctx.settings.offline_after_s)
                                 for n in page.items],
                          total=page.total, limit=limit, offset=offset)


@router.get("/{node_id}", response_model=NodeStatus, dependencies=[Viewer],
            summary="One node's status (the operator copies it into the CameraNode status)")
def get_node(node_id: NodeIdPath, ctx: Ctx, session: DbSession) -> NodeInfo:
    ctx.heartbeats.flush()
    node = queries.get_node(session, node_id)
    if node is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"node {node_id!r} is not known")
    return fleet.node_info(node, datetime.fromtimestamp(ctx.clock(), UTC),
                           ctx.settings.offline_after_s)

