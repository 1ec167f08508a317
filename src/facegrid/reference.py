"""Generates docs/configuration.md and docs/metrics.md from the code itself.

The Settings classes and metric declarations are the source of truth; the
docs are rendered from them (``python -m facegrid.reference``) and a unit test
fails when the committed files are stale, so the reference cannot drift.
"""

from __future__ import annotations

import sys
from pathlib import Path

from facegrid import plugins


def _docs() -> list:
    """Every component's SettingsDoc/MetricsDoc (``facegrid.reference`` entry points)."""
    out = []
    for _name, reference in plugins.load(plugins.REFERENCE):
        out += reference()
    return sorted(out, key=lambda d: d.order)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(field) -> str:
    if field.is_required():
        return "(required)"
    if field.default_factory is not None:
        return "(computed at start)"
    value = field.default
    if value is None or value == "":
        return "—"
    return f"`{value}`"


def _field_comments(cls) -> dict[str, str]:
    """Sphinx-style ``#:`` comments above class attributes, by attribute name."""
    import inspect
    import re

    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        m = re.match(r"^\s{4}(\w+)\s*:", line)
        if m and pending:
            comments[m.group(1)] = " ".join(pending)
        if stripped and not stripped.startswith("#"):
            pending = []
    return comments


def configuration_md() -> str:
    out = ["# Configuration reference", "",
           "Generated from the Settings classes by `python -m facegrid.reference`; a test keeps",
           "it current. Every setting is an environment variable (prefix `FACEGRID_`);",
           "the commands also take the common ones as options (`--help`).", ""]
    for doc in _docs():
        if not isinstance(doc, plugins.SettingsDoc):
            continue
        title, command, cls = doc.title, doc.command, doc.settings
        comments = _field_comments(cls)
        out += [f"## {title} — `{command}`", "", "| variable | default | meaning |",
                "| --- | --- | --- |"]
        for name, field in cls.model_fields.items():
            out.append(f"| `FACEGRID_{name.upper()}` | {_cell(_default(field))} | "
                       f"{_cell(field.description or comments.get(name, ''))} |")
        out.append("")
    return "\n".join(out)


def metric_objects(namespace: dict) -> list:
    """The prometheus metric objects among ``namespace``'s values, sorted by name."""
    from prometheus_client.metrics import MetricWrapperBase

    found = [v for v in namespace.values() if isinstance(v, MetricWrapperBase)]
    return sorted(found, key=lambda m: m._name)


def metrics_md() -> str:
    out = ["# Metrics reference", "",
           "Generated from the code by `python -m facegrid.reference`; a test keeps it current.",
           "Labels are bounded (node, stage, reason, state…), never a person's name.", ""]
    sections = [(d.title, d.metrics) for d in _docs() if isinstance(d, plugins.MetricsDoc)]
    for title, metrics in sections:
        out += [f"## {title}", "", "| metric | type | labels | meaning |",
                "| --- | --- | --- | --- |"]
        for m in metrics:
            name = m._name + ("_total" if m._type == "counter" else "")
            out.append(f"| `{name}` | {m._type} | {', '.join(m._labelnames) or '—'} | "
                       f"{_cell(m._documentation)} |")
        out.append("")
    return "\n".join(out)


def write(docs: Path) -> None:
    (docs / "configuration.md").write_text(configuration_md())
    (docs / "metrics.md").write_text(metrics_md())


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs")
    write(target)
