"""When to issue, keep or rotate a node's token (pure; the handler does the I/O)."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from facegrid import tokens

from . import builders
from .spec import CameraSpec


class Action(enum.StrEnum):
    KEEP = "keep"
    ISSUE = "issue"
    ROTATE = "rotate"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    #: Claims of the token in the Secret now (None if none or unusable).
    current: dict | None = None


def decide(secret: dict | None, cam: CameraSpec, key: Ed25519PrivateKey, *,
           audience: str = tokens.DEFAULT_AUDIENCE, now: float | None = None) -> Decision:
    """Look at the token Secret and say what to do with it."""
    now = time.time() if now is None else now
    if secret is None:
        return Decision(Action.ISSUE, "no token Secret yet")
    token = builders.secret_token(secret)
    if not token:
        return Decision(Action.ISSUE, "the token Secret holds no token")
    verifier = tokens.TokenVerifier(key.public_key(), audience=audience, leeway=0,
                                    clock=lambda: now)
    try:
        claims = verifier.verify(token, cam.name)
    except tokens.TokenError as e:
        return Decision(Action.ISSUE, f"the token in the Secret is unusable ({e.reason.value})")
    raw = claims.raw
    if claims.expires_at - claims.issued_at != cam.ttl_s:
        return Decision(Action.ROTATE, "token.ttl changed", raw)
    if now >= claims.issued_at + cam.rotate_after_s:
        return Decision(Action.ROTATE, f"{cam.rotate_at_percent}% of the lifetime passed", raw)
    return Decision(Action.KEEP, "token is fresh", raw)


def issue(key: Ed25519PrivateKey, cam: CameraSpec, *, audience: str = tokens.DEFAULT_AUDIENCE,
          now: float | None = None) -> tuple[str, dict]:
    token = tokens.issue_token(key, cam.name, ttl_seconds=cam.ttl_s, audience=audience, now=now)
    return token, tokens.unverified_claims(token)

