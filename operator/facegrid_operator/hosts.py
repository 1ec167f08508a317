"""Does the edge host a CameraNode names exist? (needs the API server)."""

from __future__ import annotations

from .kube import Kube, nodes_path
from .spec import CameraSpec, InvalidSpec


def selector_string(selector: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" if v else f"{k}=" for k, v in sorted(selector.items()))


def check_host(kube: Kube, cam: CameraSpec) -> str:
    """Return a sentence naming the host(s); raise InvalidSpec("HostNotFound", ...) if none."""
    if cam.node_name:
        if kube.get_or_none(nodes_path(cam.node_name)) is None:
            raise InvalidSpec("HostNotFound", f"host.nodeName: there is no Node named "
                              f"{cam.node_name!r}")
        return f"Node {cam.node_name}"
    sel = selector_string(cam.node_selector)
    nodes = kube.list(nodes_path(), label_selector=sel)
    if not nodes:
        raise InvalidSpec("HostNotFound", f"host.nodeSelector: no Node has the labels {sel}")
    names = sorted(n["metadata"]["name"] for n in nodes)
    return f"{len(names)} Node(s) match ({', '.join(names[:5])})"
