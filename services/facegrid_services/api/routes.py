"""What the metrics and audit middlewares read of a request: route template and status."""

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


class StatusRecorder:
    """An ASGI ``send`` that remembers the response status (500 until one is sent)."""

    def __init__(self, send) -> None:
        self._send = send
        self.status = 500

    async def __call__(self, message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self._send(message)
