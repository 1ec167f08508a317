"""The reconcile steps the kopf handlers call: token, deployment, status, revocation.

Every step is idempotent (read, compare, then create/apply only what differs),
so a restarted operator creates nothing twice.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterable, Mapping
from datetime import datetime

import redis

from . import builders, conditions, hosts, metrics, node_tokens, policy
from .conditions import FALSE, TRUE, UNKNOWN, Cond, Phase
from .context import CameraStatus, OperatorContext
from .kube import KubeError, cameranode_path, deployments_path, secrets_path
from .redis_users import RedisUnavailable
from .server_api import ServerRefused, ServerUnavailable
from .spec import CameraSpec, InvalidSpec, parse

log = logging.getLogger(__name__)

#: Node name -> labels (the handlers' in-memory index of Nodes).
Nodes = Mapping[str, Mapping[str, str]]


def read_spec(ctx: OperatorContext, name: str, spec: dict) -> CameraSpec:
    """The checked spec, refused (InvalidSpec) if the operator's settings do not allow it."""
    cam = parse(name, dict(spec), default_ttl=ctx.settings.default_token_ttl)
    policy.check(cam, ctx.settings)
    return cam


# -- token -------------------------------------------------------------------

def ensure_token(ctx: OperatorContext, body: dict, cam: CameraSpec,
                 now: float | None = None) -> dict:
    """Create the token Secret, or rotate it when due; return the current token's claims.

    A camera whose status names no token yet is new: its Secret is created without
    reading first (one call); if one exists after all, it is read and judged.
    Raises KubeError (a 409 when the Secret changed meanwhile: run again)."""
    ns = body["metadata"]["namespace"]
    path = secrets_path(ns, builders.token_secret_name(cam.name))
    fresh = not (body.get("status") or {}).get("tokenExpiresAt")
    secret = None
    if fresh:
        token, claims = node_tokens.issue(ctx.key, cam, audience=ctx.settings.token_audience,
                                          now=now)
        obj = builders.owned_by(builders.token_secret(cam.name, ns, token, claims), body)
        try:
            ctx.kube.create(secrets_path(ns), obj)
        except KubeError as e:
            if not e.conflict:
                raise
            secret = ctx.kube.get(path)  # there is one: judge it below
        else:
            return _issued(ns, cam, claims, node_tokens.Action.ISSUE, "new CameraNode")
    else:
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
    obj = builders.owned_by(builders.token_secret(cam.name, ns, token, claims, previous), body)
    if secret is None:
        ctx.kube.create(secrets_path(ns), obj)
    else:
        # Optimistic concurrency: only replace the Secret we read.
        obj["metadata"]["resourceVersion"] = secret["metadata"]["resourceVersion"]
        ctx.kube.request("PUT", path, body=obj)
    return _issued(ns, cam, claims, decision.action, decision.reason)


def _issued(ns: str, cam: CameraSpec, claims: dict, action: node_tokens.Action,
            reason: str) -> dict:
    metrics.TOKENS_ISSUED.labels(reason=action.value).inc()
    metrics.TOKEN_EXPIRY.labels(metrics.camera_label(ns, cam.name)).set(claims["exp"])
    log.info("%s token for %s/%s (%s); expires %s", action.value, ns, cam.name, reason,
             builders.iso(claims["exp"]))
    return claims


def token_conditions(claims: dict) -> tuple[dict, dict]:
    cond = conditions.condition(TRUE, "Issued", f"token {claims['jti'][:8]}… valid until "
                                f"{builders.iso(claims['exp'])}")
    extra = {"tokenExpiresAt": builders.iso(claims["exp"]),
             "tokenRotatedAt": builders.iso(claims["iat"])}
    return cond, extra


# -- the node's own Redis user ----------------------------------------------

def ensure_redis_user(ctx: OperatorContext, body: dict, cam: CameraSpec) -> bool:
    """The camera's Redis Secret (created with a new password if missing, its URL kept
    current) and its Redis ACL user with that password (set once per operator process,
    afterwards only re-made when missing, e.g. after a Redis restart).  False when the
    camera gets no user of its own.  Raises KubeError, RedisUnavailable."""
    users = ctx.redis_users
    if users is None or not builders.own_redis_user(cam, ctx.settings):
        return False
    ns = body["metadata"]["namespace"]
    path = secrets_path(ns, builders.redis_secret_name(cam.name))
    secret = ctx.kube.get_or_none(path)
    password = builders.secret_value(secret, builders.REDIS_PASSWORD_KEY) if secret else None
    if not password:
        password = secrets.token_hex(24)  # hex: fits a URL as it is
    url = users.url_for(cam.name, password)
    if secret is None or builders.secret_value(secret, builders.REDIS_URL_KEY) != url:
        obj = builders.owned_by(builders.redis_secret(cam.name, ns, password, url), body)
        if secret is None:
            ctx.kube.create(secrets_path(ns), obj)  # a 409 (made meanwhile): run again
        else:
            obj["metadata"]["resourceVersion"] = secret["metadata"]["resourceVersion"]
            ctx.kube.request("PUT", path, body=obj)
        log.info("Redis Secret %s/%s %s", ns, builders.redis_secret_name(cam.name),
                 "created" if secret is None else "updated")
    key = (ns, cam.name)
    try:
        users.ensure(cam.name, password, force=key not in ctx.redis_users_set)
    except redis.RedisError as e:
        metrics.RECONCILES.labels(stage="redis", reason="redis_error").inc()
        raise RedisUnavailable(f"cannot set the Redis user of {ns}/{cam.name}: {e}") from e
    ctx.redis_users_set.add(key)
    return True


def remove_redis_user(ctx: OperatorContext, ns: str, name: str) -> bool:
    """Delete the camera's Redis user (its Secret goes with the CameraNode).  Raises
    RedisUnavailable (the caller retries: the finalizer stays)."""
    if ctx.redis_users is None:
        return False
    try:
        return ctx.redis_users.remove(name)
    except redis.RedisError as e:
        raise RedisUnavailable(f"cannot delete the Redis user of {ns}/{name}: {e}") from e


# -- deployment --------------------------------------------------------------

def ensure_deployment(ctx: OperatorContext, body: dict, cam: CameraSpec, nodes: Nodes) -> str:
    """Check the host, then server-side apply the node Deployment; return the host sentence.

    Server-side apply is create-or-update in one call; it is skipped when this process
    already applied the same spec hash."""
    ns = body["metadata"]["namespace"]
    where = hosts.check_host(nodes, cam)
    obj = builders.owned_by(builders.node_deployment(cam, ns, ctx.settings), body)
    spec_hash = (f"{obj['metadata']['annotations'][builders.ANN_SPEC_HASH]}/"
                 f"{obj['spec']['replicas']}")
    if ctx.applied.get((ns, cam.name)) != spec_hash:
        ctx.kube.apply(deployments_path(ns, obj["metadata"]["name"]), obj)
        ctx.applied[(ns, cam.name)] = spec_hash
        log.info("applied Deployment %s/%s (%s)", ns, obj["metadata"]["name"],
                 "paused" if cam.paused else where)
    ctx.reconciled[(ns, cam.name)] = int(body["metadata"].get("generation") or 0)
    return where


def reconcile_camera(ctx: OperatorContext, body: dict, nodes: Nodes,
                     pods: Iterable[dict]) -> str:
    """The whole create/update/resume step: the token, the host check, the Deployment and
    one status write; returns the phase written.  Raises InvalidSpec after recording it in
    the status, KubeError for the caller to map."""
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    updates: dict[str, dict] = {}
    extra: dict = {}
    stage = "deployment"
    try:
        cam = read_spec(ctx, name, body.get("spec") or {})
        stage = "token"
        claims = ensure_token(ctx, body, cam)
        updates[Cond.TOKEN_READY], extra = token_conditions(claims)
        metrics.RECONCILES.labels(stage="token", reason="ok").inc()
        stage = "redis"
        if ensure_redis_user(ctx, body, cam):
            metrics.RECONCILES.labels(stage="redis", reason="ok").inc()
        stage = "deployment"
        where = ensure_deployment(ctx, body, cam, nodes)
    except InvalidSpec as e:
        metrics.RECONCILES.labels(stage=stage, reason="invalid").inc()
        invalid(ctx, body, e, pods, updates=updates, extra=extra)
        raise
    except KubeError:
        metrics.RECONCILES.labels(stage=stage, reason="api_error").inc()
        raise
    metrics.RECONCILES.labels(stage="deployment", reason="ok").inc()
    updates[Cond.VALID] = conditions.condition(TRUE, "Valid",
                                               f"host: {where}; source: {cam.kind}")
    updates[Cond.DEPLOYED] = conditions.condition(
        TRUE, "Applied", f"Deployment {builders.deployment_name(name)} "
        + ("scaled to 0 (paused)" if cam.paused else "applied"))
    known = ctx.statuses.get((ns, name))
    old = known.status if known is not None else (body.get("status") or {})
    if conditions.get(old.get("conditions"), Cond.HEARTBEATING) is None:
        # A new camera's node cannot have reported yet: saying so now spares the status
        # timer's first tick a write (it writes only what the server says differently).
        updates[Cond.HEARTBEATING] = not_registered(name)
    return write_status(ctx, ns, name, pods=pods, updates=updates, extra=extra,
                        body=body) or ""


def rotate_token(ctx: OperatorContext, body: dict, pods: Iterable[dict]) -> None:
    """The timer's step: rotate the token when due and record it (a no-op while fresh)."""
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    try:
        cam = read_spec(ctx, name, body.get("spec") or {})
    except InvalidSpec:
        return  # the reconcile step reports what is wrong
    claims = ensure_token(ctx, body, cam)
    cond, extra = token_conditions(claims)
    write_status(ctx, ns, name, pods=pods, updates={Cond.TOKEN_READY: cond}, extra=extra,
                 body=body)
    try:  # re-made if Redis lost it (a restart): the node retries meanwhile
        ensure_redis_user(ctx, body, cam)
    except RedisUnavailable as e:
        log.warning("%s; retrying on the next tick", e)


def invalid(ctx: OperatorContext, body: dict, e: InvalidSpec, pods: Iterable[dict], *,
            updates: dict | None = None, extra: dict | None = None) -> None:
    metrics.INVALID_SPECS.labels(reason=e.reason).inc()
    write_status(ctx, body["metadata"]["namespace"], body["metadata"]["name"], pods=pods,
                 body=body, extra=extra, updates={
                     **(updates or {}),
                     Cond.VALID: conditions.condition(FALSE, e.reason, e.detail),
                     Cond.DEPLOYED: conditions.condition(FALSE, "InvalidSpec", e.detail)})


# -- status ------------------------------------------------------------------

#: Container waiting reasons that mean the node pod cannot run as it is.
FAILING_REASONS = frozenset({"CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff",
                             "CreateContainerConfigError", "CreateContainerError"})


def _failing(st: dict) -> bool:
    for cs in st.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in FAILING_REASONS:
            return True
        if not cs.get("ready") and cs.get("restartCount", 0) > 0:
            return True
    return False


def pod_settled(pod: Mapping) -> bool:
    """Whether a node pod is in a state that lasts (Ready, failing, finished or going), not
    one it passes through on its way up (created, bound, containers starting): a status
    write for a settled pod need not wait for more of its changes."""
    st = pod.get("status") or {}
    if pod.get("metadata", {}).get("deletionTimestamp") or st.get("phase") in ("Succeeded",
                                                                                  "Failed"):
        return True
    if any(c.get("type") == "Ready" and c.get("status") == TRUE
           for c in st.get("conditions") or []):
        return True
    return _failing(st)


def _pod_view(pods: Iterable[dict]) -> tuple[dict, bool, bool, str | None, str | None]:
    """(Scheduled condition, ready, failing, host, pod name) from the camera's pods."""
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    if not live:
        return (conditions.condition(FALSE, "NoPod", "no node pod exists yet"),
                False, False, None, None)
    live.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True)
    pod = live[0]
    name = pod["metadata"]["name"]
    host = (pod.get("spec") or {}).get("nodeName")
    st = pod.get("status") or {}
    conds = {c.get("type"): c for c in st.get("conditions") or []}
    ready = conds.get("Ready", {}).get("status") == "True"
    failing = _failing(st)
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


def compute_status(old: dict, *, paused: bool, pods: Iterable[dict],
                   updates: dict[str, dict], extra: dict | None, generation: int | None) -> dict:
    """The new status from the old one, the camera's pods and condition updates (pure)."""
    updates = dict(updates)
    pods = list(pods)
    sched, ready, failing, host, pod = _pod_view(pods)
    if not paused or pods:
        updates[Cond.SCHEDULED] = sched
    else:
        updates[Cond.SCHEDULED] = conditions.condition(FALSE, "Paused", "paused: no pod")
    conds = conditions.merge(old.get("conditions"), updates, generation)
    phase = conditions.phase(conds, paused=paused, ready=ready, failing=failing)
    new = {**old, **(extra or {}), "phase": phase.value, "conditions": conds,
           "message": _message(phase, conds, pod, host)}
    if generation is not None:
        new["observedGeneration"] = generation
    new["host"] = host
    new["pod"] = pod
    return {k: v for k, v in new.items() if v is not None}


def write_status(ctx: OperatorContext, ns: str, name: str, *, pods: Iterable[dict],
                 updates: dict[str, dict] | None = None, extra: dict | None = None,
                 body: dict | None = None) -> str | None:
    """Recompute and write the CameraNode status; return the phase (None if the object is
    gone or going).

    The operator is the status's only writer, and its writes for one camera are
    serialised: each starts from the status it last wrote (else from ``body``, else
    from a read), so handlers, timers and pod events lose no condition, and a write
    costs one merge patch (none when nothing changed).
    """
    key = (ns, name)
    with ctx.camera_lock(ns, name):
        if key in ctx.deleting:
            return None  # a status write now would only race kopf's finalizer removal
        known = ctx.statuses.get(key)
        uid = body["metadata"].get("uid") if body else None
        if body is None and known is None:
            body = ctx.kube.get_or_none(cameranode_path(ns, name))
            if body is None:
                ctx.set_phase(ns, name, None)
                return None
            uid = body["metadata"].get("uid")
        if body is not None and body["metadata"].get("deletionTimestamp"):
            return None
        if known is not None and (uid is None or known.uid == uid):
            old, uid = known.status, known.uid
        else:
            known, old = None, dict((body or {}).get("status") or {})
        if body is not None:
            paused = bool((body.get("spec") or {}).get("paused"))
        else:  # a pod event: what the status needs of the spec, from the last write
            assert known is not None
            paused = known.paused
        generation = ctx.reconciled.get(key, old.get("observedGeneration"))
        new = compute_status(old, paused=paused, pods=pods, updates=updates or {},
                             extra=extra, generation=generation)
        if new != old:
            patch = {"status": {**new, **{k: None for k in old if k not in new}}}
            try:
                ctx.kube.merge_patch(cameranode_path(ns, name, status=True), patch)
            except KubeError as e:
                if e.not_found:
                    ctx.statuses.pop(key, None)
                    ctx.set_phase(ns, name, None)
                    return None
                ctx.statuses.pop(key, None)  # unknown state: read afresh next time
                raise
        ctx.statuses[key] = CameraStatus(uid, new, paused)
    ctx.set_phase(ns, name, new["phase"])
    return new["phase"]


def not_registered(name: str) -> dict:
    """The Heartbeating condition of a node the server has not heard from."""
    return conditions.condition(UNKNOWN, "NotRegistered",
                                f"the server has not heard from node {name} yet")


def heartbeat_view(ctx: OperatorContext, name: str) -> tuple[dict, dict]:
    """(Heartbeating condition, status fields) from the server; never raises."""
    try:
        st = ctx.server.node_status(name)
    except ServerUnavailable as e:
        return conditions.condition(UNKNOWN, "ServerUnreachable", str(e)[:300]), {}
    except ServerRefused as e:
        return conditions.condition(UNKNOWN, "ServerRefused", str(e)[:300]), {}
    if st is None:
        return not_registered(name), {}
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
