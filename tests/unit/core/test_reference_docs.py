"""docs/configuration.md and docs/metrics.md are generated from the code: never stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from facegrid import reference

pytestmark = pytest.mark.unit
DOCS = Path(__file__).resolve().parents[3] / "docs"


@pytest.mark.parametrize(("name", "render"), [("configuration.md", reference.configuration_md),
                                              ("metrics.md", reference.metrics_md)])
def test_reference_is_current(name, render):
    assert (DOCS / name).read_text() == render(), (
        f"docs/{name} is stale: run `.venv/bin/python -m facegrid.reference docs`")


def test_every_component_is_covered():
    text = reference.configuration_md()
    for var in ("FACEGRID_NODE_ID", "FACEGRID_DATABASE_URL", "FACEGRID_ADMIN_TOKEN",
                "FACEGRID_PUBLIC_KEY_FILE"):
        assert f"`{var}`" in text
    metrics = reference.metrics_md()
    for prefix in ("facegrid_node_", "facegrid_worker_", "facegrid_server_",
                   "facegrid_operator_"):
        assert f"`{prefix}" in metrics


def test_every_setting_is_described():
    missing = [line.split("|")[1].strip() for line in reference.configuration_md().splitlines()
               if line.startswith("| `FACEGRID_") and line.rstrip().endswith("|  |")]
    assert not missing, f"settings without a description (Field(description=...)): {missing}"
