"""Helpers for the chart, image and deployment-file tests (fixtures: conftest.py).

``helm`` finds the helm binary: $FACEGRID_HELM, then the test cluster's bin
folder (``scripts/k8s-test-cluster env --json``), then PATH.  Without one the
tests skip, except when CI=true: there they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "facegrid"
VALUES_DIR = Path(__file__).resolve().parent / "values"
# helm template's offline Kubernetes version (the chart needs >= 1.29).
KUBE_VERSION = "v1.37.2"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Skip when a tool is missing; fail instead when CI=true."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"{reason} (CI=true, so this fails)", pytrace=False)
    pytest.skip(reason)


def find_helm() -> Path | None:
    env = os.environ.get("FACEGRID_HELM")
    if env and Path(env).is_file():
        return Path(env)
    script = REPO / "scripts" / "k8s-test-cluster"
    if script.exists():
        p = subprocess.run([sys.executable, str(script), "env", "--json"],
                           capture_output=True, text=True, timeout=60)
        if p.returncode == 0:
            try:
                cand = Path(json.loads(p.stdout)["FACEGRID_K8S_BIN"]) / "helm"
            except (ValueError, KeyError):
                cand = None
            if cand and cand.is_file():
                return cand
    found = shutil.which("helm")
    return Path(found) if found else None


class Helm:
    def __init__(self, binary: Path):
        self.binary = binary

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([str(self.binary), *args], capture_output=True, text=True,
                           timeout=120, env={**os.environ, "HELM_CACHE_HOME": "/tmp/helm-cache"})
        if check and p.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} exited {p.returncode}:\n"
                                 f"{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        return p

    def template_text(self, *args: str, values: list[str] = (), check: bool = True,
                      release: str = "fg", namespace: str = "facegrid"):
        vf = [a for v in values for a in ("-f", str(VALUES_DIR / v))]
        return self.run("template", release, str(CHART), "-n", namespace,
                        "--kube-version", KUBE_VERSION, *vf, *args, check=check)

    def template(self, *args: str, values: list[str] = (), **kw) -> list[dict]:
        out = self.template_text(*args, values=values, **kw).stdout
        return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs: list[dict]) -> dict[str, dict]:
    """name -> pod spec of every workload (Deployment, StatefulSet, Job, Pod)."""
    out = {}
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            out[f"{d['kind']}/{d['metadata']['name']}"] = d["spec"]["template"]["spec"]
        elif d["kind"] == "Pod":
            out[f"Pod/{d['metadata']['name']}"] = d["spec"]
    return out
