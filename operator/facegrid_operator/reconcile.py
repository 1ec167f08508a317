"""The reconcile steps the kopf handlers call: token, deployment, status, revocation.

Every step is idempotent (read, compare, then create/apply only what differs),
so a restarted operator creates nothing twice.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

import kopf

from . import builders, conditions, hosts, metrics, node_tokens
from .conditions import FALSE, TRUE, UNKNOWN, Cond, Phase
from .context import OperatorContext
from .kube import KubeError, cameranode_path, deployments_path, pods_path, secrets_path
from .server_api import ServerRefused, ServerUnavailable
from .spec import CameraSpec, InvalidSpec, parse

log = logging.getLogger(__name__)


def kopf_error(e: KubeError, what: str) -> Exception:
    """A Kubernetes API error as the kopf error that says whether to retry, and when."""
    if e.status in (0, 409, 429) or e.status >= 500:
        return kopf.TemporaryError(f"{what}: {e}", delay=2)
    if e.status in (401, 403):
        return kopf.TemporaryError(f"{what}: {e} (check the operator's RBAC)", delay=30)
    return kopf.PermanentError(f"{what}: {e}")


def read_spec(ctx: OperatorContext, name: str, spec: dict) -> CameraSpec:
    return parse(name, dict(spec), default_ttl=ctx.settings.default_token_ttl)


# -- token -------------------------------------------------------------------

def ensure_token(ctx: OperatorContext, body: dict, cam: CameraSpec,
                 now: float | None = None) -> dict:
    """Create the token Secret, or rotate it when due; return the current token's claims."""
    assert ctx.kube is not None and ctx.key is not None
    ns = body["metadata"]["namespace"]
    path = secrets_path(ns, builders.token_secret_name(cam.name))
    secret = ctx.kube.get_or_none(path)
    decision = node_tokens.decide(secret, cam, ctx.key, audience=ctx.settings.token_audience,
                                  now=now)
    if decision.action is node_tokens.Action.KEEP:
        assert decision.current is not None
        metrics.TOKEN_EXPIRY.labels(metrics.camera_label(ns, cam.name)).set(
            decision.current["exp"])
        return decision.current
    token, claims = node_tokens.issue(ctx.key, cam, audience=ctx.settings.token_audience, now=now)
    previous = decision.current if decision.action is node_tokens.Action.ROTATE else None
    obj = builders.token_secret(cam.name, ns, token, claims, previous)
    kopf.adopt(obj, owner=body)
    if secret is None:
        try:
            ctx.kube.create(secrets_path(ns), obj)
        except KubeError as e:
            if e.conflict:  # created meanwhile (another step): read it on the next pass
                raise kopf.TemporaryError("token Secret appeared meanwhile", delay=1) from e
            raise
    else:
        # Optimistic concurrency: only replace the Secret we read.
        obj["metadata"]["resourceVersion"] = secret["metadata"]["resourceVersion"]
        ctx.kube.request("PUT", path, body=obj)
    metrics.TOKENS_ISSUED.labels(reason=decision.action.value).inc()
    metrics.TOKEN_EXPIRY.labels(metrics.camera_label(ns, cam.name)).set(claims["exp"])
    log.info("%s token for %s/%s (%s); expires %s", decision.action.value, ns, cam.name,
             decision.reason, builders.iso(claims["exp"]))
    return claims


def token_conditions(claims: dict) -> tuple[dict, dict]:
    cond = conditions.condition(TRUE, "Issued", f"token {claims['jti'][:8]}… valid until "
                                f"{builders.iso(claims['exp'])}")
    extra = {"tokenExpiresAt": builders.iso(claims["exp"]),
             "tokenRotatedAt": builders.iso(claims["iat"])}
    return cond, extra


# -- deployment --------------------------------------------------------------

def ensure_deployment(ctx: OperatorContext, body: dict, cam: CameraSpec) -> str:
    """Check the host, then server-side apply the node Deployment; return the host sentence."""
    assert ctx.kube is not None
    ns = body["metadata"]["namespace"]
    where = hosts.check_host(ctx.kube, cam)
    obj = builders.node_deployment(cam, ns, ctx.settings)
    kopf.adopt(obj, owner=body)
    path = deployments_path(ns, obj["metadata"]["name"])
    current = ctx.kube.get_or_none(path)
    same = (current is not None
            and current["metadata"].get("annotations", {}).get(builders.ANN_SPEC_HASH)
            == obj["metadata"]["annotations"][builders.ANN_SPEC_HASH]
            and current["spec"].get("replicas") == obj["spec"]["replicas"])
    if not same:
        ctx.kube.apply(path, obj)
        log.info("applied Deployment %s/%s (%s)", ns, obj["metadata"]["name"],
                 "paused" if cam.paused else where)
    ctx.reconciled[(ns, cam.name)] = int(body["metadata"].get("generation") or 0)
    return where


# -- status ------------------------------------------------------------------

def _pod_view(pods: list[dict]) -> tuple[dict, bool, bool, str | None, str | None]:
    """(Scheduled condition, ready, failing, host, pod name) from the camera's pods."""
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    if not live:
        return (conditions.condition(FALSE, "NoPod", "no node pod exists yet"),
                False, False, None, None)
    live.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True)
    pod = live[0]
    name = pod["metadata"]["name"]
    host = (pod.get("spec") or {}).get("nodeName")
    st = pod.get("status") or {}
    conds = {c.get("type"): c for c in st.get("conditions") or []}
    ready = conds.get("Ready", {}).get("status") == "True"
    failing = False
    for cs in st.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in ("CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff",
                                     "CreateContainerConfigError", "CreateContainerError"):
            failing = True
        if not cs.get("ready") and cs.get("restartCount", 0) > 0:
            failing = True
    if host:
        sched = conditions.condition(TRUE, "Scheduled", f"pod {name} is on Node {host}")
    else:
        pc = conds.get("PodScheduled", {})
        sched = conditions.condition(FALSE, pc.get("reason") or "Pending",
                                     pc.get("message") or f"pod {name} is not scheduled yet")
    return sched, ready, failing, host, name


def _message(phase: Phase, conds: list[dict], pod: str | None, host: str | None) -> str:
    if phase is Phase.RUNNING:
        return f"pod {pod} is ready on {host}"
    if phase is Phase.PAUSED:
        return "paused: scaled to zero"
    for c in conds:
        if c.get("status") != TRUE and c["type"] != Cond.HEARTBEATING:
            return f"{c['type']}: {c.get('message', '')}"
    if phase is Phase.DEGRADED:
        hb = conditions.get(conds, Cond.HEARTBEATING) or {}
        return f"{hb.get('message') or 'the node pod is failing'}"
    return f"pod {pod} is starting on {host}" if pod else "waiting for the node pod"


def sync_status(ctx: OperatorContext, ns: str, name: str, *,
                updates: dict[str, dict] | None = None, extra: dict | None = None) -> str | None:
    """Recompute and write the CameraNode status; return the phase (None if the object is gone).

    Handlers, timers and pod events write concurrently: each write carries the
    resourceVersion it was computed from, and a conflict recomputes from a fresh read,
    so no condition is lost.
    """
    for attempt in range(8):
        try:
            return _sync_status_once(ctx, ns, name, updates=updates, extra=extra)
        except KubeError as e:
            if not e.conflict or attempt == 7:
                raise
            time.sleep(0.02 * (attempt + 1))
    return None


def _sync_status_once(ctx: OperatorContext, ns: str, name: str, *,
                      updates: dict[str, dict] | None, extra: dict | None) -> str | None:
    assert ctx.kube is not None
    body = ctx.kube.get_or_none(cameranode_path(ns, name))
    if body is None or body["metadata"].get("deletionTimestamp"):
        ctx.set_phase(ns, name, None)
        return None
    old = body.get("status") or {}
    updates = dict(updates or {})
    pods = ctx.kube.list(pods_path(ns), label_selector=",".join(
        f"{k}={v}" for k, v in builders.selector_labels(name).items()))
    paused = bool((body.get("spec") or {}).get("paused"))
    sched, ready, failing, host, pod = _pod_view(pods)
    if not paused or pods:
        updates[Cond.SCHEDULED] = sched
    else:
        updates[Cond.SCHEDULED] = conditions.condition(FALSE, "Paused", "paused: no pod")
    generation = ctx.reconciled.get((ns, name), old.get("observedGeneration"))
    conds = conditions.merge(old.get("conditions"), updates, generation)
    phase = conditions.phase(conds, paused=paused, ready=ready, failing=failing)
    new = {**old, **(extra or {}), "phase": phase.value, "conditions": conds,
           "message": _message(phase, conds, pod, host)}
    if generation is not None:
        new["observedGeneration"] = generation
    new["host"] = host
    new["pod"] = pod
    new = {k: v for k, v in new.items() if v is not None}
    if new != old:
        patch = {"metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                 "status": {**new, **{k: None for k in old if k not in new}}}
        ctx.kube.merge_patch(cameranode_path(ns, name, status=True), patch)
    ctx.set_phase(ns, name, phase.value)
    return phase.value


def heartbeat_view(ctx: OperatorContext, name: str) -> tuple[dict, dict]:
    """(Heartbeating condition, status fields) from the server; never raises."""
    assert ctx.server is not None
    try:
        st = ctx.server.node_status(name)
    except ServerUnavailable as e:
        return conditions.condition(UNKNOWN, "ServerUnreachable", str(e)[:300]), {}
    except ServerRefused as e:
        return conditions.condition(UNKNOWN, "ServerRefused", str(e)[:300]), {}
    if st is None:
        return conditions.condition(UNKNOWN, "NotRegistered",
                                    f"the server has not heard from node {name} yet"), {}
    extra = {"state": st.state.value, "stateSeconds": round(st.state_seconds, 1),
             "serverStatus": st.status}
    if st.last_heartbeat_at is not None:
        extra["lastHeartbeat"] = st.last_heartbeat_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    age = "" if st.heartbeat_age_s is None else f" {st.heartbeat_age_s:.0f}s ago"
    if st.status == "offline":
        return conditions.condition(FALSE, "HeartbeatLost",
                                    f"last heartbeat{age or ' never'}; the server lists the node "
                                    "offline"), extra
    return conditions.condition(TRUE, "Heartbeating", f"{st.status}, {st.state.value}, last "
                                f"heartbeat{age}"), extra


def invalid(ctx: OperatorContext, ns: str, name: str, e: InvalidSpec) -> None:
    metrics.INVALID_SPECS.labels(reason=e.reason).inc()
    sync_status(ctx, ns, name, updates={
        Cond.VALID: conditions.condition(FALSE, e.reason, e.message),
        Cond.DEPLOYED: conditions.condition(FALSE, "InvalidSpec", e.message)})


def validate_and_deploy(ctx: OperatorContext, body: dict) -> str:
    """The whole deployment step; returns the phase written.  Raises InvalidSpec after
    recording it, KubeError for the caller to map."""
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    try:
        cam = read_spec(ctx, name, body.get("spec") or {})
        where = ensure_deployment(ctx, body, cam)
    except InvalidSpec as e:
        invalid(ctx, ns, name, e)
        raise
    return sync_status(ctx, ns, name, updates={
        Cond.VALID: conditions.condition(TRUE, "Valid", f"host: {where}; source: {cam.kind}"),
        Cond.DEPLOYED: conditions.condition(
            TRUE, "Applied", f"Deployment {builders.deployment_name(name)} "
            + ("scaled to 0 (paused)" if cam.paused else "applied"))}) or ""


# -- delete ------------------------------------------------------------------

def _expiry(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").timestamp()


def tokens_to_revoke(secret: dict | None,
                     now: float | None = None) -> list[tuple[str, float | None]]:
    """(jti, expires_at) of the current and the previous token, skipping expired ones."""
    if not secret:
        return []
    now = time.time() if now is None else now
    ann = secret["metadata"].get("annotations") or {}
    out = []
    for jti_key, exp_key in ((builders.ANN_JTI, builders.ANN_EXPIRES),
                             (builders.ANN_PREV_JTI, builders.ANN_PREV_EXPIRES)):
        jti = ann.get(jti_key)
        exp = _expiry(ann.get(exp_key))
        if jti and (exp is None or exp > now):
            out.append((jti, exp))
    return out


def revoke_node_tokens(ctx: OperatorContext, ns: str, name: str,
                       now: float | None = None) -> int:
    """Revoke the camera at the server: every token of the node issued until now (by
    node, whatever its jti), then its current and previous token by jti; return how
    many jtis.  Raises ServerUnavailable or ServerRefused (the caller retries)."""
    assert ctx.kube is not None and ctx.server is not None
    # +1 s: a token issued in this very second (iat has whole seconds) is revoked too.
    not_before = (time.time() if now is None else now) + 1.0
    ctx.server.revoke_node(name, not_before, reason=f"CameraNode {ns}/{name} deleted")
    secret = ctx.kube.get_or_none(secrets_path(ns, builders.token_secret_name(name)))
    todo = tokens_to_revoke(secret)
    for jti, exp in todo:
        ctx.server.revoke(jti, name, exp, reason=f"CameraNode {ns}/{name} deleted")
        metrics.REVOCATIONS.labels(state="ok").inc()
        log.info("revoked token %s of %s/%s", jti, ns, name)
    return len(todo)
