"""Node credentials: Ed25519 keys and the per-node JWTs (EdDSA only).

The operator (or ``facegrid token issue`` outside Kubernetes) holds the
private key and issues each node a short-lived token with ``sub``/``node_id``,
``aud``, ``iat``, ``nbf``, ``exp`` and ``jti``.  Servers and workers hold only
the public key and use :class:`TokenVerifier`, which refuses every other
algorithm, checks the time claims, the audience, that the token belongs to the
node that sent the event, and revocation by ``jti``; verified signatures are
cached so a repeated check costs microseconds.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "EdDSA"
DEFAULT_AUDIENCE = "facegrid"
ISSUER = "facegrid"
PRIVATE_KEY_FILE = "signing.key"
PUBLIC_KEY_FILE = "signing.pub"
_REQUIRED = ("sub", "node_id", "aud", "iat", "exp", "jti")


class TokenReason(enum.StrEnum):
    """Why a token was refused.  Bounded: safe as a metric label."""

    MALFORMED = "malformed"
    ALG_NOT_ALLOWED = "alg_not_allowed"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_AUDIENCE = "wrong_audience"
    WRONG_NODE = "wrong_node"
    REVOKED = "revoked"
    MISSING_CLAIM = "missing_claim"


class TokenError(Exception):
    def __init__(self, reason: TokenReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


# --- keys -------------------------------------------------------------------

def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(data: bytes | str | Path) -> Ed25519PrivateKey:
    raw = Path(data).read_bytes() if isinstance(data, Path) else (
        data.encode() if isinstance(data, str) else data)
    key = serialization.load_pem_private_key(raw, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("signing key is not Ed25519")
    return key


def load_public_key(data: bytes | str | Path) -> Ed25519PublicKey:
    raw = Path(data).read_bytes() if isinstance(data, Path) else (
        data.encode() if isinstance(data, str) else data)
    key = serialization.load_pem_public_key(raw)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("public key is not Ed25519")
    return key


def write_keypair(directory: Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``signing.key`` (PKCS8 PEM, mode 0600) and ``signing.pub`` into directory."""
    directory.mkdir(parents=True, exist_ok=True)
    priv_path, pub_path = directory / PRIVATE_KEY_FILE, directory / PUBLIC_KEY_FILE
    if not overwrite and (priv_path.exists() or pub_path.exists()):
        raise FileExistsError(f"{priv_path} or {pub_path} already exists")
    key = generate_private_key()
    tmp = priv_path.with_suffix(".key.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem(key))
    os.chmod(tmp, 0o600)
    os.replace(tmp, priv_path)
    pub_path.write_bytes(public_pem(key))
    return priv_path, pub_path


# --- issuing ----------------------------------------------------------------

_TTL_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> int:
    """``"24h"``, ``"30m"``, ``"7d"``, ``"90s"`` or plain seconds → seconds."""
    m = _TTL_RE.match(text)
    if not m:
        raise ValueError(f"cannot read duration {text!r} (use e.g. 90s, 30m, 24h, 7d)")
    seconds = int(float(m.group(1)) * _UNITS[m.group(2)])
    if seconds <= 0:
        raise ValueError("duration must be positive")
    return seconds


def issue_token(key: Ed25519PrivateKey, node_id: str, *, ttl_seconds: int = 86400,
                audience: str = DEFAULT_AUDIENCE, now: float | None = None,
                jti: str | None = None) -> str:
    iat = int(time.time() if now is None else now)
    claims = {
        "iss": ISSUER,
        "sub": node_id,
        "node_id": node_id,
        "aud": audience,
        "iat": iat,
        "nbf": iat,
        "exp": iat + int(ttl_seconds),
        "jti": jti or uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


# --- verifying --------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Claims:
    node_id: str
    audience: str
    issued_at: int
    not_before: int
    expires_at: int
    jti: str
    raw: dict

    def to_json(self) -> str:
        return json.dumps(self.raw, sort_keys=True)


def _b64json(segment: str) -> dict:
    pad = "=" * (-len(segment) % 4)
    try:
        value = json.loads(base64.urlsafe_b64decode(segment + pad))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise TokenError(TokenReason.MALFORMED, "token segment is not base64url JSON") from None
    if not isinstance(value, dict):
        raise TokenError(TokenReason.MALFORMED, "token segment is not a JSON object")
    return value


class TokenVerifier:
    """Verify node JWTs with the public key only.

    ``is_revoked(jti)`` is consulted on every call (it should be a set lookup), and so is
    ``node_not_before(node_id)``: the revocation of a whole node, every token issued
    before that instant (epoch seconds) refused, None when the node has none;
    the signature check, the expensive part, is cached per token string.
    """

    def __init__(self, public_key: Ed25519PublicKey, *, audience: str = DEFAULT_AUDIENCE,
                 leeway: float = 30.0, is_revoked: Callable[[str], bool] | None = None,
                 node_not_before: Callable[[str], float | None] | None = None,
                 cache_size: int = 8192, clock: Callable[[], float] = time.time) -> None:
        self._key = public_key
        self._audience = audience
        self._leeway = leeway
        self._is_revoked = is_revoked or (lambda _jti: False)
        self._node_not_before = node_not_before or (lambda _node: None)
        self._clock = clock
        self._cache: OrderedDict[str, Claims] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @classmethod
    def from_pem(cls, pem: bytes | str | Path, **kw) -> TokenVerifier:
        return cls(load_public_key(pem), **kw)

    def _verify_signature(self, token: str) -> Claims:
        parts = token.split(".")
        if len(parts) != 3 or not all(parts[:2]):
            raise TokenError(TokenReason.MALFORMED, "a JWT has three dot-separated parts")
        header = _b64json(parts[0])
        alg = header.get("alg")
        if alg != ALGORITHM:
            raise TokenError(TokenReason.ALG_NOT_ALLOWED,
                             f"alg {alg!r} is not allowed (EdDSA only)")
        try:
            raw = jwt.decode(token, self._key, algorithms=[ALGORITHM],
                             options={"verify_exp": False, "verify_nbf": False,
                                      "verify_iat": False, "verify_aud": False,
                                      "require": []})
        except jwt.InvalidSignatureError:
            raise TokenError(TokenReason.BAD_SIGNATURE, "signature does not verify") from None
        except jwt.InvalidAlgorithmError:
            raise TokenError(TokenReason.ALG_NOT_ALLOWED, "algorithm not allowed") from None
        except jwt.PyJWTError as e:
            raise TokenError(TokenReason.MALFORMED, str(e)) from None
        for claim in _REQUIRED:
            if claim not in raw:
                raise TokenError(TokenReason.MISSING_CLAIM, f"claim {claim!r} is missing")
        if not isinstance(raw["node_id"], str) or raw["sub"] != raw["node_id"]:
            raise TokenError(TokenReason.MALFORMED, "sub and node_id disagree")
        for claim in ("iat", "exp"):
            if not isinstance(raw[claim], int) or isinstance(raw[claim], bool):
                raise TokenError(TokenReason.MALFORMED, f"claim {claim!r} is not an integer")
        nbf = raw.get("nbf", raw["iat"])
        if not isinstance(nbf, int) or isinstance(nbf, bool):
            raise TokenError(TokenReason.MALFORMED, "claim 'nbf' is not an integer")
        if not isinstance(raw["jti"], str) or not raw["jti"]:
            raise TokenError(TokenReason.MALFORMED, "claim 'jti' is not a string")
        aud = raw["aud"]
        if not isinstance(aud, str):
            raise TokenError(TokenReason.MALFORMED, "claim 'aud' must be a string")
        return Claims(node_id=raw["node_id"], audience=aud, issued_at=raw["iat"],
                      not_before=nbf, expires_at=raw["exp"], jti=raw["jti"], raw=raw)

    def verify(self, token: str, node_id: str | None = None, *, at: float | None = None) -> Claims:
        """Return the claims, or raise :class:`TokenError` saying exactly why not.

        ``at``: the instant (epoch seconds) validity is judged at; the worker passes an
        entry's arrival time (its stream id), so an honest backlog is not judged expired.
        """
        if not isinstance(token, str) or not token or len(token) > 4096:
            raise TokenError(TokenReason.MALFORMED, "token is empty or too long")
        claims = self._cache.get(token)
        if claims is None:
            claims = self._verify_signature(token)
            with self._lock:
                self._cache[token] = claims
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        now = self._clock() if at is None else at
        if claims.audience != self._audience:
            raise TokenError(TokenReason.WRONG_AUDIENCE,
                             f"audience {claims.audience!r} is not {self._audience!r}")
        if now >= claims.expires_at + self._leeway:
            raise TokenError(TokenReason.EXPIRED,
                             f"expired {int(now - claims.expires_at)} s ago")
        if now + self._leeway < claims.not_before:
            raise TokenError(TokenReason.NOT_YET_VALID, "token is not valid yet (nbf/iat)")
        if node_id is not None and claims.node_id != node_id:
            raise TokenError(TokenReason.WRONG_NODE,
                             f"token is for node {claims.node_id!r}, not {node_id!r}")
        if self._is_revoked(claims.jti):
            raise TokenError(TokenReason.REVOKED, f"token {claims.jti} was revoked")
        cutoff = self._node_not_before(claims.node_id)
        if cutoff is not None and claims.issued_at < cutoff:
            raise TokenError(TokenReason.REVOKED,
                             f"tokens of node {claims.node_id!r} issued before {int(cutoff)} "
                             "were revoked")
        return claims


def unverified_claims(token: str) -> dict:
    """Read claims without verifying (for display and revocation by token)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError(TokenReason.MALFORMED, "a JWT has three dot-separated parts")
    return _b64json(parts[1])
