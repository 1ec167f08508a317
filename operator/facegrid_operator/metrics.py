"""Prometheus metrics of the operator (prefix facegrid_operator_; bounded labels only)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "facegrid_operator_reconciles_total",
    "Reconcile steps run, by stage (token, redis, deployment, delete) and result.",
    ["stage", "reason"],
)
RECONCILE_SECONDS = Histogram(
    "facegrid_operator_reconcile_seconds",
    "Time spent in one reconcile step, by stage.",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
KUBE_REQUESTS = Counter(
    "facegrid_operator_kube_requests_total",
    "Kubernetes API requests sent by the operator's own client (not kopf's watches and "
    "progress patches), by verb and resource.",
    ["verb", "resource"],
)
TOKENS_ISSUED = Counter(
    "facegrid_operator_tokens_issued_total",
    "Node tokens issued, by reason (create, rotate).",
    ["reason"],
)
REVOCATIONS = Counter(
    "facegrid_operator_revocations_total",
    "Token revocations sent to the server when a CameraNode is deleted, by state.",
    ["state"],
)
SERVER_ERRORS = Counter(
    "facegrid_operator_server_errors_total",
    "Calls to the facegrid API server that failed, by reason.",
    ["reason"],
)
CAMERAS = Gauge(
    "facegrid_operator_cameranodes",
    "CameraNodes by phase, as last written by this operator.",
    ["state"],
)
INVALID_SPECS = Counter(
    "facegrid_operator_invalid_specs_total",
    "CameraNodes found invalid, by reason.",
    ["reason"],
)
TOKEN_EXPIRY = Gauge(
    "facegrid_operator_token_expiry_timestamp_seconds",
    "Expiry (Unix time) of each camera's current node token; the token-expiring alert "
    "compares it with time().",
    ["camera"],
)


def camera_label(namespace: str, name: str) -> str:
    """Bounded label for one CameraNode (one series per camera, removed on delete)."""
    return f"{namespace}/{name}"


# Bounded label values that stay at 0 while all is well exist from the start (the
# chart's alerts use increase(), which needs the 0 before the first failure).
for _stage, _reasons in (("token", ("ok", "api_error", "invalid")),
                         ("deployment", ("ok", "api_error", "invalid")), ("delete", ("ok",))):
    for _reason in _reasons:
        RECONCILES.labels(stage=_stage, reason=_reason)
for _reason in ("no_admin_token", "unreachable", "server_error", "unauthorized", "refused",
                "bad_reply"):
    SERVER_ERRORS.labels(reason=_reason)
