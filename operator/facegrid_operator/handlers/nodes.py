"""Kubernetes Nodes: their labels in memory (host checks), and a re-check of the CameraNodes
that were Invalid for want of a host when a Node appears or changes its labels."""

from __future__ import annotations

import logging

import kopf

from ..conditions import Cond, Phase, get
from ..context import OperatorContext
from ..kube import KubeError, cameranode_path
from . import NodeLabels
from .camera import recheck

log = logging.getLogger(__name__)


def node_labels(name, labels, **_) -> dict:
    """Index: Node name -> its labels."""
    return {name: dict(labels)}


def recheck_invalid(memo: OperatorContext, nodes: NodeLabels, camera_pods: kopf.Index) -> int:
    """Run the reconcile step again for every camera whose host was not found."""
    done = 0
    for ns in memo.settings.watch_namespaces or [None]:
        for cam in memo.kube.list(cameranode_path(ns)):
            st = cam.get("status") or {}
            valid = get(st.get("conditions"), Cond.VALID) or {}
            if st.get("phase") == Phase.INVALID and valid.get("reason") == "HostNotFound" \
                    and recheck(memo, cam, nodes, camera_pods):
                done += 1
    return done


def node_event(type, name, labels, memo: OperatorContext, node_labels: kopf.Index,
               camera_pods: kopf.Index, **_) -> None:
    labels = dict(labels)
    if type == "DELETED":
        memo.seen_node_labels.pop(name, None)
        return
    if memo.seen_node_labels.get(name) == labels:
        return  # status heartbeats: nothing a CameraNode host check cares about
    memo.seen_node_labels[name] = labels
    try:
        n = recheck_invalid(memo, NodeLabels(node_labels), camera_pods)
    except KubeError as e:
        log.warning("cannot re-check CameraNodes after Node %s changed: %s", name, e)
        return
    if n:
        log.info("Node %s appeared or changed: %d CameraNode(s) valid now", name, n)
