"""The value rules every component shares, each written once.

A rule lives here as a pattern (for JSON schemas, the CRD and FastAPI path and
query parameters), a check function (for hot paths that do not go through
pydantic, such as :mod:`facegrid.wire`) and an annotated type (for pydantic
models and Settings).  Nothing else in the tree writes these patterns again.

Time zones: a zone is valid when its name has the shape of an IANA name
(:data:`ZONE_NAME_PATTERN`: letters, digits, ``_+-/``, no dots, no leading
``/``) AND :class:`zoneinfo.ZoneInfo` loads it from the system zone database
or the ``tzdata`` package.  That is what every component needs (they all
convert with ``ZoneInfo``); the shape check comes first so a name is never
read as a path.  The wire format checks the shape only: a node with newer
zone data than the worker must not lose its events.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import lru_cache
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, StringConstraints

#: DNS-1123 label: a node id is the CameraNode's name, so Kubernetes' rule.
NODE_ID_PATTERN = r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$"
NODE_ID_MAX = 63
#: Embedding model id, e.g. ``facenet-vggface2``.
MODEL_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
MODEL_ID_MAX = 64
#: The shape of an IANA zone name (never a path: no dots, no leading ``/``).
ZONE_NAME_PATTERN = r"^[A-Za-z0-9_+-][A-Za-z0-9_+/-]{0,63}$"
ZONE_NAME_MAX = 64

#: A Redis URL as redis-py reads it.
REDIS_URL_PATTERN = r"^(redis|rediss|unix)://\S+$"
#: An http(s) base URL (the API server).
HTTP_URL_PATTERN = r"^https?://\S+$"

NODE_ID_RE = re.compile(NODE_ID_PATTERN)
MODEL_ID_RE = re.compile(MODEL_ID_PATTERN)
ZONE_NAME_RE = re.compile(ZONE_NAME_PATTERN)

LogLevelName = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def is_node_id(value: object) -> bool:
    return isinstance(value, str) and NODE_ID_RE.match(value) is not None


def is_model_id(value: object) -> bool:
    return isinstance(value, str) and MODEL_ID_RE.match(value) is not None


def is_zone_name(value: object) -> bool:
    """The shape of an IANA name (what the wire format checks)."""
    return isinstance(value, str) and ZONE_NAME_RE.match(value) is not None


@lru_cache(maxsize=1024)
def _loads(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def check_zone(name: object) -> str:
    """Return ``name`` if it is a known IANA zone, else raise ValueError saying so."""
    if not is_zone_name(name) or not _loads(name):  # type: ignore[arg-type]
        raise ValueError(f"unknown time zone {str(name)[:64]!r}: use an IANA name "
                         "such as Europe/Paris or UTC")
    return name  # type: ignore[return-value]


def zone(name: str) -> ZoneInfo:
    """The checked zone (raises ValueError with the message of :func:`check_zone`)."""
    return ZoneInfo(check_zone(name))


def check_node_id(value: str) -> str:
    if not is_node_id(value):
        raise ValueError(f"{str(value)[:80]!r} is not a node id (a DNS-1123 label: lowercase "
                         "letters, digits, '-' and '.', at most 63 characters)")
    return value


def check_model_id(value: str) -> str:
    if not is_model_id(value):
        raise ValueError(f"{str(value)[:80]!r} is not a model id (must match "
                         f"{MODEL_ID_PATTERN})")
    return value


#: A node id (DNS-1123 label), for pydantic models and Settings.
NodeId = Annotated[str, StringConstraints(pattern=NODE_ID_PATTERN, max_length=NODE_ID_MAX)]
#: An embedding model id, for pydantic models and Settings.
ModelId = Annotated[str, StringConstraints(pattern=MODEL_ID_PATTERN, max_length=MODEL_ID_MAX)]
#: A Redis URL (redis://, rediss:// or unix://).
RedisUrl = Annotated[str, StringConstraints(pattern=REDIS_URL_PATTERN)]
#: An http(s) URL.
HttpUrl = Annotated[str, StringConstraints(pattern=HTTP_URL_PATTERN)]
#: A known IANA time zone name (see the module docstring for the rule).
IanaZone = Annotated[str, StringConstraints(max_length=ZONE_NAME_MAX),
                     AfterValidator(check_zone)]


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _iso_datetime(value):
    """Only ISO-8601 text (or a datetime): pydantic would read "0.5" as a Unix time."""
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_DATETIME.match(value)):
        return value
    raise ValueError("must be an ISO-8601 date and time, e.g. 2026-12-02T08:00:00Z")


def _iso_date(value):
    """Only YYYY-MM-DD (or a date): pydantic would read 0 as 1970-01-01."""
    if (isinstance(value, date) and not isinstance(value, datetime)) or (
            isinstance(value, str) and _ISO_DATE.match(value)):
        return value
    raise ValueError("must be a date YYYY-MM-DD")


#: A date-time given as ISO-8601 text (what the OpenAPI format date-time promises).
IsoDateTime = Annotated[datetime, BeforeValidator(_iso_datetime)]
#: A calendar date given as YYYY-MM-DD.
IsoDate = Annotated[date, BeforeValidator(_iso_date)]
