"""A real Prometheus (Debian's ``prometheus`` package) scrapes the real server, worker,
node and operator processes; the chart's rules and every Grafana panel query run on it.

The server, worker and a node on the demo clip run as ``facegrid up`` runs them; the
operator runs as ``facegrid operator`` against the test control plane with a
CameraNode for that node.  Prometheus gets the chart's own rules (rendered by Helm),
the labels its Kubernetes discovery would attach (``namespace``, ``node`` per camera,
the nodes job name the rules use), a 1 s scrape and evaluation interval.  Proven:
``promtool check metrics`` passes on each component's /metrics and ``promtool check
rules`` on the chart's rules; every rule evaluates with health ok and each series it
reads exists; every dashboard panel query evaluates without error and returns series.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from fixtures.k8s import wait_until
from fixtures.servers import free_port, missing
from fixtures.stack import CLIP, running_stack

from facegrid import keys
from facegrid.contract import API_PREFIX

pytestmark = [pytest.mark.k8s, pytest.mark.e2e, pytest.mark.models]
ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "facegrid"
NAMESPACE = "facegrid"  # the `namespace` label Kubernetes discovery would attach
RATE_INTERVAL = "30s"  # Grafana's $__rate_interval at a 1 s scrape interval


def tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        missing(f"{name} (Debian package prometheus)")
    return path


def chart_rules(k8s) -> dict:
    text = k8s.helm("template", "facegrid", str(CHART), "-n", NAMESPACE, "--set",
                    "monitoring.force=true", "--show-only",
                    "templates/monitoring/prometheusrule.yaml").stdout
    return {"groups": yaml.safe_load(text)["spec"]["groups"]}


def panel_queries() -> list[tuple[str, str]]:
    """(dashboard: panel, PromQL) of every panel target, Grafana's variables filled in."""
    out = []
    for f in sorted((CHART / "dashboards").glob("*.json")):
        for panel in json.loads(f.read_text()).get("panels", []):
            for t in panel.get("targets", []):
                if t.get("expr"):
                    q = (t["expr"].replace("$namespace", NAMESPACE).replace("$node", ".*")
                         .replace("$__rate_interval", RATE_INTERVAL))
                    out.append((f"{f.stem}: {panel.get('title')}", q))
    return out


def query(prom: str, q: str) -> list:
    r = httpx.get(f"{prom}{API_PREFIX}/query", params={"query": q}, timeout=10).json()
    assert r["status"] == "success", f"{q}: {r.get('error')}"
    return r["data"]["result"]


def selectors(expr: str) -> list[str]:
    """The series selectors a rule reads (metric names, with their label matchers)."""
    return re.findall(r"\b(?:facegrid_\w+|up)(?:\{[^}]*\})?", expr)


def start_operator(k8s, ns: str, stack, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "FACEGRID_KUBECONFIG": str(k8s.kubeconfig),
           "FACEGRID_NAMESPACE": ns, "FACEGRID_WATCH_NAMESPACES": ns,
           "FACEGRID_SERVER_URL": stack.plan.server_url,
           "FACEGRID_ADMIN_TOKEN": stack.admin_token, "FACEGRID_METRICS_PORT": str(port),
           "FACEGRID_LIVENESS_PORT": "0", "FACEGRID_STATUS_INTERVAL_S": "2",
           "FACEGRID_NODE_IMAGE": "registry.invalid/facegrid/node:t"}
    exe = Path(sys.executable).parent / "facegrid"
    return subprocess.Popen([str(exe), "operator"], env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)


def test_prometheus_scrapes_everything_and_every_query_has_series(k8s_cluster, tmp_path,
                                                                   test_weights):
    prometheus, promtool = tool("prometheus"), tool("promtool")
    k = k8s_cluster
    ns = f"fgobs-{os.getpid()}"
    k.kubectl("apply", "-f", str(ROOT / "crds" / "cameranodes.facegrid.io.yaml"))
    k.kubectl("wait", "--for=condition=Established", "--timeout=60s",
              "crd/cameranodes.facegrid.io")
    k.kubectl("create", "namespace", ns)

    rules = chart_rules(k)
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(rules))
    p = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    (nodes_job,) = set(re.findall(r'up\{job="([^"]+)"\}', rules_file.read_text()))

    with running_stack(tmp_path / "stack", test_weights, loop=True) as stack:
        node = stack.start_node("cam-01", str(CLIP))
        op_port = free_port()
        op = start_operator(k, ns, stack, op_port, tmp_path / "operator.log")
        prom_port = free_port()
        prom_proc = None
        try:
            k.apply({"apiVersion": "facegrid.io/v1alpha1", "kind": "CameraNode",
                     "metadata": {"name": "cam-01", "namespace": ns},
                     "spec": {"host": {"nodeName": "edge-01"},
                              "camera": {"source": "rtsp://cam.lan/cam-01"}}})
            stack.wait_node_running(node)
            server_port = int(stack.plan.server_url.rsplit(":", 1)[1])
            worker = next(c for c in stack.children if c.name == "worker")
            targets = {"server": (server_port, {}), "worker": (worker.metrics_port, {}),
                       nodes_job: (node.metrics_port, {"node": "cam-01"}),
                       "operator": (op_port, {})}

            # each component's /metrics passes promtool's lint
            def metrics_text(port: int) -> str:
                return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text

            wait_until(lambda: op.poll() is None and "facegrid_operator_cameranodes"
                       in metrics_text(op_port), 60, what="operator metrics")
            for job, (port, _) in targets.items():
                lint = subprocess.run([promtool, "check", "metrics"],
                                      input=metrics_text(port), capture_output=True, text=True)
                assert lint.returncode == 0, f"{job}: {lint.stdout}{lint.stderr}"

            config = {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules_file)],
                "scrape_configs": [
                    {"job_name": job, "honor_labels": job == nodes_job,
                     "static_configs": [{"targets": [f"127.0.0.1:{port}"],
                                         "labels": {"namespace": NAMESPACE, **labels}}]}
                    for job, (port, labels) in targets.items()],
            }
            (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
            prom_log = (tmp_path / "prometheus.log").open("w")
            prom_proc = subprocess.Popen(
                [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdout=prom_log, stderr=subprocess.STDOUT)
            prom = f"http://127.0.0.1:{prom_port}"
            wait_until(lambda: len([s for s in query(prom, "up == 1")]) == len(targets), 60,
                       what="every target up")

            # dead letters: the dead-letter alert fires (the firing-alerts panel has a row).
            # Two: a labelled counter's series appears with its first increment, and
            # increase() sees only what happens after a series' first sample.
            r = stack.redis()
            r.xadd(keys.EVENTS_STREAM, {"not": "an event"})
            wait_until(lambda: query(prom, "facegrid_worker_dead_lettered_total"), 60,
                       what="the first dead letter scraped")
            r.xadd(keys.EVENTS_STREAM, {"not": "an event either"})
            r.close()
            wait_until(lambda: query(prom, 'ALERTS{alertname="FacegridDeadLetters",'
                                           'alertstate="firing"}'), 60,
                       what="FacegridDeadLetters firing")
            wait_until(lambda: query(prom, "facegrid_worker_acked_total > 0"), 120,
                       what="events acknowledged by the worker")
            time.sleep(5)  # a few more samples for the rate windows

            groups = httpx.get(f"{prom}{API_PREFIX}/rules", timeout=10).json()["data"]["groups"]
            evaluated = [rule for g in groups for rule in g["rules"]]
            assert len(evaluated) == sum(len(g["rules"]) for g in rules["groups"])
            problems = [f"rule {rule['name']}: {rule.get('lastError')}" for rule in evaluated
                        if rule["health"] != "ok"]
            for g in rules["groups"]:
                for rule in g["rules"]:
                    query(prom, rule["expr"])  # evaluates without error
                    problems += [f"rule {rule['alert']}: no series for {sel}"
                                 for sel in selectors(rule["expr"]) if not query(prom, sel)]
            for title, q in panel_queries():
                if not query(prom, q):
                    problems.append(f"panel {title}: no series for {q}")
            assert not problems, "\n".join(problems)
        finally:
            if prom_proc is not None:
                prom_proc.terminate()
                prom_proc.wait(15)
            k.kubectl("delete", "cameranode", "cam-01", "-n", ns, "--timeout=60s", check=False)
            op.terminate()
            try:
                op.wait(20)
            finally:
                k.kubectl("delete", "namespace", ns, "--wait=false", check=False)
