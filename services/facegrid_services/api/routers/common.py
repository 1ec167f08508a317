"""Shared, bounded query and path parameters (so bad input is a 422, never a 500)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import HTTPException, Path, Query, status

from facegrid.types import NODE_ID_PATTERN

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size (1–1000)")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="Items to skip")]
PersonId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Person id")]
OptPersonId = Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Person id")]
OptNodeId = Annotated[str | None, Query(pattern=NODE_ID_PATTERN, description="Node id")]

_MIN = datetime(1970, 1, 1, tzinfo=UTC)
_MAX = datetime(2200, 1, 1, tzinfo=UTC)


def utc_instant(value: datetime | None, name: str) -> datetime | None:
    """An aware UTC instant (naive values are read as UTC) inside a sane range."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"{name} is out of range") from None
    if not _MIN <= value < _MAX:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"{name} must lie between 1970 and 2200")
    return value


def check_range(start, end, what: str = "start") -> None:
    if start is not None and end is not None and end < start:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"end is before {what}")
