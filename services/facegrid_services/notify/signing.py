"""Webhook signatures as Standard Webhooks (standardwebhooks.com) defines them.

Headers ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and
``webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>``
where the key is the base64-decoded part of the ``whsec_…`` secret.  Receivers
check the signature and refuse timestamps more than a few minutes off (replay).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

PREFIX = "whsec_"
TOLERANCE_S = 300


class SignatureError(ValueError):
    pass


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    if not secret.startswith(PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    return base64.b64decode(secret[len(PREFIX):])


def sign(secret: str, msg_id: str, timestamp: int, body: str | bytes) -> str:
    if isinstance(body, str):
        body = body.encode()
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def headers(secret: str, msg_id: str, body: str | bytes, *, now: float | None = None) -> dict:
    ts = int(now if now is not None else time.time())
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": sign(secret, msg_id, ts, body)}


def verify(secret: str, hdrs, body: bytes, *, now: float | None = None,
           tolerance_s: float = TOLERANCE_S) -> None:
    """Raise :class:`SignatureError` unless the headers sign ``body`` recently."""
    try:
        msg_id, ts = hdrs["webhook-id"], int(hdrs["webhook-timestamp"])
        given = hdrs["webhook-signature"].split()
    except (KeyError, ValueError):
        raise SignatureError("missing or malformed webhook headers") from None
    now = time.time() if now is None else now
    if abs(now - ts) > tolerance_s:
        raise SignatureError("timestamp outside the tolerance (replayed or clock off)")
    expected = sign(secret, msg_id, ts, body)
    if not any(hmac.compare_digest(expected, g) for g in given):
        raise SignatureError("no signature matches")


def secret_key(secret: str) -> bytes:
    """The raw key of a ``whsec_`` secret (also keys the subscription's pseudonyms)."""
    return _key(secret)
