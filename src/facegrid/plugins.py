"""The components plug into the core through entry points; the core imports none of them.

Two groups, declared in pyproject.toml by each component:

* ``facegrid.commands``: ``register(app: typer.Typer)`` adds the component's
  sub-commands (``facegrid node``, ``facegrid worker`` …) to the CLI;
* ``facegrid.reference``: ``reference() -> list[SettingsDoc | MetricsDoc]`` gives
  the Settings classes and metrics that ``docs/configuration.md`` and
  ``docs/metrics.md`` are generated from.

An entry point whose own package is not there is left out (a partial install);
any other import error is a bug and is raised.  Component modules named here
import only typer/pydantic at module level, heavy libraries inside commands.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

log = logging.getLogger(__name__)

COMMANDS = "facegrid.commands"
REFERENCE = "facegrid.reference"


@dataclass(frozen=True, slots=True)
class SettingsDoc:
    """One component's Settings class, for docs/configuration.md."""

    order: int
    title: str
    command: str
    settings: type


@dataclass(frozen=True, slots=True)
class MetricsDoc:
    """One component's metric objects, for docs/metrics.md."""

    order: int
    title: str
    metrics: list[Any] = field(default_factory=list)


def load(group: str) -> Iterator[tuple[str, Any]]:
    """``(name, loaded object)`` of every entry point of ``group``, sorted by name."""
    seen: set[str] = set()
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        if ep.name in seen:  # the same distribution found twice on sys.path
            continue
        seen.add(ep.name)
        try:
            obj = ep.load()
        except ModuleNotFoundError as e:
            if e.name is None or not ep.module.startswith(e.name):
                raise
            log.debug("component %s is not installed: %s", ep.name, e)
            continue
        yield ep.name, obj
