"""The ``facegrid`` console script: wiring only; every command lives in its component.

Components register their sub-commands through the ``facegrid.commands`` entry
points (:mod:`facegrid.plugins`).  Their CLIs import heavy libraries (onnxruntime,
torch, FastAPI, kopf) inside their commands, so ``facegrid token`` starts fast
on any install.
"""

from __future__ import annotations

from typing import Annotated

import typer

from facegrid import __version__, logs, plugins

app = typer.Typer(
    name="facegrid",
    help="Face-recognition attendance for many cameras: embeddings travel, pictures never do.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    log_level: Annotated[str, typer.Option("--log-level", envvar="FACEGRID_LOG_LEVEL",
                                           help="DEBUG, INFO, WARNING, ERROR.")] = "INFO",
) -> None:
    logs.configure(log_level)


@app.command()
def version() -> None:
    """Print the facegrid version."""
    typer.echo(__version__)


def _register() -> None:
    from facegrid.token_cli import app as token_app
    from facegrid.up import register as register_up

    app.add_typer(token_app, name="token")
    register_up(app)
    # Component commands (node, models, worker, server, enroll, operator) come
    # from the "facegrid.commands" entry points: the core imports no component.
    for _name, register in plugins.load(plugins.COMMANDS):
        register(app)


_register()


def main() -> None:
    app()
