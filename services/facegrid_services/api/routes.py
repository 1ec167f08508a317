"""The route template of a request: the bounded label of metrics and the audit log."""

from __future__ import annotations

from facegrid.contract import API_PREFIX


def route_template(scope) -> str:
    """The matched route's path template, e.g. ``/api/v1/people/{person_id}`` (bounded).

    Routers are included under API_PREFIX; FastAPI keeps their own routes' paths
    relative to it, so the prefix is put back here for the label.
    """
    template = getattr(scope.get("route"), "path", None)
    if not template:
        return "unmatched"
    if scope.get("path", "").startswith(f"{API_PREFIX}/") and not template.startswith(API_PREFIX):
        return API_PREFIX + template
    return template
