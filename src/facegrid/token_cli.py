"""``facegrid token``: keys and node tokens outside Kubernetes (the operator's job inside)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from facegrid import tokens

app = typer.Typer(help="Ed25519 signing keys and per-node JWTs.", no_args_is_help=True)


@app.command()
def keygen(
    dir: Annotated[Path, typer.Option("--dir", help="Folder for signing.key and signing.pub.")],
    force: Annotated[bool, typer.Option(help="Overwrite an existing key pair.")] = False,
) -> None:
    """Write an Ed25519 key pair: DIR/signing.key (private, mode 0600) and DIR/signing.pub."""
    try:
        priv, pub = tokens.write_keypair(dir, overwrite=force)
    except FileExistsError as e:
        typer.echo(f"error: {e} (use --force to replace it)", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {priv} (private, 0600) and {pub}", err=True)


@app.command()
def issue(
    key: Annotated[Path, typer.Option("--key", help="Private key (signing.key).")],
    node_id: Annotated[str, typer.Option("--node-id", help="The camera node's id.")],
    ttl: Annotated[str, typer.Option(help="Lifetime: 90s, 30m, 24h, 7d.")] = "24h",
    audience: Annotated[str, typer.Option(help="The aud claim.")] = tokens.DEFAULT_AUDIENCE,
) -> None:
    """Print a JWT (EdDSA) for one node."""
    try:
        seconds = tokens.parse_ttl(ttl)
        private = tokens.load_private_key(key)
    except (ValueError, OSError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(tokens.issue_token(private, node_id, ttl_seconds=seconds, audience=audience))


@app.command()
def verify(
    token: Annotated[str, typer.Argument(help="The JWT, or - to read it from stdin.")],
    public_key: Annotated[Path, typer.Option("--public-key", help="Public key (signing.pub).")],
    node_id: Annotated[str | None, typer.Option("--node-id", help="Require this node.")] = None,
    audience: Annotated[str, typer.Option(help="Required aud.")] = tokens.DEFAULT_AUDIENCE,
) -> None:
    """Exit 0 and print the claims as JSON if TOKEN is valid; otherwise say exactly why not."""
    if token == "-":
        token = sys.stdin.read().strip()
    try:
        verifier = tokens.TokenVerifier.from_pem(public_key, audience=audience, leeway=0)
    except (ValueError, OSError) as e:
        typer.echo(f"error: cannot load public key: {e}", err=True)
        raise typer.Exit(2) from None
    try:
        claims = verifier.verify(token.strip(), node_id=node_id)
    except tokens.TokenError as e:
        typer.echo(f"invalid token: {e.reason.value}: {e.detail}", err=True)
        raise typer.Exit(1) from None
    typer.echo(claims.to_json())
