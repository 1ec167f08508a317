"""facegrid's three images, built from the real Dockerfiles (scripts/container-images),
run locked down: read-only root filesystem, the image's non-root user, every
capability dropped, a writable /tmp only.

Each answers ``--help`` (its component's CLI too) and serves its health endpoint
against real parts: a real redis-server, a real Ed25519 signing key, the demo clip
as the node's camera, and (operator) the test Kubernetes control plane.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from fixtures.k8s import wait_until
from fixtures.servers import free_port

from facegrid import tokens

ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT / "examples" / "clip.mp4"
ADMIN = "images-test-admin-token"
#: image -> the component commands it carries.
COMMANDS = {"server": ["server", "worker", "notifier"], "operator": ["operator"],
            "node": ["node"]}
NON_ROOT = "10001:10001"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_image_is_non_root_and_answers_help_read_only(name, facegrid_images, podman):
    image = facegrid_images[name]
    config = podman.inspect(image)["Config"]
    assert config["User"] == NON_ROOT
    assert config["Entrypoint"] == ["facegrid"]
    out = podman.run_locked_down(image, "--help").stdout
    assert "Usage: facegrid" in out
    for command in COMMANDS[name]:
        out = podman.run_locked_down(image, command, "--help").stdout
        assert f"Usage: facegrid {command}" in out, out
    who = podman("run", "--rm", "--read-only", "--network=host", "--entrypoint", "id", image)
    assert who.stdout.startswith("uid=10001(facegrid) gid=10001(facegrid)"), who.stdout
    if name == "node":  # the lean edge node: ONNX Runtime, no torch
        probe = podman(
            "run", "--rm", "--read-only", "--network=host", "--entrypoint", "python", image,
            "-c", "import onnxruntime, importlib.util as u; "
                  "print(onnxruntime.__version__, u.find_spec('torch') is None)")
        assert probe.stdout.split()[1] == "True", probe.stdout


def keypair(tmp_path: Path) -> tuple[Path, Path]:
    priv, pub = tokens.write_keypair(tmp_path / "keys")
    (tmp_path / "keys").chmod(0o755)
    pub.chmod(0o644)
    return priv, pub


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(podman, container: str, url: str, timeout: float = 90) -> None:
    """Until ``url`` answers 200; fails at once if the container exits (wait_until
    would keep polling through that error until the timeout)."""
    podman.wait_while_running(container, lambda: healthy(url), f"{url} not healthy", timeout)


def start_server(podman, image: str, redis_url: str, pub: Path) -> str:
    port = free_port()
    name = f"fg-server-{os.getpid()}-{port}"
    podman.run_locked_down(image, "server", name=name, detach=True,
                           env={"FACEGRID_REDIS_URL": redis_url, "FACEGRID_PORT": str(port),
                                "FACEGRID_ADMIN_TOKEN": ADMIN,
                                "FACEGRID_PUBLIC_KEY_FILE": "/run/facegrid/signing.pub"},
                           volumes={str(pub): "/run/facegrid/signing.pub"})
    url = f"http://127.0.0.1:{port}"
    wait_healthy(podman, name, url + "/healthz")
    return url


@pytest.mark.e2e
def test_server_worker_and_node_images_serve_health(facegrid_images, podman, redis_url,
                                                     tmp_path):
    priv, pub = keypair(tmp_path)
    server = start_server(podman, facegrid_images["server"], redis_url, pub)
    wait_until(lambda: healthy(server + "/readyz"), 30, what="server /readyz (Redis, SQLite)")

    worker_port = free_port()
    podman.run_locked_down(facegrid_images["server"], "worker", name=f"fg-worker-{worker_port}",
                           detach=True,
                           env={"FACEGRID_REDIS_URL": redis_url,
                                "FACEGRID_METRICS_PORT": str(worker_port),
                                "FACEGRID_PUBLIC_KEY_FILE": "/run/facegrid/signing.pub"},
                           volumes={str(pub): "/run/facegrid/signing.pub"})
    wait_healthy(podman, f"fg-worker-{worker_port}", f"http://127.0.0.1:{worker_port}/healthz")

    token = tmp_path / "token"
    token.write_text(tokens.issue_token(tokens.load_private_key(priv), "cam-img",
                                        ttl_seconds=3600))
    token.chmod(0o644)
    node_port = free_port()
    node = f"fg-node-{node_port}"
    podman.run_locked_down(facegrid_images["node"], name=node, detach=True,
                           env={"FACEGRID_REDIS_URL": redis_url, "FACEGRID_NODE_ID": "cam-img",
                                "FACEGRID_CAMERA": "/media/clip.mp4",
                                "FACEGRID_TOKEN_FILE": "/run/facegrid/token",
                                "FACEGRID_SERVER_URL": server, "FACEGRID_LOOP": "true",
                                "FACEGRID_METRICS_PORT": str(node_port)},
                           volumes={str(CLIP): "/media/clip.mp4",
                                    str(token): "/run/facegrid/token"})
    base = f"http://127.0.0.1:{node_port}"
    wait_healthy(podman, node, base + "/healthz", timeout=120)
    wait_until(lambda: healthy(base + "/readyz"), 120, what="node /readyz")

    def frames() -> float:
        text = httpx.get(base + "/metrics", timeout=3).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("facegrid_node_frames_total"))

    wait_until(lambda: frames() > 0, 120, what="the node's camera (the clip) gives frames")


@pytest.mark.k8s
def test_operator_image_runs_against_the_cluster(facegrid_images, podman, k8s_cluster,
                                                 redis_url, tmp_path):
    _, pub = keypair(tmp_path)
    server = start_server(podman, facegrid_images["server"], redis_url, pub)
    k = k8s_cluster
    ns = f"fgimg-{os.getpid()}"
    k.kubectl("apply", "-f", str(ROOT / "crds" / "cameranodes.facegrid.io.yaml"))
    k.kubectl("create", "namespace", ns)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_bytes(Path(k.kubeconfig).read_bytes())
    kubeconfig.chmod(0o644)
    metrics, live = free_port(), free_port()
    name = f"fg-operator-{metrics}"
    try:
        podman.run_locked_down(
            facegrid_images["operator"], "operator", name=name, detach=True,
            env={"FACEGRID_KUBECONFIG": "/run/facegrid/kubeconfig", "FACEGRID_NAMESPACE": ns,
                 "FACEGRID_WATCH_NAMESPACES": ns, "FACEGRID_SERVER_URL": server,
                 "FACEGRID_ADMIN_TOKEN": ADMIN, "FACEGRID_METRICS_PORT": str(metrics),
                 "FACEGRID_LIVENESS_PORT": str(live)},
            volumes={str(kubeconfig): "/run/facegrid/kubeconfig"})
        wait_healthy(podman, name, f"http://127.0.0.1:{live}/healthz", timeout=120)
        text = httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=5).text
        assert "facegrid_operator_cameranodes" in text
    finally:
        k.kubectl("delete", "namespace", ns, "--wait=false", check=False)
