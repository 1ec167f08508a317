"""kopf handlers, one concern per module; each exposes ``register(registry, ctx)``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MODULES = ("startup", "token", "deployment", "status", "nodes", "delete")


def plain(obj: Any) -> Any:
    """kopf's read-only body views as plain dicts and lists (JSON-ready)."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    return obj
