from __future__ import annotations

import numpy as np
import pytest

from facegrid import clock, tokens, wire


@pytest.fixture(scope="session")
def signing_key():
    return tokens.generate_private_key()


@pytest.fixture
def unit_embedding():
    v = np.random.default_rng(7).normal(size=512).astype("<f4")
    return v / np.linalg.norm(v)


def _make_payload(node_id: str = "cam-01", **over) -> wire.EventPayload:
    from datetime import UTC, datetime

    times = clock.event_times(datetime(2026, 11, 24, 8, 30, tzinfo=UTC), 12.5, "Europe/Paris")
    fields = dict(event_id=clock.uuid7(), node_id=node_id, lamport=7, track_id=3,
                  box=(10, 20, 110, 140), det_confidence=0.998,
                  quality=wire.Quality(brightness=121.5, blur=88.0),
                  model="facenet-casia-webface", **times)
    fields.update(over)
    return wire.EventPayload(**fields)


@pytest.fixture
def payload():
    return _make_payload()


@pytest.fixture
def make_payload():
    """Factory: a valid payload with some fields overridden."""
    return _make_payload
