"""The HTTP contract between nodes, operator and server, in one module.

Both sides import these models: the node builds requests and reads replies,
the server validates requests and builds replies.  All times are UTC; the node
sends its own clock reading so the reply can drive the drift estimator
(``offset = server_time − (sent_at + received_at)/2``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from facegrid.types import ZONE_NAME_MAX, IsoDateTime, ModelId, NodeId

API_PREFIX = "/api/v1"


class NodeState(StrEnum):
    ACTIVE = "active"
    IDLE = "idle"


class Registration(BaseModel):
    """First health check of a node, with its JWT in ``Authorization: Bearer``."""

    model_config = ConfigDict(extra="forbid")
    node_id: NodeId
    #: Checked against the zone database by the server after the token (facegrid.types.zone).
    timezone: str = Field(max_length=ZONE_NAME_MAX,
                          description="IANA time zone of the camera site")
    model: ModelId = Field(description="Embedding model id, e.g. facenet-vggface2")
    version: str = Field(max_length=32, description="facegrid version of the node")
    camera: str = Field(default="", max_length=256, description="Camera kind, never a secret URL")


class Heartbeat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sent_at: float = Field(description="Node clock (seconds since epoch) when sent")
    state: NodeState
    state_seconds: float = Field(ge=0, description="Seconds spent in the current state")
    fps: float = Field(ge=0, le=1000)
    drift_offset_ms: float = Field(ge=-6.048e8, le=6.048e8)
    lamport: int = Field(ge=0, lt=2**63)
    camera_up: bool
    events_sent: int = Field(ge=0, lt=2**63)
    events_dropped: int = Field(ge=0, lt=2**63)
    backlog: int = Field(ge=0, lt=2**63, description="Events buffered while Redis is away")


class HeartbeatReply(BaseModel):
    server_time: float = Field(description="Server clock (seconds since epoch, UTC)")
    server_time_iso: datetime
    lamport_max: int = Field(description="Highest Lamport value the system has seen")
    heartbeat_interval_s: float


def heartbeat_path(node_id: str) -> str:
    return f"{API_PREFIX}/nodes/{node_id}/heartbeat"


REGISTER_PATH = f"{API_PREFIX}/nodes/register"


# --- management API used by the operator (admin token) ----------------------

class RevokeRequest(BaseModel):
    """Revoke a node token at once (the operator calls this when a CameraNode is deleted)."""

    model_config = ConfigDict(extra="forbid")
    jti: str = Field(min_length=1, max_length=64)
    node_id: NodeId | None = None
    expires_at: IsoDateTime | None = Field(default=None, description="Token expiry (UTC)")
    reason: str = Field(default="", max_length=200)


class NodeRevokeRequest(BaseModel):
    """Revoke every token of a node issued before ``not_before`` (whatever its jti)."""

    model_config = ConfigDict(extra="forbid")
    node_id: str = Field(min_length=1, max_length=63)
    not_before: IsoDateTime = Field(description="Tokens issued (iat) before this are refused")
    reason: str = Field(default="", max_length=200)


class NodeStatus(BaseModel):
    """What the server knows of a node; the operator copies it into CameraNode status."""

    node_id: str
    status: str = Field(description="online, idle or offline (no heartbeat recently)")
    state: NodeState
    state_seconds: float
    last_heartbeat_at: datetime | None
    heartbeat_age_s: float | None
    registered_at: datetime
    drift_offset_ms: float
    fps: float
    lamport: int
    camera_up: bool
    model: str
    timezone: str


REVOKE_PATH = f"{API_PREFIX}/tokens/revoke"
REVOKE_NODE_PATH = f"{API_PREFIX}/tokens/revoke-node"


def node_path(node_id: str) -> str:
    return f"{API_PREFIX}/nodes/{node_id}"
