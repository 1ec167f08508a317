"""``facegrid api-token create|list|revoke``: named API tokens, straight on the store.

Run where the server's database is reachable (``FACEGRID_DATABASE_URL`` or
``--database-url``; in Kubernetes: ``kubectl exec deploy/facegrid-server -- facegrid
api-token …``).  The same operations exist in the API (admin role).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

app = typer.Typer(help="Named API tokens with a role (admin, operator, viewer).",
                  no_args_is_help=True)

DatabaseUrl = Annotated[str, typer.Option(
    "--database-url", envvar="FACEGRID_DATABASE_URL", help="The server's store.")]


def _sessions(url: str):
    from facegrid_services.store import db, repo

    repo.migrate_locked(url)
    return db.session_factory(db.make_engine(url))


def _row(r) -> dict:
    def iso(t):
        return t.isoformat() if t else None

    return {"id": r.id, "name": r.name, "role": r.role, "prefix": r.prefix,
            "created_at": iso(r.created_at), "created_by": r.created_by,
            "expires_at": iso(r.expires_at), "last_used_at": iso(r.last_used_at),
            "revoked_at": iso(r.revoked_at)}


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="A unique name, e.g. hr-reports.")],
    role: Annotated[str, typer.Option(help="admin, operator or viewer.")] = "viewer",
    expires_in: Annotated[str | None, typer.Option(
        help="Lifetime: 90s, 30m, 24h, 7d (default: no expiry).")] = None,
    database_url: DatabaseUrl = "sqlite:///./facegrid.db",
) -> None:
    """Create a token and print it (once: only its SHA-256 is stored)."""
    from facegrid import tokens

    from . import api_tokens
    from .roles import Role

    try:
        role_ = Role(role)
        expires = (datetime.now(UTC) + timedelta(seconds=tokens.parse_ttl(expires_in))
                   if expires_in else None)
        with _sessions(database_url)() as session:
            row, token = api_tokens.create(session, name, role_, created_by=f"cli:{_user()}",
                                           expires_at=expires)
    except (ValueError, api_tokens.TokenConflict) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"created token {row.name!r} (id {row.id}, role {row.role}"
               + (f", expires {row.expires_at.isoformat()}" if row.expires_at else "")
               + "); it is shown only now:", err=True)
    typer.echo(token)


@app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Include revoked tokens.")] = False,
    database_url: DatabaseUrl = "sqlite:///./facegrid.db",
) -> None:
    """List tokens as JSON lines (never the secrets)."""
    from . import api_tokens

    with _sessions(database_url)() as session:
        for r in api_tokens.list_tokens(session, include_revoked=all_):
            typer.echo(json.dumps(_row(r)))


@app.command()
def revoke(
    token: Annotated[str, typer.Argument(help="The token's name or id.")],
    database_url: DatabaseUrl = "sqlite:///./facegrid.db",
) -> None:
    """Revoke a token at once: every server refuses it from its next request."""
    from . import api_tokens

    with _sessions(database_url)() as session:
        try:
            row = api_tokens.find(session, token)
        except api_tokens.TokenNotFound as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        changed = api_tokens.revoke(session, row)
    typer.echo(f"token {row.name!r} " + ("revoked" if changed else "was already revoked"),
               err=True)


def _user() -> str:
    return os.environ.get("USER") or os.environ.get("LOGNAME") or "unknown"


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="api-token")
