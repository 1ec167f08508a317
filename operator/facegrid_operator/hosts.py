"""Does the edge host a CameraNode names exist? (pure: against the Nodes the operator sees).

The operator keeps every Node's labels in memory (a kopf index fed by its Node
watch), so checking a host costs no API call.
"""

from __future__ import annotations

from collections.abc import Mapping

from .spec import CameraSpec, InvalidSpec


def selector_string(selector: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" if v else f"{k}=" for k, v in sorted(selector.items()))


def matches(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    """Equality-based label selection, as the scheduler applies a pod's nodeSelector."""
    return all(labels.get(k) == v for k, v in selector.items())


def check_host(nodes: Mapping[str, Mapping[str, str]], cam: CameraSpec) -> str:
    """``nodes``: Node name -> labels.  Return a sentence naming the host(s); raise
    InvalidSpec("HostNotFound", ...) if there is none."""
    if cam.node_name:
        if cam.node_name not in nodes:
            raise InvalidSpec("HostNotFound", f"host.nodeName: there is no Node named "
                              f"{cam.node_name!r}")
        return f"Node {cam.node_name}"
    names = sorted(n for n, labels in nodes.items() if matches(labels, cam.node_selector))
    if not names:
        raise InvalidSpec("HostNotFound", f"host.nodeSelector: no Node has the labels "
                          f"{selector_string(cam.node_selector)}")
    return f"{len(names)} Node(s) match ({', '.join(names[:5])})"
