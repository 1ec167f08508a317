"""IANA time-zone names: validated against the zone database, never opened as paths."""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones()) | {"UTC"}


def validate_timezone(name: str) -> str:
    """Return ``name`` if it is a known IANA zone, else raise ValueError saying so."""
    if not isinstance(name, str) or name not in _zones():
        raise ValueError(f"unknown time zone {str(name)[:64]!r}: use an IANA name "
                         "such as Europe/Paris or UTC")
    return name


def zone(name: str) -> ZoneInfo:
    return ZoneInfo(validate_timezone(name))
