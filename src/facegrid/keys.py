"""Redis key names shared by node, worker and server (one place, no string copies)."""

from __future__ import annotations

#: The event stream every node XADDs to (wire format v1/v2, see facegrid.wire).
EVENTS_STREAM = "facegrid:events"
#: Consumer group of the classify workers on EVENTS_STREAM.
WORKER_GROUP = "facegrid-workers"
#: Dead letters: the original fields plus ``reason``, ``detail``, ``source_id``.
DEAD_LETTER_STREAM = "facegrid:events:dead"
#: Pub/sub channel: the gallery (people/embeddings) changed; workers reload.
GALLERY_CHANNEL = "facegrid:gallery:changed"
#: Set of revoked token ids (jti); the database is the source of truth.
REVOKED_SET = "facegrid:revoked"
#: Pub/sub channel announcing a revocation (payload: the jti, or
#: ``node:<node_id>:<not_before epoch s>`` for a whole node, see REVOKED_NODES).
REVOKED_CHANNEL = "facegrid:revoked:changed"
#: Hash node_id -> epoch seconds: every token of that node issued before is revoked.
REVOKED_NODES = "facegrid:revoked:nodes"
#: Prefix of a node revocation announced on REVOKED_CHANNEL.
REVOKED_NODE_PREFIX = "node:"


def parse_node_revocation(message: str) -> tuple[str, float] | None:
    """``node:<id>:<epoch>`` -> (id, epoch); None for a plain jti or anything malformed."""
    if not message.startswith(REVOKED_NODE_PREFIX):
        return None
    node_id, _, epoch = message[len(REVOKED_NODE_PREFIX):].rpartition(":")
    try:
        return (node_id, float(epoch)) if node_id else None
    except ValueError:
        return None
#: Highest Lamport value seen by any worker (integer string).
LAMPORT_MAX = "facegrid:lamport:max"
#: Hash of threshold -> count of events each candidate threshold would accept.
THRESHOLD_GRID = "facegrid:stats:threshold-grid"
#: JSON of the threshold calibration in force (worker/calibration.py), set at each gallery load.
CALIBRATION = "facegrid:calibration"


def results_channel(node_id: str) -> str:
    """Pub/sub channel where the worker tells a node, per event, recognised yes/no."""
    return f"facegrid:results:{node_id}"
