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
#: Pub/sub channel announcing a revocation (payload: the jti).
REVOKED_CHANNEL = "facegrid:revoked:changed"
#: Highest Lamport value seen by any worker (integer string).
LAMPORT_MAX = "facegrid:lamport:max"
#: Hash of threshold -> count of events each candidate threshold would accept.
THRESHOLD_GRID = "facegrid:stats:threshold-grid"
#: JSON of the threshold calibration in force (worker/calibration.py), set at each gallery load.
CALIBRATION = "facegrid:calibration"


def results_channel(node_id: str) -> str:
    """Pub/sub channel where the worker tells a node, per event, recognised yes/no."""
    return f"facegrid:results:{node_id}"
