"""CameraNode status: the camera's pods (an in-memory index; their events update the status
at once), and a timer pulling heartbeats from the server that also re-checks Invalid
cameras slowly."""

from __future__ import annotations

import asyncio
import contextlib
import time

import kopf

from .. import builders, reconcile
from ..conditions import Cond, Phase
from ..context import OperatorContext
from ..kube import KubeError
from . import NodeLabels, kopf_error, plain, pods_of
from .camera import recheck

#: How long a camera's pod changes are gathered into one status write.
POD_SETTLE_S = 0.3
POD_LABELS = {"app.kubernetes.io/managed-by": builders.MANAGED_BY,
              builders.LABEL_CAMERA: kopf.PRESENT}


def pod_summary(body) -> dict:
    """What the status needs of a pod (kept in memory for every node pod)."""
    md, st = body.get("metadata", {}), body.get("status") or {}
    return plain({
        "metadata": {"name": md.get("name"), "creationTimestamp": md.get("creationTimestamp"),
                     "deletionTimestamp": md.get("deletionTimestamp")},
        "spec": {"nodeName": (body.get("spec") or {}).get("nodeName")},
        "status": {"phase": st.get("phase"), "conditions": st.get("conditions") or [],
                   "containerStatuses": st.get("containerStatuses") or []},
    })


def camera_pods(namespace, labels, body, **_) -> dict:
    """Index: (namespace, camera) -> its node pods."""
    return {(namespace, labels[builders.LABEL_CAMERA]): pod_summary(body)}


async def pod_event(namespace, labels, body, memo: OperatorContext, camera_pods: kopf.Index,
                    **_) -> None:
    """A node pod changed: write the camera's status once its pods settle for a moment.

    A new pod changes several times within a second (created, bound, started, ready);
    the write waits up to :data:`POD_SETTLE_S` in a task of its own (the pod's events go
    on being indexed meanwhile), and events for a camera that has a write coming are
    folded into it, so a pod start costs one or two status writes, not four.  A change
    to a state that lasts (the pod Ready, failing, finished or going) ends the wait at
    once: a Running camera shows as such without the extra 0.3 s."""
    key = (namespace, labels[builders.LABEL_CAMERA])
    settled = reconcile.pod_settled(body)
    due = memo.pod_writes_due.get(key)
    if due is not None:
        if settled:
            due.set()
        return
    due = memo.pod_writes_due[key] = asyncio.Event()
    if settled:
        due.set()
    task = asyncio.get_running_loop().create_task(_write_soon(memo, key, camera_pods, due))
    memo.pod_write_tasks.add(task)  # kept until done (and cancelled at shut-down)
    task.add_done_callback(memo.pod_write_tasks.discard)


async def _write_soon(memo: OperatorContext, key: tuple[str, str], index: kopf.Index,
                      due: asyncio.Event) -> None:
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(due.wait(), POD_SETTLE_S)
    finally:
        memo.pod_writes_due.pop(key, None)  # later pod events schedule the next write
    pods = pods_of(index, *key)  # read on kopf's loop, where the index changes
    with contextlib.suppress(KubeError):  # the next pod event or the status timer writes it
        await asyncio.to_thread(reconcile.write_status, memo, *key, pods=pods)


def refresh(body, namespace, name, memo: OperatorContext, stopped, node_labels: kopf.Index,
            camera_pods: kopf.Index, **_) -> None:
    if stopped or body.get("metadata", {}).get("deletionTimestamp"):
        return
    body = plain(body)
    st = body.get("status") or {}
    if st.get("phase") == Phase.INVALID:
        now = time.monotonic()
        if now - memo.rechecked.get((namespace, name), 0) >= memo.settings.invalid_recheck_s:
            memo.rechecked[(namespace, name)] = now
            recheck(memo, body, NodeLabels(node_labels), camera_pods)
        return
    generation = body["metadata"].get("generation")
    observed = st.get("observedGeneration")
    if st.get("phase") and observed is not None and generation != observed \
            and (namespace, name) not in memo.reconciled:
        # A spec change this process never handled (e.g. made while the operator was
        # restarting between kopf's progress and diff-base writes): apply it now.
        recheck(memo, body, NodeLabels(node_labels), camera_pods)
    cond, extra = reconcile.heartbeat_view(memo, name)
    if stopped:
        return  # deleted while the server answered: nothing more to write
    try:
        reconcile.write_status(memo, namespace, name, pods=pods_of(camera_pods, namespace, name),
                               updates={Cond.HEARTBEATING: cond}, extra=extra, body=body)
    except KubeError as e:
        raise kopf_error(e, "status") from e
