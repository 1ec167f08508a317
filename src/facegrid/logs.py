"""Logging set-up shared by every entry point (logic modules only getLogger)."""

from __future__ import annotations

import logging
import os
import sys

#: The variable every component's Settings reads as ``log_level``.
LEVEL_ENV = "FACEGRID_LOG_LEVEL"
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure(level: str | None = None) -> None:
    """Configure root logging once, to stderr; level from arg or FACEGRID_LOG_LEVEL."""
    name = (level or os.environ.get(LEVEL_ENV) or "INFO").upper()
    logging.basicConfig(level=getattr(logging, name, logging.INFO), format=_FORMAT,
                        stream=sys.stderr, force=True)
