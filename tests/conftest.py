"""Shared pytest set-up: real-server fixtures live in tests/fixtures/ as plugins.

Folder = marker: every test carries the marker of its top folder under tests/
(``unit/`` -> ``unit`` ...), and a test under ``unit/`` may neither carry a marker
that means a server, weights or a cluster nor use a fixture that starts one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["fixtures.servers", "fixtures.models", "fixtures.k8s", "fixtures.chart",
                  "fixtures.notify", "fixtures.images"]

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real labelled face photos and media)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"{SHARED_DATA} is missing: the tests need the team's shared data")
    return SHARED_DATA


#: The top folder under tests/ -> the marker its tests carry.
FOLDER_MARKERS = {"unit": "unit", "integration": "integration", "k8s": "k8s", "e2e": "e2e",
                  "browser": "browser", "reliability": "reliability", "images": "images"}
#: Markers and fixtures that mean a server, model weights or a cluster: never in unit/.
NOT_UNIT_MARKERS = ("integration", "models", "k8s", "e2e", "browser", "images")
SERVER_FIXTURES = frozenset({"redis_server", "redis_url", "postgres_server", "postgres_url",
                             "database_url", "k8s_cluster", "live_server", "test_weights",
                             "face_analyzer", "facegrid_images", "podman", "standin_images",
                             "standin_podman"})


def folder_problems(item: pytest.Item) -> list[str]:
    """What is wrong with where ``item`` lives (empty: nothing); adds the folder's marker."""
    try:
        folder = item.path.relative_to(TESTS).parts[0]
    except ValueError:
        return []
    marker = FOLDER_MARKERS.get(folder)
    if marker is not None:
        item.add_marker(marker)
    if folder != "unit":
        return ([f"{item.nodeid}: marked unit outside tests/unit/"]
                if item.get_closest_marker("unit") else [])
    problems = [f"{item.nodeid}: a unit test marked {m!r} (move it to tests/integration/)"
                for m in NOT_UNIT_MARKERS if item.get_closest_marker(m)]
    servers = sorted(SERVER_FIXTURES & set(getattr(item, "fixturenames", ())))
    if servers:
        problems.append(f"{item.nodeid}: a unit test starts servers via {servers} "
                        "(move it to tests/integration/)")
    return problems


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problems = [p for item in items for p in folder_problems(item)]
    if problems:
        raise pytest.UsageError("tests in the wrong folder:\n" + "\n".join(problems))
