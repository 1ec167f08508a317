"""Prometheus metrics of the classify worker (served on :9101 /metrics).

Labels are bounded: ``reason`` (wire/token/check codes), ``stage`` and
``state`` (recognised/unknown).  Never a person's name.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONSUMED = Counter("facegrid_worker_consumed_total",
                   "Stream entries read (new and redelivered/reclaimed).")
ACKED = Counter("facegrid_worker_acked_total", "Stream entries acknowledged after commit.")
DEAD_LETTERS = Counter("facegrid_worker_dead_lettered_total",
                       "Entries moved to the dead-letter stream.", ["reason"])
DUPLICATES = Counter("facegrid_worker_duplicates_total",
                     "Valid events already in the store (redelivery or re-send).")
RECLAIMED = Counter("facegrid_worker_reclaimed_total",
                    "Pending entries of a dead consumer claimed by this worker.")
SIGHTINGS = Counter("facegrid_worker_sightings_total", "Sightings stored.", ["state"])
ALERTS = Counter("facegrid_worker_alerts_total", "Intruder alerts raised.")
ERRORS = Counter("facegrid_worker_errors_total",
                 "Transient failures (retried with backoff).", ["stage"])
BATCH_SIZE = Histogram("facegrid_worker_batch_size", "Entries per batch.",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096))
STAGE_SECONDS = Histogram("facegrid_worker_stage_seconds",
                          "Time per batch in each stage.", ["stage"],
                          buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                   0.25, 0.5, 1.0, 2.5))
CLASSIFY_LATENCY = Histogram(
    "facegrid_worker_classify_latency_seconds",
    "From XADD (stream id time) to the event's commit and ack.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0))
MATCH_SCORE = Histogram("facegrid_worker_match_score",
                        "Best cosine similarity of each event against the gallery.",
                        buckets=tuple(round(x * 0.05, 2) for x in range(-4, 21)))
UNKNOWN_RATIO = Gauge("facegrid_worker_unknown_ratio",
                      "Share of unknown sightings in the last batch.")
BACKLOG = Gauge("facegrid_worker_stream_backlog",
                "Entries not yet delivered to the worker group (XINFO GROUPS lag).")
PENDING = Gauge("facegrid_worker_stream_pending",
                "Entries delivered but not acknowledged (whole group).")
GALLERY_EMBEDDINGS = Gauge("facegrid_worker_gallery_embeddings",
                           "Embeddings in this worker's in-memory gallery.")
GALLERY_PEOPLE = Gauge("facegrid_worker_gallery_people", "People in the gallery.")
GALLERY_RELOADS = Counter("facegrid_worker_gallery_reloads_total", "Gallery reloads.")
THRESHOLD = Gauge("facegrid_worker_threshold", "Similarity threshold in use.")
THRESHOLD_SUGGESTED = Gauge(
    "facegrid_worker_threshold_suggested",
    "Threshold giving the target false-accept rate among different-person gallery pairs.")
REVOKED_KNOWN = Gauge("facegrid_worker_revoked_tokens", "Revoked token ids known.")
LAMPORT_MAX = Gauge("facegrid_worker_lamport_max", "Highest Lamport value seen.")
STREAM_ID_AHEAD = Gauge(
    "facegrid_worker_stream_id_ahead_seconds",
    "How far the event stream's last entry id is ahead of the worker's clock (a client "
    "XADDed an explicit future id: later ids inherit it and backlog ages read 0).")
BACKLOG_AGE = Gauge("facegrid_worker_stream_backlog_age_seconds",
                    "Age of the oldest entry not yet delivered to the worker group (from its "
                    "stream id: right after a Redis restart too); 0 when none.")
PENDING_AGE = Gauge("facegrid_worker_stream_pending_age_seconds",
                    "Age of the oldest delivered but unacknowledged entry; 0 when none.")
TRIMMED = Counter("facegrid_worker_stream_trimmed_total",
                  "Acknowledged entries deleted from the event stream (XTRIM MINID).")
DEAD_LETTERS_EVICTED = Counter(
    "facegrid_worker_dead_letters_evicted_total",
    "Dead letters deleted: the stream's cap reached (maxlen), their lifetime over (expired) or "
    "Redis' memory above dead_letter_memory_ratio of maxmemory (memory).",
    ["reason"])
DEAD_LETTERS_DROPPED = Counter(
    "facegrid_worker_dead_letters_dropped_total",
    "Dead letters Redis was too full to take even after trimming (logged, never stored), "
    "by reason.", ["reason"])
REDIS_FULL = Counter(
    "facegrid_worker_redis_full_total",
    "Acknowledgements Redis refused for want of memory (maxmemory reached).")
CONSUMERS_REMOVED = Counter("facegrid_worker_consumers_removed_total",
                            "Consumers of gone workers deleted from the group.")
REDIS_USED_MEMORY = Gauge("facegrid_worker_redis_used_memory_bytes",
                          "Redis used_memory (INFO memory).")
REDIS_MAXMEMORY = Gauge("facegrid_worker_redis_maxmemory_bytes",
                        "Redis maxmemory (0: unbounded).")
LAST_PROGRESS = Gauge("facegrid_worker_loop_last_progress_timestamp_seconds",
                      "When the worker loop last completed an iteration (liveness).")


# Bounded label values that may stay at 0 for long exist from the start (dashboards,
# increase() in the alerts: a counter's first sample is its baseline).
for _stage in ("redis", "database", "internal", "store_refused"):
    ERRORS.labels(_stage)
for _reason in ("maxlen", "expired", "memory"):
    DEAD_LETTERS_EVICTED.labels(_reason)
