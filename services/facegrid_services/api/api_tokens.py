"""Named API tokens: create (shown once), list, revoke, authenticate; the audit log.

A token reads ``fgk_<prefix>_<secret>``: the 8-character prefix finds the row,
the SHA-256 of the whole string is compared in constant time.  Only the hash is
stored, so a database dump gives no usable token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from facegrid.errors import FacegridError
from facegrid_services.store.models import ApiToken, AuditEntry

from .roles import Role

TOKEN_RE = re.compile(r"^fgk_([a-z0-9]{8})_([A-Za-z0-9_-]{43})$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,99}$")
BOOTSTRAP_NAME = "bootstrap-admin"
#: last_used_at is written at most this often per token (not on every request).
LAST_USED_RESOLUTION = timedelta(seconds=30)
_ALPHABET = string.ascii_lowercase + string.digits


class TokenConflict(FacegridError, ValueError):
    """The name is already taken."""


class TokenNotFound(FacegridError, LookupError):
    pass


class Refused(FacegridError):
    """A presented token was refused; ``reason`` is a bounded metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Principal:
    """Who makes a request: a named token, or the bootstrap admin token."""

    name: str
    role: Role
    token_id: int | None = None
    expires_at: datetime | None = None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str) -> str:
    if not NAME_RE.match(name) or name == BOOTSTRAP_NAME:
        raise ValueError("a token name is 1–100 letters, digits, space or ._@- "
                         f"(and not {BOOTSTRAP_NAME!r})")
    return name


def create(session: Session, name: str, role: Role | str, *, created_by: str,
           expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the token string (the only time it exists)."""
    name = check_name(name)
    role = Role(role)
    if expires_at is not None and expires_at.tzinfo is None:
        raise ValueError("expires_at must be an aware UTC instant")
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise ValueError("expires_at is in the past")
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    token = f"fgk_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiToken(name=name, role=role.value, prefix=prefix, secret_hash=hash_token(token),
                   created_by=created_by, expires_at=expires_at)
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise TokenConflict(f"a token named {name!r} already exists") from None
    return row, token


def list_tokens(session: Session, *, include_revoked: bool = False, limit: int | None = None,
                offset: int = 0) -> list[ApiToken]:
    q = select(ApiToken).order_by(ApiToken.id)
    if not include_revoked:
        q = q.where(ApiToken.revoked_at.is_(None))
    return list(session.scalars(q.limit(limit).offset(offset)))


def count_tokens(session: Session, *, include_revoked: bool = False) -> int:
    from sqlalchemy import func

    q = select(func.count()).select_from(ApiToken)
    if not include_revoked:
        q = q.where(ApiToken.revoked_at.is_(None))
    return int(session.scalar(q) or 0)


def find(session: Session, ident: str | int) -> ApiToken:
    """A token by id or by name."""
    row = None
    if isinstance(ident, int) or (isinstance(ident, str) and ident.isdigit()):
        row = session.get(ApiToken, int(ident))
    if row is None and isinstance(ident, str):
        row = session.scalar(select(ApiToken).where(ApiToken.name == ident))
    if row is None:
        raise TokenNotFound(f"no API token {ident!r}")
    return row


def revoke(session: Session, row: ApiToken) -> bool:
    """Revoke at once (the next request with it is refused). False if already revoked."""
    if row.revoked_at is not None:
        return False
    row.revoked_at = datetime.now(UTC)
    session.commit()
    return True


def authenticate(session: Session, token: str, *, now: datetime | None = None) -> Principal:
    """The principal of a named token, or :class:`Refused` saying why."""
    m = TOKEN_RE.match(token)
    if m is None:
        raise Refused("invalid", "the token is not valid")
    row = session.scalar(select(ApiToken).where(ApiToken.prefix == m.group(1)))
    if row is None or not hmac.compare_digest(row.secret_hash, hash_token(token)):
        raise Refused("invalid", "the token is not valid")
    now = now or datetime.now(UTC)
    if row.revoked_at is not None:
        raise Refused("revoked", f"token {row.name!r} was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise Refused("expired", f"token {row.name!r} expired at {row.expires_at.isoformat()}")
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        session.execute(update(ApiToken).where(ApiToken.id == row.id)
                        .values(last_used_at=now))
        session.commit()
    return Principal(name=row.name, role=Role(row.role), token_id=row.id,
                     expires_at=row.expires_at)


def bootstrap_principal() -> Principal:
    return Principal(name=BOOTSTRAP_NAME, role=Role.admin)


def record_write(session: Session, principal: Principal, *, method: str, route: str,
                 path: str, status: int) -> None:
    session.add(AuditEntry(token_id=principal.token_id, actor=principal.name,
                           role=principal.role.value, method=method[:8], route=route[:200],
                           path=path[:500], status=status))
    session.commit()


def list_audit(session: Session, *, limit: int, offset: int, token_id: int | None = None,
               actor: str | None = None) -> tuple[list[AuditEntry], int]:
    from sqlalchemy import func

    q = select(AuditEntry)
    if token_id is not None:
        q = q.where(AuditEntry.token_id == token_id)
    if actor is not None:
        q = q.where(AuditEntry.actor == actor)
    total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = session.scalars(q.order_by(AuditEntry.id.desc()).limit(limit).offset(offset))
    return list(rows), total
