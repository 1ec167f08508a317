"""Package boundaries: the core imports no component, the services never import the node,
the shared vision package imports neither; components plug in through entry points."""

from __future__ import annotations

import ast
import importlib
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[3]
COMPONENTS = ("facegrid_node", "facegrid_services", "facegrid_operator")

#: package folder → top-level packages it must never import (statically or by name).
FORBIDDEN = {
    "src/facegrid": (*COMPONENTS, "facegrid_vision"),
    "vision/facegrid_vision": COMPONENTS,
    "services/facegrid_services": ("facegrid_node", "facegrid_operator"),
    "node_image/facegrid_node": ("facegrid_services", "facegrid_operator"),
    "operator/facegrid_operator": ("facegrid_node", "facegrid_services", "facegrid_vision"),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module named by an import statement or a string literal that looks like one."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # importlib.import_module("facegrid_node.x") / __import__ by name
            head = node.value.split(".")[0].split(":")[0]
            if head.startswith("facegrid_") and " " not in node.value:
                found.append((node.lineno, node.value))
    return found


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_package_imports_stay_inside_their_boundary(folder):
    bad = []
    for path in sorted((REPO / folder).rglob("*.py")):
        for line, name in _imports(path):
            if name.split(".")[0] in FORBIDDEN[folder]:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


def _entry_points() -> dict[str, dict[str, str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return project["entry-points"]


def test_every_declared_entry_point_resolves():
    groups = _entry_points()
    assert set(groups) == {"facegrid.commands", "facegrid.reference"}
    for group, eps in groups.items():
        for name, target in eps.items():
            module, _, attr = target.partition(":")
            obj = getattr(importlib.import_module(module), attr, None)
            assert callable(obj), f"{group} {name} = {target} is not a callable"


def test_the_cli_gets_every_component_command():
    from typer.main import get_command

    from facegrid.cli import app

    names = set(get_command(app).commands)
    assert {"node", "models", "worker", "server", "enroll", "operator", "token", "up",
            "version"} <= names
