"""The wire format (versions 1 and 2): the one module that knows how an event looks on Redis.

A stream entry has exactly four fields:

``v``          the format version, ``b"2"`` (``b"1"`` from nodes not yet upgraded)
``token``      the node's JWT (EdDSA), checked by :mod:`facegrid.tokens`
``payload``    UTF-8 JSON object with the fields of :class:`EventPayload`
``embedding``  512 little-endian float32 values as raw bytes (2 KiB)

Version 2 adds one payload object, ``track`` (:class:`TrackSummary`): the
embedding is then the *track's* quality-weighted aggregate (the L2-normalised
weighted mean of every embedding the node computed for the track so far), and
``track`` says how many frames and how much quality weight stand behind it.
In version 1 the embedding is the latest frame's and ``track`` is absent
(decoded as ``None``).  :func:`decode` reads both; :func:`encode` writes v2
when the payload has a ``track``, v1 otherwise.  Upgrade order for a mixed
fleet: workers first (they read both), then nodes (docs/architecture.md).

Every other module builds entries with :func:`encode` and reads them with
:func:`decode`.  Decoding never raises anything but :class:`WireError`, whose
``reason`` is one of the :class:`Reason` codes (used as a bounded metric label
and stored with every dead letter).
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

VERSION = "2"
#: Versions :func:`decode` reads.
VERSIONS = (b"1", b"2")
EMBEDDING_DIM = 512
EMBEDDING_BYTES = EMBEDDING_DIM * 4
EMBEDDING_DTYPE = np.dtype("<f4")
#: An L2-normalised embedding has norm 1; float32 rounding stays far inside this.
NORM_TOLERANCE = 0.05
MAX_PAYLOAD_BYTES = 4096
MAX_TOKEN_BYTES = 4096
ENTRY_FIELDS = frozenset({"v", "token", "payload", "embedding"})

_NODE_ID_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")
_MODEL_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TZ_OFFSET_RE = re.compile(r"^[+-](0\d|1\d|2[0-3]):[0-5]\d$")
_TZ_NAME_RE = re.compile(r"^[A-Za-z0-9_+/-]{1,64}$")
_MIN_TIME = datetime(2000, 1, 1, tzinfo=UTC)
_MAX_TIME = datetime(2100, 1, 1, tzinfo=UTC)
#: corrected_utc must equal utc_timestamp + drift_offset_ms to this precision.
_DRIFT_CONSISTENCY_MS = 1.0
#: A node clock further off than this is not drift but a broken clock.
MAX_DRIFT_MS = 7 * 24 * 3600 * 1000.0
#: Highest Lamport value on the wire (exact in a double, far inside int64/BIGINT).
MAX_LAMPORT = 2**53
#: A JSON integer literal with more digits than this is refused before conversion
#: (int64 has 19 digits; 10**400 must never reach float()).
_MAX_INT_DIGITS = 20


class Reason(enum.StrEnum):
    """Why an entry was refused.  Bounded: safe as a Prometheus label."""

    UNKNOWN_VERSION = "unknown_version"
    MISSING_FIELD = "missing_field"
    EXTRA_FIELD = "extra_field"
    WRONG_TYPE = "wrong_type"
    BAD_JSON = "bad_json"
    BAD_VALUE = "bad_value"
    BAD_TIMESTAMP = "bad_timestamp"
    WRONG_LENGTH = "wrong_embedding_length"
    NOT_FINITE = "embedding_not_finite"
    BAD_NORM = "embedding_bad_norm"
    OVERSIZE = "oversize"


class WireError(ValueError):
    """An entry that is not a valid v1/v2 event.  ``reason`` is a :class:`Reason`."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Quality:
    brightness: float
    blur: float


@dataclass(slots=True)
class TrackSummary:
    """What stands behind a v2 event's aggregate embedding.

    ``frames``: embeddings of the track folded in (≥ 1); ``weight``: the sum of
    their quality weights (0 when no face of the track passed the node's
    quality gate: the embedding is then the latest frame's and must not decide
    an identity on its own); ``face_quality``: this event's face quality score
    in [0, 1] (size, sharpness, pose, detector confidence).
    """

    frames: int
    weight: float
    face_quality: float


@dataclass(slots=True)
class EventPayload:
    """The JSON part of an event.  Times are ISO-8601 strings as on the wire.

    Not frozen: a frozen dataclass's ``__init__`` costs ~5 µs more per event on
    the worker's hot path.  Treat instances as read-only.
    """

    event_id: str
    node_id: str
    lamport: int
    utc_timestamp: str
    local_time: str
    timezone: str
    timezone_offset: str
    drift_offset_ms: float
    corrected_utc: str
    track_id: int
    box: tuple[int, int, int, int]
    det_confidence: float
    quality: Quality
    model: str
    #: v2 only: the track aggregate behind the embedding (None: a v1 per-frame event).
    track: TrackSummary | None = None

    @property
    def version(self) -> str:
        return "1" if self.track is None else "2"

    def to_json(self) -> bytes:
        d = {
            "event_id": self.event_id,
            "node_id": self.node_id,
            "lamport": self.lamport,
            "utc_timestamp": self.utc_timestamp,
            "local_time": self.local_time,
            "timezone": self.timezone,
            "timezone_offset": self.timezone_offset,
            "drift_offset_ms": self.drift_offset_ms,
            "corrected_utc": self.corrected_utc,
            "track_id": self.track_id,
            "box": list(self.box),
            "det_confidence": self.det_confidence,
            "quality": {"brightness": self.quality.brightness, "blur": self.quality.blur},
            "model": self.model,
        }
        if self.track is not None:
            t = self.track
            d["track"] = {"frames": t.frames, "weight": t.weight, "face_quality": t.face_quality}
        return json.dumps(d, separators=(",", ":"), allow_nan=False).encode()


#: Payload fields of v1; v2 has these and ``track``.
PAYLOAD_FIELDS = frozenset(EventPayload.__dataclass_fields__) - {"track"}
PAYLOAD_FIELDS_V2 = PAYLOAD_FIELDS | {"track"}
QUALITY_FIELDS = frozenset(Quality.__dataclass_fields__)
TRACK_FIELDS = frozenset(TrackSummary.__dataclass_fields__)
#: Largest frame count a v2 event may claim (a day at 30 fps, with room).
MAX_TRACK_FRAMES = 2**31 - 1


@dataclass(slots=True)
class Event:
    """A decoded, structurally valid event.  The token is *not* verified here."""

    payload: EventPayload
    token: str
    embedding: np.ndarray = field(repr=False)
    corrected_at: datetime = field(repr=False)
    node_time: datetime = field(repr=False)


def format_time(t: datetime) -> str:
    """UTC instant as the wire writes it: ``2026-11-24T21:54:50.123456Z``."""
    if t.tzinfo is None:
        raise ValueError("naive datetime: facegrid only handles aware UTC instants")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode(payload: EventPayload, token: str, embedding: np.ndarray) -> dict[str, bytes]:
    """Build the Redis stream entry for one event (fields for ``XADD``)."""
    emb = np.ascontiguousarray(embedding, dtype=EMBEDDING_DTYPE).reshape(-1)
    if emb.size != EMBEDDING_DIM:
        raise WireError(Reason.WRONG_LENGTH, f"embedding has {emb.size} values, need 512")
    body = payload.to_json()
    if len(body) > MAX_PAYLOAD_BYTES:
        raise WireError(Reason.OVERSIZE, f"payload is {len(body)} bytes")
    return {"v": payload.version.encode(), "token": token.encode(), "payload": body,
            "embedding": emb.tobytes()}


def _as_bytes(value: Any, name: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    raise WireError(Reason.WRONG_TYPE, f"entry field {name!r} is {type(value).__name__}")


def _parse_utc(value: Any, name: str) -> datetime:
    if not isinstance(value, str) or len(value) > 40:
        raise WireError(Reason.BAD_TIMESTAMP, f"{name} is not an ISO-8601 string")
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise WireError(Reason.BAD_TIMESTAMP, f"{name} {value!r} is not ISO-8601") from None
    if t.tzinfo is None or t.utcoffset() != timedelta(0):
        raise WireError(Reason.BAD_TIMESTAMP, f"{name} {value!r} is not UTC")
    if not _MIN_TIME <= t < _MAX_TIME:
        raise WireError(Reason.BAD_TIMESTAMP, f"{name} {value!r} is out of range")
    return t


def _req(d: dict, key: str, types: type | tuple[type, ...], where: str = "payload") -> Any:
    v = d[key]
    # bool is an int subclass: never accept it where a number is meant.
    if not isinstance(v, types) or isinstance(v, bool):
        raise WireError(Reason.WRONG_TYPE, f"{where}.{key} has type {type(v).__name__}")
    return v


def _finite(v: float, key: str) -> float:
    try:
        f = float(v)
    except OverflowError:  # an int too large for a double (the JSON parser bounds these)
        raise WireError(Reason.BAD_VALUE, f"payload.{key} is out of range") from None
    if not math.isfinite(f):
        raise WireError(Reason.BAD_VALUE, f"payload.{key} is not finite")
    return f


def _bounded_int(literal: str) -> int:
    """``json.loads`` hook: integers are bounded by their digits before conversion."""
    if len(literal.lstrip("-")) > _MAX_INT_DIGITS:
        raise WireError(Reason.BAD_VALUE, f"integer of {len(literal)} digits is out of range")
    return int(literal)


def _check_keys(got: Mapping, expected: frozenset[str], where: str) -> None:
    keys = set(got)
    if keys != expected:
        missing = expected - keys
        if missing:
            raise WireError(Reason.MISSING_FIELD, f"{where} lacks {sorted(missing)}")
        extra = sorted(map(str, keys - expected))[:5]
        raise WireError(Reason.EXTRA_FIELD, f"{where} has unknown fields {extra}")


_NUM = (int, float)
#: Exact JSON types per payload field (``type(v) in ...``: bool is not a number here).
_PAYLOAD_TYPES: tuple[tuple[str, tuple[type, ...]], ...] = (
    ("event_id", (str,)), ("node_id", (str,)), ("lamport", (int,)),
    ("utc_timestamp", (str,)), ("local_time", (str,)), ("timezone", (str,)),
    ("timezone_offset", (str,)), ("drift_offset_ms", _NUM), ("corrected_utc", (str,)),
    ("track_id", (int,)), ("box", (list,)), ("det_confidence", _NUM), ("quality", (dict,)),
    ("model", (str,)),
)


def _decode_track(t: Any) -> TrackSummary:
    if type(t) is not dict:
        raise WireError(Reason.WRONG_TYPE, "payload.track is not an object")
    if t.keys() != TRACK_FIELDS:
        _check_keys(t, TRACK_FIELDS, "payload.track")
    frames, weight, fq = t["frames"], t["weight"], t["face_quality"]
    if type(frames) is not int or type(weight) not in _NUM or type(fq) not in _NUM:
        raise WireError(Reason.WRONG_TYPE, "payload.track values must be numbers")
    if not 1 <= frames <= MAX_TRACK_FRAMES:
        raise WireError(Reason.BAD_VALUE, "payload.track.frames out of range")
    weight = _finite(weight, "track.weight")
    if not 0.0 <= weight <= float(frames):
        raise WireError(Reason.BAD_VALUE, "payload.track.weight outside [0, frames]")
    fq = _finite(fq, "track.face_quality")
    if not 0.0 <= fq <= 1.0:
        raise WireError(Reason.BAD_VALUE, "payload.track.face_quality outside [0, 1]")
    return TrackSummary(frames, weight, fq)


def _decode_payload(raw: bytes, version: bytes = b"1") -> tuple[EventPayload, datetime, datetime]:
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise WireError(Reason.OVERSIZE, f"payload is {len(raw)} bytes (max {MAX_PAYLOAD_BYTES})")
    try:
        d = json.loads(raw, parse_int=_bounded_int)
    except WireError:
        raise
    except (ValueError, RecursionError):
        raise WireError(Reason.BAD_JSON, "payload is not valid UTF-8 JSON") from None
    if type(d) is not dict:
        raise WireError(Reason.WRONG_TYPE, "payload is not a JSON object")
    fields = PAYLOAD_FIELDS_V2 if version == b"2" else PAYLOAD_FIELDS
    if d.keys() != fields:
        _check_keys(d, fields, "payload")
    for key, types in _PAYLOAD_TYPES:
        if type(d[key]) not in types:
            raise WireError(Reason.WRONG_TYPE, f"payload.{key} has type {type(d[key]).__name__}")

    event_id = d["event_id"]
    if not _UUID_RE.match(event_id):
        raise WireError(Reason.BAD_VALUE, "payload.event_id is not a lowercase UUID")
    node_id = d["node_id"]
    if not _NODE_ID_RE.match(node_id):
        raise WireError(Reason.BAD_VALUE, "payload.node_id is not a DNS-1123 name")
    lamport = d["lamport"]
    if not 0 <= lamport <= MAX_LAMPORT:
        raise WireError(Reason.BAD_VALUE, "payload.lamport out of range (0 to 2**53)")
    model = d["model"]
    if not _MODEL_RE.match(model):
        raise WireError(Reason.BAD_VALUE, "payload.model is not a model id")
    tz = d["timezone"]
    if not _TZ_NAME_RE.match(tz):
        raise WireError(Reason.BAD_VALUE, "payload.timezone is not an IANA name")
    tz_off = d["timezone_offset"]
    if not _TZ_OFFSET_RE.match(tz_off):
        raise WireError(Reason.BAD_VALUE, "payload.timezone_offset is not ±HH:MM")
    drift = _finite(d["drift_offset_ms"], "drift_offset_ms")
    if abs(drift) > MAX_DRIFT_MS:
        raise WireError(Reason.BAD_VALUE, "payload.drift_offset_ms exceeds a week")
    track_id = d["track_id"]
    if not 0 <= track_id < 2**63:
        raise WireError(Reason.BAD_VALUE, "payload.track_id out of range")
    box = d["box"]
    if len(box) != 4 or not all(type(b) is int for b in box):
        raise WireError(Reason.BAD_VALUE, "payload.box must be 4 integers [x1, y1, x2, y2]")
    if not (0 <= box[0] <= box[2] < 2**16 and 0 <= box[1] <= box[3] < 2**16):
        raise WireError(Reason.BAD_VALUE, "payload.box is not an ordered pixel box")
    conf = _finite(d["det_confidence"], "det_confidence")
    if not 0.0 <= conf <= 1.0:
        raise WireError(Reason.BAD_VALUE, "payload.det_confidence outside [0, 1]")
    q = d["quality"]
    if q.keys() != QUALITY_FIELDS:
        _check_keys(q, QUALITY_FIELDS, "payload.quality")
    brightness, blur = q["brightness"], q["blur"]
    if type(brightness) not in _NUM or type(blur) not in _NUM:
        raise WireError(Reason.WRONG_TYPE, "payload.quality values must be numbers")
    quality = Quality(brightness=_finite(brightness, "quality.brightness"),
                      blur=_finite(blur, "quality.blur"))

    node_time = _parse_utc(d["utc_timestamp"], "utc_timestamp")
    corrected = _parse_utc(d["corrected_utc"], "corrected_utc")
    expected = node_time + timedelta(milliseconds=drift)
    if abs((corrected - expected).total_seconds() * 1000.0) > _DRIFT_CONSISTENCY_MS:
        raise WireError(Reason.BAD_TIMESTAMP,
                        "corrected_utc != utc_timestamp + drift_offset_ms")
    local_raw = d["local_time"]
    if len(local_raw) > 40 or not local_raw.endswith(tz_off):
        raise WireError(Reason.BAD_TIMESTAMP, "local_time offset differs from timezone_offset")
    try:
        local = datetime.fromisoformat(local_raw)
    except ValueError:
        raise WireError(Reason.BAD_TIMESTAMP, "local_time is not ISO-8601") from None
    if local.tzinfo is None or abs((local - node_time).total_seconds()) > 0.001:
        raise WireError(Reason.BAD_TIMESTAMP, "local_time is not the same instant as utc_timestamp")

    track = _decode_track(d["track"]) if version == b"2" else None
    payload = EventPayload(
        event_id, node_id, lamport, d["utc_timestamp"], local_raw, tz, tz_off, drift,
        d["corrected_utc"], track_id, (box[0], box[1], box[2], box[3]), conf, quality, model,
        track,
    )
    return payload, corrected, node_time


def decode_embedding(raw: bytes) -> np.ndarray:
    """512 little-endian float32 → array, checking length, finiteness and unit norm."""
    if len(raw) != EMBEDDING_BYTES:
        raise WireError(Reason.WRONG_LENGTH,
                        f"embedding is {len(raw)} bytes, need {EMBEDDING_BYTES}")
    emb = np.frombuffer(raw, dtype=EMBEDDING_DTYPE)
    sq = float(np.dot(emb, emb))
    if not math.isfinite(sq):
        raise WireError(Reason.NOT_FINITE, "embedding holds NaN or infinity")
    if abs(math.sqrt(sq) - 1.0) > NORM_TOLERANCE:
        raise WireError(Reason.BAD_NORM, f"embedding norm {math.sqrt(sq):.4f} is not 1")
    return emb


def decode(fields: Mapping[Any, Any]) -> Event:
    """Decode one stream entry (keys/values as bytes or str, as redis-py returns them)."""
    if not isinstance(fields, Mapping):
        raise WireError(Reason.WRONG_TYPE, "entry is not a mapping")
    try:
        entry = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
    except UnicodeDecodeError:
        raise WireError(Reason.EXTRA_FIELD, "entry has a non-UTF-8 field name") from None
    if len(entry) != len(fields):
        raise WireError(Reason.EXTRA_FIELD, "entry has duplicate field names")
    version = entry.get("v")
    if version is None:
        raise WireError(Reason.MISSING_FIELD, "entry lacks 'v'")
    version = _as_bytes(version, "v")
    if version not in VERSIONS:
        raise WireError(Reason.UNKNOWN_VERSION,
                        f"version {str(version)[:16]!r} is not '1' or '2'")
    _check_keys(entry, ENTRY_FIELDS, "entry")
    token_raw = _as_bytes(entry["token"], "token")
    if len(token_raw) > MAX_TOKEN_BYTES:
        raise WireError(Reason.OVERSIZE, f"token is {len(token_raw)} bytes")
    try:
        token = token_raw.decode("ascii")
    except UnicodeDecodeError:
        raise WireError(Reason.WRONG_TYPE, "token is not ASCII") from None
    payload, corrected, node_time = _decode_payload(_as_bytes(entry["payload"], "payload"),
                                                    version)
    embedding = decode_embedding(_as_bytes(entry["embedding"], "embedding"))
    return Event(payload=payload, token=token, embedding=embedding,
                 corrected_at=corrected, node_time=node_time)


def parse_time(value: str) -> datetime:
    """Parse a wire UTC timestamp (for stores and tests)."""
    return _parse_utc(value, "time")


# --- the per-event result (worker -> node, pub/sub on keys.results_channel) -----------


@dataclass(frozen=True, slots=True)
class Result:
    """What the worker tells a node about one of its events: recognised yes/no, never a name.

    On the wire: compact JSON ``{"event_id":"…","track_id":N,"recognised":true}``.
    """

    event_id: str
    track_id: int
    recognised: bool

    def to_json(self) -> str:
        return result_json(self.event_id, self.track_id, self.recognised)


def result_json(event_id: str, track_id: int, recognised: bool) -> str:
    """The result message (the worker's hot path: no dataclass, no json.dumps).

    ``event_id`` is a checked lowercase UUID and ``track_id`` an int, so nothing needs
    escaping: the text equals ``json.dumps(..., separators=(",", ":"))``.
    """
    return (f'{{"event_id":"{event_id}","track_id":{track_id:d},'
            f'"recognised":{"true" if recognised else "false"}}}')


def decode_result(data: bytes | str) -> Result:
    """Parse a result message; raises :class:`WireError` for anything else."""
    if len(data) > 256:
        raise WireError(Reason.OVERSIZE, f"result is {len(data)} bytes")
    try:
        d = json.loads(data, parse_int=_bounded_int)
    except WireError:
        raise
    except (ValueError, RecursionError):
        raise WireError(Reason.BAD_JSON, "result is not JSON") from None
    if type(d) is not dict:
        raise WireError(Reason.WRONG_TYPE, "result is not a JSON object")
    _check_keys(d, frozenset(Result.__dataclass_fields__), "result")
    event_id, track_id, ok = d["event_id"], d["track_id"], d["recognised"]
    if type(event_id) is not str or not _UUID_RE.match(event_id):
        raise WireError(Reason.BAD_VALUE, "result.event_id is not a lowercase UUID")
    if type(track_id) is not int or not 0 <= track_id < 2**63:
        raise WireError(Reason.BAD_VALUE, "result.track_id is not a track id")
    if type(ok) is not bool:
        raise WireError(Reason.WRONG_TYPE, "result.recognised is not a boolean")
    return Result(event_id, track_id, ok)
