"""WorkerSettings: the one configuration object of ``facegrid worker`` (env prefix FACEGRID_)."""

from __future__ import annotations

import os
import socket
from typing import Annotated

from pydantic import Field, field_validator

from facegrid.settings import RedisSettings, SiteSettings, StoreSettings, VerifierSettings
from facegrid.types import ModelId, NodeId

#: A cosine-similarity threshold.
Similarity = Annotated[float, Field(ge=-1.0, le=1.0)]


def default_consumer() -> str:
    """Stable per pod (HOSTNAME, pid 1 in a container), unique per process elsewhere."""
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(SiteSettings, VerifierSettings, StoreSettings, RedisSettings):
    """Configuration of ``facegrid worker`` (shared fields from :mod:`facegrid.settings`)."""

    token_leeway_s: float = Field(default=30.0, ge=0,
        description="Seconds of clock skew allowed on token exp/nbf.")
    metrics_port: int = Field(default=9101, ge=0, le=65535,
        description="Port of /metrics (0: off).")
    migrate: bool = Field(True,
        description="Run Alembic migrations at start (several replicas may do so at once).")

    consumer: str = Field(default_factory=default_consumer, min_length=1, max_length=200,
        description="Consumer name in the group; must be unique per live worker.")
    batch_size: int = Field(default=256, ge=1, le=10_000,
        description="Entries read per XREADGROUP (one store transaction per batch).")
    block_ms: int = Field(default=1000, ge=1, le=60_000,
        description="How long one XREADGROUP waits for new entries.")
    claim_idle_ms: int = Field(default=30_000, ge=100,
        description="Pending entries idle this long belong to a dead worker and are reclaimed.")
    reclaim_interval_s: float = Field(default=5.0, gt=0,
        description="How often entries pending on a dead consumer are reclaimed (XAUTOCLAIM).")
    stats_interval_s: float = Field(default=5.0, gt=0,
        description="How often the stream backlog/pending gauges are refreshed.")
    revocation_refresh_s: float = Field(default=60.0, gt=0,
        description="Full reload of the revocation list (pub/sub messages can be missed).")
    max_backoff_s: float = Field(default=5.0, gt=0,
        description="Longest wait between retries while Redis or the database is down.")
    max_deliveries: int = Field(default=5, ge=1, le=1000,
        description="An entry delivered more often than this without an ack (it crashed or hung "
                    "workers) is dead-lettered as ``poison`` without being looked at again.")
    trim_interval_s: float = Field(default=10.0, gt=0,
        description="How often acknowledged entries are trimmed from the stream and dead letters "
                    "expired.")
    stale_consumer_s: float = Field(default=600.0, gt=0,
        description="Consumers of gone workers idle this long with nothing pending are deleted.")
    liveness_timeout_s: float = Field(default=120.0, gt=0,
        description="/healthz fails when the loop has not completed an iteration for this long.")
    dead_letter_maxlen: int = Field(default=100_000, ge=1,
        description="Most dead letters kept (the oldest are evicted and counted beyond it).")
    dead_letter_max_age_s: float = Field(default=7 * 86400.0, gt=0,
        description="Dead letters (which hold embeddings) are deleted after this many seconds.")
    dead_letter_memory_ratio: float = Field(default=0.7, gt=0, le=1,
        description="While Redis uses more than this share of its maxmemory, the oldest dead "
                    "letters are evicted (counted, reason memory): dead letters never fill a "
                    "noeviction Redis so that events are refused (one is ~3.7 KB: 100,000 "
                    "would not fit the chart's 256 MB).")

    model: ModelId | None = Field(None,
        description="Embedding model id to match.  Unset: follow the gallery (the model of the "
                    "enrolled embeddings; an empty gallery accepts any model, every event "
                    "unknown; a gallery of several models needs this setting).  Events of another "
                    "model are dead-lettered.")
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0,
        description="Pins the cosine similarity a match needs (unset: calibrated from the "
                    "gallery, worker/calibration.py, and recalibrated whenever people are "
                    "enrolled or erased).")
    default_threshold: float = Field(default=0.58, ge=-1.0, le=1.0,
        description="In force while the gallery is too small to calibrate, and the calibration's "
                    "floor. 0.58: the median over 20 random halvings of LFW dev of the threshold "
                    "that lets in 1% of the photos of the half NOT enrolled.  See docs/worker.md "
                    "\"Accuracy\".")
    target_far: float = Field(default=0.01, gt=0, lt=1,
        description="Target open-set false-accept rate of the calibrated threshold (gallery "
                    "impostor scores).")
    calibration_min_people: int = Field(default=10, ge=2,
        description="Fewer people than this: no calibration (the default threshold stays in "
                    "force).")
    camera_thresholds: dict[NodeId, Similarity] = Field(default_factory=dict,
        description='Per-camera threshold overrides, JSON object ``{"node-id": 0.62, …}``.')

    lock_margin: float = Field(default=0.05, ge=0, le=1,
        description="Presences (worker/presence.py): a recognised presence locks when its "
                    "aggregate score is this far above the threshold ...")
    lead_margin: float = Field(default=0.05, ge=0, le=1,
        description="... and this far above the runner-up person.")
    flip_margin: float = Field(default=0.10, ge=0, le=1,
        description="A locked presence flips to another person only if that one passes the "
                    "threshold and beats the locked person's score by this much.")
    drop_margin: float = Field(default=0.15, ge=0, le=1,
        description="A locked presence becomes unknown only when its person's score falls this "
                    "far below the threshold.")
    unknown_min_frames: int = Field(default=2, ge=1,
        description="An unknown presence counts as a stranger (intruder alerts, linking) once "
                    "this many frames stand behind its aggregate.")

    cooldown_s: float = Field(default=300.0, ge=0,
        description="Sightings of one person closer than this merge into one visit.")
    clock_tolerance_s: float = Field(default=300.0, gt=0,
        description="A corrected_utc further than this after the event's arrival (its stream id "
                    "time) is suspect: attendance uses the arrival.")
    max_event_age_s: float = Field(default=900.0, gt=0,
        description="A corrected_utc further than this before the event's arrival is back-dated "
                    "(nodes buffer events for max_event_age_s = 300 s): attendance uses the "
                    "arrival.")
    lamport_max_jump: int = Field(default=10_000_000, ge=1,
        description="An event whose Lamport value is more than this above the fleet's maximum is "
                    "refused (dead letter ``lamport_jump``): it would drag every node's clock "
                    "along.")
    intruder_count: int = Field(default=5, ge=1,
        description="Intruder alert: this many distinct unknown presences (people, not frames) "
                    "...")
    intruder_window_s: float = Field(default=60.0, gt=0,
        description="... within this many seconds, across all nodes.")
    notify: bool = Field(True,
        description="Queue presence events for `facegrid notifier` (webhooks, MQTT) in the "
                    "batch's transaction.  Turn off only where no notifier runs (the queue would "
                    "only grow).")

    @field_validator("model", mode="before")
    @classmethod
    def _unset_model(cls, v: object) -> object:
        return None if v == "" else v
