"""The ``facegrid`` console script: wiring only; every command lives in its component.

Component CLIs import heavy libraries (torch, FastAPI, kopf) inside their
commands, so ``facegrid token`` starts fast on any install.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from facegrid import __version__, logs

app = typer.Typer(
    name="facegrid",
    help="Face-recognition attendance for many cameras: embeddings travel, pictures never do.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    log_level: Annotated[str | None, typer.Option(
        "--log-level", help="DEBUG, INFO, WARNING, ERROR (default: FACEGRID_LOG_LEVEL, "
        "else INFO).")] = None,
) -> None:
    if log_level:
        # The components' Settings read FACEGRID_LOG_LEVEL (their log_level field).
        os.environ[logs.LEVEL_ENV] = log_level.upper()
    logs.configure(log_level)


@app.command()
def version() -> None:
    """Print the facegrid version."""
    typer.echo(__version__)


def _register() -> None:
    from facegrid.token_cli import app as token_app

    app.add_typer(token_app, name="token")
    # Component commands register below (each in its own package).
    for module, attr in (
        ("facegrid_node.cli", "register"),
        ("facegrid_services.cli", "register"),
        ("facegrid_operator.cli", "register"),
        ("facegrid.up", "register"),
    ):
        try:
            mod = __import__(module, fromlist=[attr])
        except ModuleNotFoundError as e:
            # Only a missing *component* (its extra not installed) is tolerated.
            if e.name is None or not module.startswith(e.name):
                raise
            continue
        getattr(mod, attr)(app)


_register()


def main() -> None:
    app()
