"""CameraNode status: conditions and the phase derived from them (pure functions)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime


class Phase(enum.StrEnum):
    PENDING = "Pending"
    DEPLOYING = "Deploying"
    RUNNING = "Running"
    DEGRADED = "Degraded"
    INVALID = "Invalid"
    PAUSED = "Paused"


class Cond(enum.StrEnum):
    VALID = "Valid"
    TOKEN_READY = "TokenReady"
    DEPLOYED = "Deployed"
    SCHEDULED = "Scheduled"
    HEARTBEATING = "Heartbeating"


ORDER = [Cond.VALID, Cond.TOKEN_READY, Cond.DEPLOYED, Cond.SCHEDULED, Cond.HEARTBEATING]
TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(status: str, reason: str, message: str) -> dict:
    return {"status": status, "reason": reason, "message": message}


def merge(existing: list[dict] | None, updates: dict[str, dict], generation: int | None,
          now: str | None = None) -> list[dict]:
    """New condition list: ``updates`` maps type -> {status, reason, message}.

    ``lastTransitionTime`` changes only when a condition's status changes;
    types not in ``updates`` keep their old value.  Sorted in a fixed order.
    """
    now = now or now_iso()
    by_type = {c["type"]: dict(c) for c in existing or [] if "type" in c}
    for ctype, new in updates.items():
        old = by_type.get(ctype)
        cond = {"type": str(ctype), "status": new["status"], "reason": new["reason"],
                "message": new["message"]}
        if old is not None and old.get("status") == new["status"] and old.get(
                "lastTransitionTime"):
            cond["lastTransitionTime"] = old["lastTransitionTime"]
        else:
            cond["lastTransitionTime"] = now
        if generation is not None:
            cond["observedGeneration"] = int(generation)
        by_type[str(ctype)] = cond
    rank = {str(c): i for i, c in enumerate(ORDER)}
    return sorted(by_type.values(), key=lambda c: (rank.get(c["type"], 99), c["type"]))


def get(conds: list[dict] | None, ctype: str) -> dict | None:
    return next((c for c in conds or [] if c.get("type") == str(ctype)), None)


def is_status(conds: list[dict] | None, ctype: str, status: str) -> bool:
    c = get(conds, ctype)
    return c is not None and c.get("status") == status


def phase(conds: list[dict] | None, *, paused: bool, ready: bool, failing: bool) -> Phase:
    """The phase a camera is in, from its conditions and its pod.

    ``ready``: the node pod is Ready; ``failing``: it crashes or cannot start
    (CrashLoopBackOff, image pull errors, restarts while not ready).
    """
    if is_status(conds, Cond.VALID, FALSE):
        return Phase.INVALID
    if paused:
        return Phase.PAUSED
    if not is_status(conds, Cond.TOKEN_READY, TRUE) or not is_status(conds, Cond.DEPLOYED, TRUE):
        return Phase.PENDING
    if ready:
        if is_status(conds, Cond.HEARTBEATING, FALSE):
            return Phase.DEGRADED
        return Phase.RUNNING
    if failing:
        return Phase.DEGRADED
    return Phase.DEPLOYING
