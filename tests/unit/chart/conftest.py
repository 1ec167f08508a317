"""Fixtures ``helm`` and ``render`` for tests/unit/chart (helpers in chartlib.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from unit.chart.chartlib import Helm, find_helm, need


@pytest.fixture(scope="session")
def helm() -> Helm:
    binary = find_helm()
    need(binary is not None, "helm binary not found (scripts/k8s-test-cluster build, "
         "or FACEGRID_HELM=/path/to/helm)")
    return Helm(binary)


@pytest.fixture(scope="session")
def render(helm: Helm) -> Callable[..., list[dict]]:
    """``render(*helm_args, values=[...])`` -> manifests (cached per arguments)."""
    cache: dict[tuple, list[dict]] = {}

    def _render(*args: str, values: tuple[str, ...] | list[str] = ()) -> list[dict]:
        key = (args, tuple(values))
        if key not in cache:
            cache[key] = helm.template(*args, values=list(values))
        return cache[key]

    return _render
