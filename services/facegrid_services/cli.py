"""Registers the services' commands (worker, server, notifier, enroll …) on the facegrid CLI."""

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


def reference() -> list:
    """Settings and metrics of the worker, the server and the notifier."""
    from facegrid.plugins import MetricsDoc, SettingsDoc
    from facegrid.reference import metric_objects
    from facegrid_services.api import metrics as server_metrics
    from facegrid_services.api.settings import ServerSettings
    from facegrid_services.notify import metrics as notifier_metrics
    from facegrid_services.notify.settings import NotifierSettings
    from facegrid_services.worker import metrics as worker_metrics
    from facegrid_services.worker.settings import WorkerSettings

    return [SettingsDoc(20, "Classify worker", "facegrid worker", WorkerSettings),
            SettingsDoc(30, "API server", "facegrid server", ServerSettings),
            MetricsDoc(20, "Classify worker (:9101/metrics)",
                       metric_objects(vars(worker_metrics))),
            SettingsDoc(35, "Notifier", "facegrid notifier", NotifierSettings),
            MetricsDoc(30, "API server (:8000/metrics)", metric_objects(vars(server_metrics))),
            MetricsDoc(35, "Notifier (:9103/metrics)", metric_objects(vars(notifier_metrics)))]
