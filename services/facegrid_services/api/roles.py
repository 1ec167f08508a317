"""Roles of API tokens and what each may do (the one place that ranks them).

``viewer`` reads reports and the live view; ``operator`` also manages people,
enrollment, alerts and the stream's backlog; ``admin`` may do everything,
including erasure, tokens, webhooks and dead-letter replay.  Each role
includes the ones below it.  Node tokens (JWTs) are a separate kind of
credential and reach only the node routes.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    viewer = "viewer"
    operator = "operator"
    admin = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Role) -> bool:
        """True if a token of this role may use a route that needs ``needed``."""
        return self.rank >= needed.rank


_RANK = {Role.viewer: 0, Role.operator: 1, Role.admin: 2}


#: What the dashboard shows or hides, by the lowest role that may do it.
CAPABILITIES: dict[str, Role] = {
    "read": Role.viewer,              # live view, fleet, alerts, attendance report
    "acknowledge_alerts": Role.operator,
    "manage_people": Role.operator,   # create, rename, enroll
    "manage_schedules": Role.operator,  # groups, schedules, closures
    "correct_attendance": Role.operator,  # corrections (audited)
    "view_stream": Role.operator,     # backlog, dead letters
    "erase_people": Role.admin,       # and repeat strangers
    "replay_dead_letters": Role.admin,
    "manage_tokens": Role.admin,      # API tokens, node token revocation, audit log
    "manage_webhooks": Role.admin,
}


def capabilities(role: Role) -> list[str]:
    return [name for name, needed in CAPABILITIES.items() if role.allows(needed)]
