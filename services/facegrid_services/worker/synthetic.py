"""Valid, signed v1 events for the benchmark, tests and demos (never used by the worker).

Builds entries exactly as a node would: UUIDv7 ids, Lamport values, time
fields from :func:`facegrid.clock.event_times`, :func:`facegrid.wire.encode`.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import numpy as np

from facegrid import clock, wire


def unit_vectors(n: int, rng: np.random.Generator, dim: int = wire.EMBEDDING_DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def near(base: np.ndarray, rng: np.random.Generator, noise: float = 0.03) -> np.ndarray:
    """A unit vector close to ``base`` (a new photo of the same face)."""
    v = base + noise * rng.standard_normal(base.shape).astype(np.float32)
    return (v / np.linalg.norm(v)).astype(np.float32)


class EventFactory:
    """Entries from one node: ``entry(embedding)`` → fields for ``XADD``."""

    def __init__(self, node_id: str, token: str, *, model: str = "facenet-casia-webface",
                 timezone: str = "UTC", drift_offset_ms: float = 0.0, lamport: int = 0) -> None:
        self.node_id = node_id
        self.token = token
        self.model = model
        self.timezone = timezone
        self.drift_offset_ms = drift_offset_ms
        self.lamport = clock.LamportClock(lamport)
        self._track = itertools.count(1)

    def payload(self, at: datetime | None = None, **overrides) -> wire.EventPayload:
        node_utc = at or datetime.now(UTC)
        fields = dict(
            event_id=clock.uuid7(), node_id=self.node_id, lamport=self.lamport.tick(),
            **clock.event_times(node_utc, self.drift_offset_ms, self.timezone),
            track_id=next(self._track), box=(10, 20, 110, 140), det_confidence=0.99,
            quality=wire.Quality(brightness=120.0, blur=300.0), model=self.model)
        fields.update(overrides)
        return wire.EventPayload(**fields)

    def entry(self, embedding: np.ndarray, at: datetime | None = None,
              **overrides) -> dict[str, bytes]:
        return wire.encode(self.payload(at, **overrides), self.token, embedding)


def day_times(start: datetime, n: int, step_s: float) -> list[datetime]:
    return [start + timedelta(seconds=i * step_s) for i in range(n)]
