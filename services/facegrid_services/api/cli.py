"""``facegrid server``: migrate the store, build the app with real collaborators, run uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from facegrid import logs


def register(app: typer.Typer) -> None:
    @app.command()
    def server(
        host: Annotated[str | None, typer.Option(help="Listen address [FACEGRID_HOST].")] = None,
        port: Annotated[int | None, typer.Option(help="Port [FACEGRID_PORT, 8000].")] = None,
        no_migrate: Annotated[bool, typer.Option(
            "--no-migrate", help="Do not run the store's migrations at start.")] = False,
    ) -> None:
        """Run the API server and dashboard (settings from FACEGRID_* variables)."""
        import uvicorn
        from pydantic import ValidationError

        from .settings import ServerSettings
        from .wiring import build_app

        overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
        try:
            settings = ServerSettings(**overrides)
            logs.configure(settings.log_level)
            app_ = build_app(settings, migrate=not no_migrate)
        except (ValidationError, ValueError, OSError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        uvicorn.run(app_, host=settings.host, port=settings.port, log_config=None,
                    access_log=False)
