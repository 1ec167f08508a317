"""Prometheus metrics of the API server (prefix facegrid_server_; bounded labels only)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from facegrid.tokens import TokenReason

REQUESTS = Counter(
    "facegrid_server_http_requests_total",
    "HTTP requests by method, route template and status class.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "facegrid_server_http_request_seconds",
    "HTTP request latency by route template.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
TOKENS_REFUSED = Counter(
    "facegrid_server_tokens_refused_total",
    "Node tokens refused on node routes, by reason.",
    ["reason"],
)
ADMIN_REFUSED = Counter(
    "facegrid_server_admin_refused_total",
    "Management requests refused (401), by reason (missing, invalid, expired, revoked).",
    ["reason"],
)
HEARTBEATS = Counter(
    "facegrid_server_heartbeats_total", "Heartbeats accepted from nodes.")
REGISTRATIONS = Counter(
    "facegrid_server_registrations_total", "Node registrations accepted.")
GALLERY_CHANGES = Counter(
    "facegrid_server_gallery_changes_total",
    "Gallery changes announced to workers, by change.",
    ["change"],
)
GALLERY_NOTIFY_FAILED = Counter(
    "facegrid_server_gallery_notify_failures_total",
    "Gallery changes that could not be published to Redis.")
REVOCATIONS = Counter(
    "facegrid_server_revocations_total", "Tokens revoked through the API.")
REVOKED_KNOWN = Gauge(
    "facegrid_server_revoked_tokens", "Revoked token ids known to this server.")
DEAD_LETTERS_REPLAYED = Counter(
    "facegrid_server_dead_letters_replayed_total", "Dead letters put back on the events stream.")
DEAD_LETTERS_ERASED = Counter(
    "facegrid_server_dead_letters_erased_total",
    "Dead letters deleted because they matched a person being erased.")
ERASE_DEAD_LETTERS_FAILED = Counter(
    "facegrid_server_erase_dead_letters_failures_total",
    "Erasures whose dead-letter scan failed (Redis unreachable); those expire by age.")
RETENTION_DELETED = Counter(
    "facegrid_server_retention_deleted_total",
    "Sightings, presences and strangers deleted by the retention job.")
RETENTION_RUNS = Counter(
    "facegrid_server_retention_runs_total", "Retention job runs, by outcome.", ["outcome"])
ROLE_FORBIDDEN = Counter(
    "facegrid_server_role_forbidden_total",
    "Requests refused with 403 because the token's role is too low, by the token's role.",
    ["role"],
)
AUDIT_FAILURES = Counter(
    "facegrid_server_audit_failures_total",
    "Management writes whose audit entry could not be written.")
AUTH_THROTTLED = Counter(
    "facegrid_server_auth_throttled_total",
    "Requests refused with 429: their client failed authentication too often.")
BODY_TOO_LARGE = Counter("facegrid_server_body_too_large_total",
                         "Requests refused with 413: body over max_body_bytes.")


# Refusal reasons exist at 0 from the start (dashboards, increase() in the alerts).
for _reason in ("missing", *(r.value for r in TokenReason)):
    TOKENS_REFUSED.labels(_reason)
