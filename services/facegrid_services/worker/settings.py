"""WorkerSettings: the one configuration object of ``facegrid worker`` (env prefix FACEGRID_)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from facegrid import tokens


def default_consumer() -> str:
    """Stable per pod (HOSTNAME, pid 1 in a container), unique per process elsewhere."""
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEGRID_", extra="ignore")

    #: Redis with the event stream (the worker's consumer group lives there).
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: SQLAlchemy URL of the store (a SQLite file or postgresql+psycopg://…).
    database_url: str = "sqlite:///./facegrid.db"
    #: Ed25519 public key (signing.pub) that verifies node tokens.
    public_key_file: Path = Path(tokens.PUBLIC_KEY_FILE)
    #: Required `aud` claim of node tokens.
    token_audience: str = tokens.DEFAULT_AUDIENCE
    #: Seconds of clock skew allowed on token exp/nbf.
    token_leeway_s: float = Field(default=30.0, ge=0)
    #: IANA zone that defines the attendance day.
    site_timezone: str = "UTC"
    #: Port of /metrics (0: off).
    metrics_port: int = Field(default=9101, ge=0, le=65535)
    #: Run Alembic migrations at start (several replicas may do so at once).
    migrate: bool = True

    #: Consumer name in the group; must be unique per live worker.
    consumer: str = Field(default_factory=default_consumer, min_length=1, max_length=200)
    #: Entries read per XREADGROUP (one store transaction per batch).
    batch_size: int = Field(default=256, ge=1, le=10_000)
    #: How long one XREADGROUP waits for new entries.
    block_ms: int = Field(default=1000, ge=1, le=60_000)
    #: Pending entries idle this long belong to a dead worker and are reclaimed.
    claim_idle_ms: int = Field(default=30_000, ge=100)
    #: How often entries pending on a dead consumer are reclaimed (XAUTOCLAIM).
    reclaim_interval_s: float = Field(default=5.0, gt=0)
    #: How often the stream backlog/pending gauges are refreshed.
    stats_interval_s: float = Field(default=5.0, gt=0)
    #: Full reload of the revocation list (pub/sub messages can be missed).
    revocation_refresh_s: float = Field(default=60.0, gt=0)
    #: Longest wait between retries while Redis or the database is down.
    max_backoff_s: float = Field(default=5.0, gt=0)
    #: An entry delivered more often than this without an ack (it crashed or hung
    #: workers) is dead-lettered as ``poison`` without being looked at again.
    max_deliveries: int = Field(default=5, ge=1, le=1000)
    #: How often acknowledged entries are trimmed from the stream and dead letters expired.
    trim_interval_s: float = Field(default=10.0, gt=0)
    #: Consumers of gone workers idle this long with nothing pending are deleted.
    stale_consumer_s: float = Field(default=600.0, gt=0)
    #: /healthz fails when the loop has not completed an iteration for this long.
    liveness_timeout_s: float = Field(default=120.0, gt=0)
    #: Most dead letters kept (the oldest are evicted and counted beyond it).
    dead_letter_maxlen: int = Field(default=100_000, ge=1)
    #: Dead letters (which hold embeddings) are deleted after this many seconds.
    dead_letter_max_age_s: float = Field(default=7 * 86400.0, gt=0)

    #: Embedding model id to match.  Unset: follow the gallery (the model of the enrolled
    #: embeddings; an empty gallery accepts any model, every event unknown; a gallery of
    #: several models needs this setting).  Events of another model are dead-lettered.
    model: str | None = None
    #: Pins the cosine similarity a match needs (unset: calibrated from the gallery,
    #: worker/calibration.py, and recalibrated whenever people are enrolled or erased).
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    #: In force while the gallery is too small to calibrate, and the calibration's floor.
    #: 0.58: the median over 20 random halvings of LFW dev of the threshold that lets in 1%
    #: of the photos of the half NOT enrolled.  See docs/worker.md "Accuracy".
    default_threshold: float = Field(default=0.58, ge=-1.0, le=1.0)
    #: Target open-set false-accept rate of the calibrated threshold (gallery impostor scores).
    target_far: float = Field(default=0.01, gt=0, lt=1)
    #: Fewer people than this: no calibration (the default threshold stays in force).
    calibration_min_people: int = Field(default=10, ge=2)
    #: Per-camera threshold overrides, JSON object ``{"node-id": 0.62, …}``.
    camera_thresholds: dict[str, float] = Field(default_factory=dict)

    #: Presences (worker/presence.py): a recognised presence locks when its aggregate score is
    #: this far above the threshold ...
    lock_margin: float = Field(default=0.05, ge=0, le=1)
    #: ... and this far above the runner-up person.
    lead_margin: float = Field(default=0.05, ge=0, le=1)
    #: A locked presence flips to another person only if that one passes the threshold and
    #: beats the locked person's score by this much.
    flip_margin: float = Field(default=0.10, ge=0, le=1)
    #: A locked presence becomes unknown only when its person's score falls this far below
    #: the threshold.
    drop_margin: float = Field(default=0.15, ge=0, le=1)
    #: An unknown presence counts as a stranger (intruder alerts, linking) once this many
    #: frames stand behind its aggregate.
    unknown_min_frames: int = Field(default=2, ge=1)

    #: Sightings of one person closer than this merge into one visit.
    cooldown_s: float = Field(default=300.0, ge=0)
    #: A corrected_utc further than this after the event's arrival (its stream id time)
    #: is suspect: attendance uses the arrival.
    clock_tolerance_s: float = Field(default=300.0, gt=0)
    #: A corrected_utc further than this before the event's arrival is back-dated
    #: (nodes buffer events for max_event_age_s = 300 s): attendance uses the arrival.
    max_event_age_s: float = Field(default=900.0, gt=0)
    #: An event whose Lamport value is more than this above the fleet's maximum is
    #: refused (dead letter ``lamport_jump``): it would drag every node's clock along.
    lamport_max_jump: int = Field(default=10_000_000, ge=1)
    #: Intruder alert: this many distinct unknown presences (people, not frames) ...
    intruder_count: int = Field(default=5, ge=1)
    #: ... within this many seconds, across all nodes.
    intruder_window_s: float = Field(default=60.0, gt=0)
    #: Queue presence events for `facegrid notifier` (webhooks, MQTT) in the batch's
    #: transaction.  Turn off only where no notifier runs (the queue would only grow).
    notify: bool = True

    @field_validator("site_timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {v!r}") from None
        return v

    @field_validator("camera_thresholds")
    @classmethod
    def _camera_thresholds(cls, v: dict[str, float]) -> dict[str, float]:
        import re

        for node, t in v.items():
            if not re.match(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$", node):
                raise ValueError(f"{node!r} is not a node id")
            if not -1.0 <= t <= 1.0:
                raise ValueError(f"threshold {t} of {node} is outside [-1, 1]")
        return v

    @field_validator("model")
    @classmethod
    def _model(cls, v: str | None) -> str | None:
        import re

        if v is None or v == "":
            return None
        if not re.match(r"^[a-z0-9][a-z0-9._-]{0,63}$", v):
            raise ValueError(f"{v!r} is not a model id")
        return v
