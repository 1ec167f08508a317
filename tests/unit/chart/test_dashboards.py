"""Grafana dashboards and alert rules: valid JSON/structure, and every metric a
PromQL query names is one the code really exports (from each component's
metrics.py, read back from the prometheus_client registry)."""

from __future__ import annotations

import importlib
import json
import re

import pytest
from fixtures.chart import CHART, by_kind

pytestmark = pytest.mark.unit

#: Modules that declare metrics in the default registry when imported.
METRICS_MODULES = ("facegrid_services.worker.metrics", "facegrid_services.api.metrics",
                   "facegrid_operator.metrics")
#: Series Prometheus itself makes (not exported by facegrid code).
PROMETHEUS_BUILTIN = {"up", "ALERTS", "ALERTS_FOR_STATE"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset", "inf", "nan", "le"}
DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """Every series name the facegrid components can expose."""
    from facegrid_node.metrics import NodeMetrics
    from prometheus_client import REGISTRY

    for mod in METRICS_MODULES:
        importlib.import_module(mod)
    # The node agent keeps one registry per NodeMetrics (one node per /metrics).
    try:
        node = NodeMetrics("probe")
    except ValueError as e:  # e.g. prometheus_client's DuplicateTimeseries
        pytest.fail(f"facegrid_node.metrics.NodeMetrics() cannot be built: {e!r}",
                    pytrace=False)
    families = [*REGISTRY.collect(), *node.registry.collect()]
    names: set[str] = set()
    for fam in families:
        if not fam.name.startswith("facegrid_"):
            continue
        if fam.type == "counter":
            names |= {f"{fam.name}_total", f"{fam.name}_created"}
        elif fam.type == "histogram":
            names |= {f"{fam.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        elif fam.type == "summary":
            names |= {fam.name, *(f"{fam.name}_{s}" for s in ("sum", "count", "created"))}
        else:
            names.add(fam.name)
    assert len(names) > 40, sorted(names)
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (labels, functions, keywords removed)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # string literals
    s = re.sub(r"\$\{?\w+\}?", "1", s)                      # Grafana variables
    s = re.sub(r"\{[^{}]*\}", "", s)                        # label matchers
    s = re.sub(r"\[[^\]]*\]", "", s)                        # ranges / subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\b\d+(\.\d+)?([eE][-+]?\d+)?[smhdwy]?\b", " ", s)  # numbers, durations
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        word = m.group(0)
        rest = s[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue  # a function or a keyword
        names.add(word)
    return names


def test_metric_name_extraction():
    assert metric_names(
        'histogram_quantile(0.95, sum by (le, stage) '
        '(rate(facegrid_worker_stage_seconds_bucket{namespace="$namespace"}[$__rate_interval])))'
    ) == {"facegrid_worker_stage_seconds_bucket"}
    assert metric_names('max(a_b{x="y"}) / clamp_min(sum(c_total offset 5m), 1e-9) > 3 and up'
                        ) == {"a_b", "c_total", "up"}
    assert metric_names("deriv(max(x)[10m:1m]) > 0") == {"x"}


def dashboard_exprs(board: dict):
    for p in board["panels"]:
        for t in p.get("targets", []):
            yield p["title"], t["expr"]
    for v in board["templating"]["list"]:
        q = v.get("query")
        if isinstance(q, dict) and "query" in q:
            yield f"variable {v['name']}", re.sub(r"label_values\((.*),\s*\w+\)", r"\1", q["query"])


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_dashboard_is_valid_grafana_json(path):
    board = json.loads(path.read_text())
    for key in ("uid", "title", "panels", "schemaVersion", "templating", "time"):
        assert key in board, key
    assert re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"])
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    assert {v["name"] for v in board["templating"]["list"]} >= {"datasource"}
    occupied: set[tuple[int, int]] = set()
    for p in board["panels"]:
        g = p["gridPos"]
        assert g["w"] >= 1 and g["x"] + g["w"] <= 24 and g["h"] >= 1, p["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                 for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & occupied, f"panel {p['title']!r} overlaps another"
        occupied |= cells
        if p["type"] == "row":
            continue
        assert p["type"] in ("timeseries", "stat", "table", "heatmap", "gauge", "bargauge",
                             "state-timeline", "piechart"), p["type"]
        assert p["datasource"]["uid"] == "${datasource}"
        assert p["targets"], p["title"]
        assert len({t["refId"] for t in p["targets"]}) == len(p["targets"])


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_dashboard_queries_name_exported_metrics(path, exported):
    board = json.loads(path.read_text())
    used = set()
    for title, expr in dashboard_exprs(board):
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr!r}"
        unknown = names - exported - PROMETHEUS_BUILTIN
        assert not unknown, f"{path.name} panel {title!r}: {sorted(unknown)} not exported"
        used |= names
    assert used & exported


def test_dashboards_never_group_by_a_person():
    for path in DASHBOARDS:
        text = path.read_text()
        for label in ("person", "name", "person_id", "embedding"):
            assert not re.search(rf"by \([^)]*\b{label}\b", text), (path.name, label)


def test_alert_rules_name_exported_metrics(render, exported):
    rules = by_kind(render("--set", "monitoring.force=true"), "PrometheusRule")
    assert rules
    for rule_obj in rules.values():
        for group in rule_obj["spec"]["groups"]:
            for rule in group["rules"]:
                names = metric_names(rule["expr"])
                unknown = names - exported - PROMETHEUS_BUILTIN
                assert names and not unknown, f"{rule.get('alert')}: {sorted(unknown)}"


def test_fleet_dashboard_covers_cameras_and_pipeline_covers_backlog():
    text = {p.stem: p.read_text() for p in DASHBOARDS}
    assert {"camera-fleet", "pipeline"} <= set(text)
    for needle in ("facegrid_worker_stream_backlog", "facegrid_worker_classify_latency_seconds",
                   "facegrid_worker_sightings_total", "ALERTS"):
        assert needle in text["pipeline"], needle
    for needle in ("facegrid_node_", "facegrid_operator_cameranodes"):
        assert needle in text["camera-fleet"], needle
