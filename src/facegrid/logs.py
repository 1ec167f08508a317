"""Logging set-up shared by every entry point (logic modules only getLogger)."""

from __future__ import annotations

import logging
import os
import sys

#: The variable every component's Settings reads as ``log_level``.
LEVEL_ENV = "FACEGRID_LOG_LEVEL"
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
#: Libraries whose INFO lines are chatter to a user (httpx logs every request: a node
#: would print two lines a heartbeat); their warnings still show, all of it at DEBUG.
QUIET_LIBRARIES = ("httpx", "httpcore")


def configure(level: str | None = None) -> None:
    """Configure root logging once, to stderr; level from arg or FACEGRID_LOG_LEVEL."""
    name = (level or os.environ.get(LEVEL_ENV) or "INFO").upper()
    lvl = getattr(logging, name, logging.INFO)
    logging.basicConfig(level=lvl, format=_FORMAT, stream=sys.stderr, force=True)
    for lib in QUIET_LIBRARIES:
        logging.getLogger(lib).setLevel(lvl if lvl <= logging.DEBUG else logging.WARNING)
