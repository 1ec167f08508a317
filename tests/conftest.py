"""Shared pytest set-up: real-server fixtures live in tests/fixtures/ as plugins."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["fixtures.servers", "fixtures.models", "fixtures.k8s", "fixtures.notify"]

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real labelled face photos and media)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"{SHARED_DATA} is missing: the tests need the team's shared data")
    return SHARED_DATA
