"""Registers the services' commands (worker, server, enroll) on the facegrid CLI."""

from __future__ import annotations

import importlib

import typer

_COMMANDS = ("facegrid_services.worker.cli", "facegrid_services.api.cli",
             "facegrid_services.api.token_admin_cli", "facegrid_services.notify.cli",
             "facegrid_services.enroll_cli")


def register(app: typer.Typer) -> None:
    for name in _COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is None or not name.startswith(e.name):
                raise
            continue
        module.register(app)
